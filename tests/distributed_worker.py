"""Programs the distributed tests run under ``mpiexec`` (``python distributed_worker.py CASE
OUT``), and the model/data builders they share with the single-process references.

Cases: ``equivalence`` (20 SGD-momentum / Adam steps of an MLP, of a wider MLP whose
gradients go through the shared-memory all-reduce, and of a CNN with SyncBatchNorm,
saved per rank), ``stops`` (a NaN on one rank and early stopping),
``threads``, ``raise`` / ``die`` / ``hang`` (one rank fails or stops answering mid-training),
``desync`` (a hand-written loop takes one more step on rank 1, then ``fit``: the ranks
wait in different collectives), ``slow`` (rank 1 pauses 5 s between two steps: nothing
must end), ``optimizers`` (another learning rate, optimizer or starting weights on rank
1), ``resume`` (a run resumed from ModelCheckpoint's file equals an uninterrupted one),
``mismatch`` (different models on the ranks), ``params`` (parameters frozen or added
after wrapping), ``syncbn`` (SyncBatchNorm with a different batch size on each rank),
``shared`` (the host all-reduce, through the shared-memory window or MPI),
``shared-leave`` (a rank dies or leaves while the other waits in that window), ``sizes``
(the ranks reduce arrays of different sizes), ``discard`` (models wrapped and dropped in
turn: their shared gradient memory is given back).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

import tensornet as tn
from tensornet import nn

STEPS, PER_RANK, RANKS = 20, 32, 2
SAMPLES = STEPS * PER_RANK * RANKS
CASES = [("mlp", "sgd", "loop"), ("mlp", "adam", "fit"), ("cnn", "sgd", "fit"),
         ("cnn", "adam", "loop"), ("mlp", "adam", "accumulate"), ("cnn", "sgd", "accumulate"),
         ("wide", "sgd", "loop"), ("wide", "adam", "fit")]


def data(n: int = SAMPLES, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8))
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + 2 * (x[:, 0, 0, 0] > 0)
    return x, y


def build(kind: str, sync: bool, seed: int):
    tn.manual_seed(seed)
    if kind == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    elif kind == "wide":  # 17.7K float64 gradients: past the shared window's threshold
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 4))
    else:
        # No bias before a BatchNorm: its true gradient is 0, so Adam would turn the
        # round-off in it into full-size, order-dependent updates.
        norm = nn.SyncBatchNorm if sync else nn.BatchNorm2d
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), norm(4), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 16, bias=False),
                              nn.BatchNorm1d(16) if not sync else nn.SyncBatchNorm(16),
                              nn.ReLU(), nn.Linear(16, 4))
    return model.to(dtype="float64")


def optimizer(name: str, params):
    if name == "sgd":
        return tn.optim.SGD(params, lr=0.05, momentum=0.9)
    return tn.optim.Adam(params, lr=1e-2)


def train(model, opt, loader, how: str) -> None:
    loss_fn = nn.CrossEntropyLoss()
    if how == "fit":
        tn.fit(model, loss_fn, opt, loader, epochs=1, verbose=0)
        return
    if how == "accumulate":  # each batch as two micro-batches; DataParallel: no_sync first
        for xb, yb in loader:
            opt.zero_grad()
            half, n = len(xb) // 2, len(xb)
            quiet = model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()
            with quiet:
                loss_fn(model(xb[:half]), yb[:half])
                model.backward(loss_fn.backward() * (half / n))
            loss_fn(model(xb[half:]), yb[half:])
            model.backward(loss_fn.backward() * ((n - half) / n))
            opt.step()
        return
    for xb, yb in loader:
        opt.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        opt.step()


def final_state(model) -> dict:
    return {k: np.array(tn.asnumpy(v)) for k, v in model.state_dict().items()}


def reference(kind: str, opt_name: str, how: str) -> dict:
    """One process, batch PER_RANK * RANKS, over the same samples in the same order."""
    model = build(kind, sync=False, seed=0)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(*data()), PER_RANK * RANKS,
                                shuffle=True, seed=5)
    train(model, optimizer(opt_name, model.parameters()), loader, how)
    return final_state(model)


# ---------------------------------------------------------------------- cases under mpiexec
def case_equivalence(comm, out, device="cpu"):
    """``device="cuda"``: one GPU per rank (NCCL); ``"cuda:0"``: all ranks share GPU 0
    (MPI through host memory)."""
    device = tn.distributed.device_for(comm, device)
    for kind, opt_name, how in CASES:
        model = build(kind, sync=True, seed=comm.rank).to(device)
        model = tn.distributed.DataParallel(model, comm)
        loader = tn.data.DataLoader(tn.data.ArrayDataset(*data()), PER_RANK, shuffle=True,
                                    seed=5, shard=comm.shard, device=device)
        assert len(loader) == STEPS, len(loader)
        reducer = comm._shared
        before = 0 if reducer is None else reducer.in_place_calls
        train(model, optimizer(opt_name, model.parameters()), loader, how)
        if kind == "wide" and reducer is not None and \
                type(next(iter(model.parameters())).data) is np.ndarray:
            # past the window's threshold: the optimizer's gradients are in shared memory
            assert reducer.in_place_calls - before == STEPS, reducer.in_place_calls - before
        np.savez(os.path.join(out, f"{kind}-{opt_name}-{how}-rank{comm.rank}.npz"),
                 **final_state(model))


def case_stops(comm, out):
    """Rank 1's shard holds a NaN in its 3rd batch of epoch 1; then early stopping."""
    x, y = data(256)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    loss_fn = nn.CrossEntropyLoss()
    opt = tn.optim.SGD(model.parameters(), lr=0.05)
    bad = x.copy()
    if comm.rank == 1:
        bad[1 + 2 * 32] = np.nan  # position 32 of its unsharded shard: step 3
    loader = tn.data.DataLoader(tn.data.ArrayDataset(bad, y), 16, shard=comm.shard)
    nan_run = tn.fit(model, loss_fn, opt, loader, epochs=2, verbose=0,
                     callbacks=[tn.TerminateOnNaN()])
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    opt = tn.optim.SGD(model.parameters(), lr=0.5)
    train_loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 16, shuffle=True, seed=1,
                                      shard=comm.shard)
    val_loader = tn.data.DataLoader(tn.data.ArrayDataset(*data(64, seed=1)), 16,
                                    shard=comm.shard)
    early = tn.fit(model, loss_fn, opt, train_loader, val_loader, epochs=30, verbose=1,
                   callbacks=[tn.EarlyStopping(patience=1), _MarkCheckpoint(out)])
    local = tn.fit(model, loss_fn, opt, train_loader, epochs=3, verbose=0,
                   callbacks=[_StopOnRank1()])
    bn = tn.distributed.DataParallel(build("cnn", sync=False, seed=0), comm)
    tn.fit(bn, loss_fn, tn.optim.SGD(bn.parameters(), lr=0.05), tn.data.DataLoader(
        tn.data.ArrayDataset(x, y), 16, shard=comm.shard), verbose=0)
    local_mean = tn.asnumpy(bn.module[1].running_mean).tolist()  # this rank's batches
    bn.eval()
    result = {"bn_trained": local_mean, "bn_eval": tn.asnumpy(bn.module[1].running_mean).tolist(),
              "nan_epochs": nan_run.epoch, "nan_reason": nan_run.stop_reason,
              "nan_train_loss": nan_run["train_loss"],
              "early_epochs": early.epoch, "val_loss": early["val_loss"],
              "train_loss": early["train_loss"], "local_epochs": local.epoch,
              "local_reason": local.stop_reason}
    with open(os.path.join(out, f"stops-rank{comm.rank}.json"), "w") as f:
        json.dump(result, f)


class _MarkCheckpoint(tn.ModelCheckpoint):
    """A checkpoint callback that only leaves a mark naming the rank that ran it."""

    def __init__(self, out):
        super().__init__(os.path.join(out, "unused.safetensors"))
        self.out = out

    def on_epoch_end(self, run, logs):
        open(os.path.join(self.out, f"checkpoint-by-rank{run.model.comm.rank}"), "w").close()


class _StopOnRank1(tn.callbacks.Callback):
    """A stop that only rank 1 asks for, at its second step."""

    def on_batch_end(self, run, step, loss):
        if run.model.comm.rank == 1 and step == 2:
            run.stop("rank 1 asked to stop")


def case_threads(comm, out):
    from threadpoolctl import threadpool_info

    threads = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    with open(os.path.join(out, f"threads-rank{comm.rank}.json"), "w") as f:
        json.dump({"blas": threads, "local_size": comm.local_size}, f)


class _FailOnRank1(tn.callbacks.Callback):
    def __init__(self, how):
        self.how = how

    def on_batch_end(self, run, step, loss):
        if run.model.comm.rank == 1 and step == 3:
            if self.how == "die":
                os._exit(17)
            if self.how == "exit":  # leaves normally: waits in MPI_Finalize for rank 0
                sys.exit(3)
            if self.how == "hang":  # neither dies nor raises: rank 0 waits in the all-reduce
                import time
                time.sleep(120)
            raise RuntimeError("simulated failure on rank 1")


def case_fail(comm, out, how):
    x, y = data(4096)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    opt = tn.optim.SGD(model.parameters(), lr=0.05)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    tn.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=1000, verbose=0,
           callbacks=[_FailOnRank1(how)])


def case_desync(comm, out):
    x, y = data(256)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    opt = tn.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(2 + comm.rank):  # rank 1 takes one step more
        xb, yb = x[8 * step:8 * step + 8], y[8 * step:8 * step + 8]
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    tn.fit(model, loss_fn, opt, loader, epochs=1, verbose=0)


class _PauseOnRank1(tn.callbacks.Callback):
    def on_batch_end(self, run, step, loss):
        if run.model.comm.rank == 1 and step == 2:
            import time
            time.sleep(5.0)  # busy, not in a collective: rank 0 waits in the all-reduce


def case_slow(comm, out):
    x, y = data(128)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    opt = tn.optim.SGD(model.parameters(), lr=0.05)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=0,
                     callbacks=[_PauseOnRank1()])
    with open(os.path.join(out, f"slow-rank{comm.rank}.json"), "w") as f:
        json.dump({"epochs": len(history)}, f)


def case_optimizers(comm, out, how):
    """``lr``: rank 1's SGD has another learning rate; ``kind``: rank 1 steps Adam;
    ``weights``: rank 0 alone changes its weights after wrapping (as a checkpoint loaded
    there alone would); ``synced``: the same, then ``broadcast_from_rank0()``."""
    x, y = data(128)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    if how in ("weights", "synced") and comm.rank == 0:
        model.module[1].reset_parameters()
    if how == "synced":
        model.broadcast_from_rank0()
    if how == "kind" and comm.rank == 1:
        opt = tn.optim.Adam(model.parameters(), lr=0.05)
    else:
        opt = tn.optim.SGD(model.parameters(), lr=np.float64(0.05) if comm.rank == 0
                           else (0.1 if how == "lr" else 0.05))
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    tn.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=0)


def case_resume(comm, out):
    """Three epochs of a Dropout MLP with ModelCheckpoint, against one epoch, then a fresh
    model resumed from epoch 1's checkpoint for the other two: each rank must get its own
    random streams back (its own Dropout masks), so the two runs end bit-identical."""
    x, y = data(256)

    def run(epochs, checkpoint=None):
        tn.manual_seed(100 + comm.rank)  # each rank its own masks
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5),
                              nn.Linear(32, 4)).to(dtype="float64")
        model = tn.distributed.DataParallel(model, comm)
        opt = tn.optim.Adam(model.parameters(), lr=1e-2)
        loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shuffle=True, seed=3,
                                    shard=comm.shard)
        done = 0
        if checkpoint is not None:
            done = tn.load_checkpoint(checkpoint, model, opt, loader=loader)["epoch"]
        path = os.path.join(out, "ckpt-e{epoch}.safetensors")
        tn.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=epochs, initial_epoch=done,
               verbose=0, callbacks=[tn.callbacks.ModelCheckpoint(path, monitor="loss")])
        return final_state(model)

    whole = run(3)
    comm.barrier()  # rank 0 has written the checkpoints
    resumed = run(3, os.path.join(out, "ckpt-e1.safetensors"))
    same = all(np.array_equal(whole[k], resumed[k]) for k in whole)
    with open(os.path.join(out, f"resume-rank{comm.rank}.json"), "w") as f:
        json.dump({"same": bool(same)}, f)


def case_mismatch(comm, out):
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5 + comm.rank), nn.ReLU())
    tn.distributed.DataParallel(model, comm)


def case_params(comm, out, how):
    """``alike``: every rank freezes the first layer after wrapping, then trains; ``apart``:
    each rank freezes a different layer of the same size (so the lists of trainable
    parameters are as long on both ranks); ``one``: only rank 1 freezes one; ``added``: a
    layer added after wrapping, with each rank's own initial values."""
    tn.manual_seed(comm.rank)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    dp = tn.distributed.DataParallel(model, comm)
    if how == "alike":
        model[0].requires_grad_(False)
    elif how == "apart":
        model[2 * comm.rank].weight.requires_grad = False
    elif how == "one" and comm.rank == 1:
        model[2].bias.requires_grad = False
    elif how == "added":
        model.append(nn.Linear(4, 4))
    frozen = np.array(model[0].weight.data)
    opt = tn.optim.SGD(dp.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()
    rng = np.random.default_rng(comm.rank)
    for _ in range(3):
        opt.zero_grad()
        loss_fn(dp(rng.standard_normal((8, 4)).astype(np.float32)),
                np.zeros((8, 4), np.float32))
        dp.backward(loss_fn.backward())
        opt.step()
    assert np.array_equal(model[0].weight.data, frozen)
    np.savez(os.path.join(out, f"params-rank{comm.rank}.npz"), **final_state(model))


SYNCBN_TAILS = [(), (5,), (4, 3)]  # (N, C), (N, C, L), (N, C, H, W)


def syncbn_batches(tail, size: int, steps: int = 3, seed: int = 0):
    """Per step the global batch (x, grad), and the per-rank counts: rank 0 holds one
    sample, rank r 1 + 3r, so the global statistics must weigh the ranks by their counts."""
    rng = np.random.default_rng(seed)
    counts = [1 + 3 * r for r in range(size)]
    return counts, [(3 * rng.standard_normal((sum(counts), 3) + tail) + 1.5,
                     rng.standard_normal((sum(counts), 3) + tail)) for _ in range(steps)]


def case_syncbn(comm, out):
    """Each rank trains SyncBatchNorm on its part of syncbn_batches' global batches, then
    evaluates a different number of batches per rank, one module tracking running
    statistics and one not (neither may communicate in eval)."""
    result = {}
    for tail in SYNCBN_TAILS:
        counts, batches = syncbn_batches(tail, comm.size)
        start = sum(counts[:comm.rank])
        mine = slice(start, start + counts[comm.rank])
        for momentum in (0.1, None):
            name = f"{len(tail)}-{momentum}"
            norm = nn.SyncBatchNorm(3, momentum=momentum, dtype="float64")
            norm.weight.data[...] = [0.5, 1.0, 2.0]
            norm.bias.data[...] = [0.1, -0.2, 0.3]
            for step, (x, g) in enumerate(batches):
                norm.zero_grad()
                result[f"{name}-y{step}"] = norm(x[mine])
                result[f"{name}-dx{step}"] = norm.backward(g[mine])
                result[f"{name}-dweight{step}"] = np.array(norm.weight.grad)
                result[f"{name}-dbias{step}"] = np.array(norm.bias.grad)
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                result[f"{name}-{key}"] = np.array(getattr(norm, key))
            local = nn.SyncBatchNorm(3, track_running_stats=False, dtype="float64")
            for module in (norm.eval(), local.eval()):
                for _ in range(1 + comm.rank):
                    module(batches[0][0][:2])
    np.savez(os.path.join(out, f"syncbn-rank{comm.rank}.npz"), **result)


def case_shared(comm, out):
    """The host all-reduce against the rank-order sum of every rank's array: sizes on both
    sides of the shared window's threshold, float32 and float64, C and Fortran order,
    arrays of many chunks with a partial last one, an np.matrix, and small reductions
    (MPI) in between; each array also as a mean (``scale=1 / size``, which the window
    applies per segment: the bits of the sum times the scale). Saves per rank which path
    ran, whether each sum was exact (bitwise; within rounding below the threshold, where
    MPI's order of additions is its own) and a digest of each result."""
    import hashlib

    from tensornet.distributed import shared
    rng = np.random.default_rng(100 + comm.rank)
    cases = [((shared.MIN_BYTES // 4 - 1,), "float32", "C"), ((shared.MIN_BYTES // 4,),
             "float32", "C"), ((240_001,), "float32", "C"), ((300, 257), "float32", "F"),
             ((100_003,), "float64", "C"), ((17,), "float64", "C"), ((1_000_000,), "float64",
             "C"), ((4, 40_000), "float32", "C")]
    result = {"path": type(comm._shared).__name__, "exact": [], "digests": []}
    for shape, dtype, order in cases:
        array = np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)
        everyone = comm.allgather(array)
        expected = everyone[0].copy()
        for other in everyone[1:]:
            expected += other
        mean = array.copy(order="A")
        assert comm.allreduce_host_(array) is array
        assert comm.allreduce_host_(mean, scale=1 / comm.size) is mean
        exact = array.nbytes >= shared.MIN_BYTES or comm.size == 2
        for got, want in ((array, expected), (mean, expected * (1 / comm.size))):
            result["exact"].append(bool(np.array_equal(got, want)) if exact
                                   else bool(np.allclose(got, want, rtol=1e-6)))
            result["digests"].append(hashlib.sha256(got.tobytes(order="A")).hexdigest())
    # an ndarray subclass that stays 2-D under reshape(-1), larger than one chunk
    matrix = np.matrix(np.full((300, 1000), comm.rank + 1.0, dtype=np.float32))
    assert comm.allreduce_host_(matrix) is matrix
    result["exact"].append(bool((np.asarray(matrix) == comm.size * (comm.size + 1) / 2).all()))
    result["in_place"] = _shared_blocks(comm, rng, result) if comm._shared is not None else 0
    with open(os.path.join(out, f"shared-rank{comm.rank}.json"), "w") as f:
        json.dump(result, f)


def _shared_blocks(comm, rng, result) -> int:
    """Arrays in a block every rank maps (``SharedReducer.share``, as DataParallel's
    gradients): summed where they lie, with the bits of the chunked path, at two offsets
    and dtypes, as sums and as means; where one rank's array is in the block and the
    others' are not, every rank takes the chunked path. Returns the in-place calls."""
    import hashlib

    reducer = comm._shared
    memory = reducer.share(3 << 20)
    before = reducer.in_place_calls
    arrays = [np.frombuffer(memory, dtype=np.float32, count=300_001, offset=64),
              np.frombuffer(memory, dtype=np.float64, count=70_000, offset=1_300_032)]
    for array in arrays:
        for scale in (None, 1 / comm.size):
            array[...] = rng.standard_normal(array.shape)
            everyone = comm.allgather(array.copy())
            expected = everyone[0].copy()
            for other in everyone[1:]:
                expected += other
            if scale is not None:
                expected *= scale
            assert comm.allreduce_host_(array, scale=scale) is array
            result["exact"].append(bool(np.array_equal(array, expected)))
            result["digests"].append(hashlib.sha256(array.tobytes()).hexdigest())
    in_place = reducer.in_place_calls - before
    mixed = arrays[0] if comm.rank == 0 else np.empty(arrays[0].shape, np.float32)
    mixed[...] = comm.rank + 1.0
    comm.allreduce_host_(mixed)
    result["exact"].append(bool((mixed == comm.size * (comm.size + 1) / 2).all()))
    result["exact"].append(reducer.in_place_calls - before == in_place)  # chunked, on all
    odd = np.frombuffer(reducer.share(1001), np.uint8)  # every rank's block on a cache line
    result["exact"].append(odd.__array_interface__["data"][0] % 64 == 0 and odd.size == 1001)
    return in_place


def case_discard(comm, out):
    """Three wide models wrapped and trained in turn, each dropped before the next is
    wrapped (the folds of a cross-validation): how many shared gradient blocks are alive
    after each wrap. Rank 1 keeps the first model's gradient array, whose values must stay
    readable, so that block stays on every rank until rank 1 drops it too."""
    import gc

    counts, kept, values = [], None, None
    for fold in range(4):
        model = tn.distributed.DataParallel(build("wide", sync=False, seed=fold), comm)
        counts.append(len(comm._shared._blocks))
        loader = tn.data.DataLoader(tn.data.ArrayDataset(*data()), PER_RANK, shuffle=True,
                                    seed=5, shard=comm.shard)
        train(model, optimizer("sgd", model.parameters()), loader, "loop")
        if fold == 0 and comm.rank == 1:
            kept = next(iter(model.parameters())).grad
            values = kept.copy()
        if fold == 2:
            kept = None
        del model, loader
        gc.collect()
        if values is not None and kept is not None:
            assert np.array_equal(kept, values)
    with open(os.path.join(out, f"discard-rank{comm.rank}.json"), "w") as f:
        json.dump({"blocks": counts}, f)


def case_shared_leave(comm, out, how):
    """Rank 1 dies (``die``) or leaves normally (``exit``) while rank 0 waits in the
    shared-memory all-reduce, after one that both ranks finished."""
    array = np.ones(300_000)
    comm.allreduce_host_(array)
    assert comm._shared is not None and array[0] == comm.size
    if comm.rank == 1:
        if how == "die":
            os._exit(17)
        sys.exit(3)
    comm.allreduce_host_(array)


def case_sizes(comm, out):
    """Rank 1 reduces 200,000 float64 values where rank 0 reduces 300,000 (a program
    error; both through the shared window unless TENSORNET_ALLREDUCE=mpi)."""
    comm.allreduce_host_(np.ones(200_000 if comm.rank == 1 else 300_000))


def _failing(how):
    return lambda comm, out: case_fail(comm, out, how)


# case name -> program(comm, out, *the extra arguments after OUT)
PROGRAMS = {"equivalence": case_equivalence, "stops": case_stops, "threads": case_threads,
         "raise": _failing("raise"), "die": _failing("die"), "exit": _failing("exit"),
         "hang": _failing("hang"), "hang-later": _failing("hang"), "desync": case_desync,
         "slow": case_slow, "optimizers": case_optimizers, "resume": case_resume,
         "mismatch": case_mismatch, "params": case_params, "syncbn": case_syncbn,
         "shared": case_shared, "shared-leave": case_shared_leave,
         "sizes": case_sizes, "discard": case_discard}


def main(argv) -> None:
    case, out = argv[1], argv[2]
    # "hang": rank 1 stops answering; the collective watchdog must end both ranks.
    # "hang-later": the same limit set by a second init() (as after the CLI's own init()).
    if case == "hang":
        comm = tn.distributed.init(timeout=2.0)
    else:
        comm = tn.distributed.init()
    if case == "hang-later":
        assert comm.timeout == 1800.0, comm.timeout
        assert tn.distributed.init(timeout=2.0) is comm and comm.timeout == 2.0
    if case not in PROGRAMS:
        raise SystemExit(f"unknown case {case!r}")
    PROGRAMS[case](comm, out, *argv[3:])


if __name__ == "__main__":
    main(sys.argv)
