"""tensornet.distributed pieces that need no second process: sharded loading, gradient
buckets, DataParallel's protocol (against a stand-in communicator, distributed_twin.py),
init's errors and thread counts. SyncBatchNorm's: test_distributed_syncbn.py. The
multi-process behaviour is in test_distributed.py."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.data import ArrayDataset, DataLoader
from tensornet.data.shard import shard_indices
from tensornet.distributed import comm as comm_module
from tensornet.distributed.buckets import make_buckets
from tensornet.optim.flat import contiguous_span

from distributed_twin import TwinComm


# ---------------------------------------------------------------------- sharding
@pytest.mark.parametrize("n, size, tail", [(10, 3, "pad"), (10, 3, "drop"), (12, 4, "pad")])
def test_shards_are_disjoint_equal_and_cover_the_order(n, size, tail):
    order = np.random.default_rng(0).permutation(n)
    parts = [shard_indices(order, r, size, tail) for r in range(size)]
    assert len({len(p) for p in parts}) == 1
    taken = np.concatenate(parts)
    if tail == "drop":
        assert len(taken) == n - n % size and len(set(taken)) == len(taken)
        assert set(taken) == set(order[:n - n % size])
    else:
        assert len(taken) == -(-n // size) * size and set(taken) == set(order)
        extra = len(taken) - n
        assert sorted(taken) == sorted(np.concatenate([order, order[:extra]]))


def test_uneven_shards_count_every_sample_once_for_evaluation():
    order = np.random.default_rng(0).permutation(10)
    parts = [shard_indices(order, r, 3, "uneven") for r in range(3)]
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sorted(np.concatenate(parts)) == list(range(10))
    ds = ArrayDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    loaders = [DataLoader(ds, 2, shard=(r, 3), shard_tail="uneven") for r in range(3)]
    assert [len(d) for d in loaders] == [2, 2, 2]
    assert [d.num_samples for d in loaders] == [4, 3, 3]
    seen = [int(v) for d in loaders for xb, _ in d for v in xb[:, 0]]
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="cannot be shared by 3 ranks"):
        DataLoader(ArrayDataset(np.zeros((2, 1), np.float32)), 1, shard=(0, 3),
                   shard_tail="uneven")


def test_fit_refuses_an_uneven_shard_for_training():
    dp = tn.distributed.DataParallel(_mlp(), TwinComm())
    x = np.zeros((10, 20), np.float32)
    loader = DataLoader(ArrayDataset(x, np.zeros(10, np.int64)), 2, shard=(0, 2),
                        shard_tail="uneven")
    with pytest.raises(ValueError, match="shard_tail='uneven', which is for evaluation"):
        tn.fit(dp, nn.CrossEntropyLoss(), tn.optim.SGD(dp.parameters(), lr=0.1), loader,
               verbose=0)


@pytest.mark.parametrize("resident", [None, False])
def test_sharded_batches_together_are_the_global_batch(resident):
    x = np.arange(100, dtype=np.float32)[:, None]
    ds = ArrayDataset(x, np.arange(100))
    single = DataLoader(ds, 12, shuffle=True, seed=3)
    ranks = [DataLoader(ds, 4, shuffle=True, seed=3, shard=(r, 3), resident=resident)
             for r in range(3)]
    assert [len(r) for r in ranks] == [9, 9, 9] and ranks[0].num_samples == 34
    for epoch in range(2):
        per_rank = [list(r) for r in ranks]
        whole = list(single)
        for i, (xb, _) in enumerate(whole[:-1]):  # the last global batch holds the pad
            together = np.concatenate([per_rank[r][i][0] for r in range(3)])
            assert sorted(together[:, 0]) == sorted(xb[:, 0]), (epoch, i)
    assert ranks[0].batch_sizes() == [4] * 8 + [2]


def test_shard_errors_are_clear():
    ds = ArrayDataset(np.zeros((10, 2), np.float32), np.zeros(10, np.int64))
    with pytest.raises(ValueError, match="needs seed="):
        DataLoader(ds, 2, shuffle=True, shard=(0, 2))
    with pytest.raises(ValueError, match=r"shard must be \(rank, size\)"):
        DataLoader(ds, 2, shard=(2, 2))
    with pytest.raises(ValueError, match="shard_tail must be one of"):
        DataLoader(ds, 2, shard=(0, 2), shard_tail="wrap")


# ---------------------------------------------------------------------- buckets
def _mlp():
    tn.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10), nn.ReLU(),
                         nn.Linear(10, 3))


def _backward(model, seed=1):
    x = np.random.default_rng(seed).standard_normal((8, 20)).astype(np.float32)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), np.arange(8) % 3)
    model.backward(loss_fn.backward())


def test_backward_averages_in_few_bucketed_allreduces():
    plain, wrapped = _mlp(), _mlp()
    _backward(plain)
    comm = TwinComm()
    dp = tn.distributed.DataParallel(wrapped, comm)
    _backward(dp)
    assert comm.reductions == 1  # six parameters, one flat all-reduce
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)  # (g + g) / 2 == g exactly
    small = tn.distributed.DataParallel(_mlp(), TwinComm(), bucket_bytes=2500)
    _backward(small)
    assert 1 < small.comm.reductions < 6
    assert list(dp.state_dict()) == list(plain.state_dict())


def test_gradients_lying_in_one_buffer_are_reduced_there_without_a_copy():
    flat = np.arange(10, dtype=np.float64)
    grads = [flat[0:6].reshape(2, 3), flat[6:10]]
    span = contiguous_span(grads, 10)
    assert span is not None and np.shares_memory(span, flat) and span.shape == (10,)
    assert contiguous_span([flat[0:4], flat[5:9]], 8) is None  # a gap
    assert contiguous_span([flat[6:10], flat[0:6]], 10) is None  # out of order
    model = _mlp()
    params = list(model.parameters())
    buffer = np.zeros(sum(p.size for p in params), np.float32)
    _backward(model)
    expected, offset = [], 0
    for p in params:  # make every gradient a view into one flat buffer
        view = buffer[offset:offset + p.size].reshape(p.shape)
        view[...] = p.grad
        p.grad, offset = view, offset + p.size
        expected.append(view.copy())
    buckets = make_buckets(params)
    assert len(buckets) == 1
    buckets[0].reduce_mean_(TwinComm())
    assert buckets[0].buffer is None  # reduced in place in the gradients' own buffer
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(p.grad, e)


def test_an_optimizer_keeps_its_gradients_in_memory_offered_before_it_was_built():
    """DataParallel's shared gradient memory on one host (``offer_grad_memory``): an
    optimizer built afterwards keeps its flat gradients there, backward writes them there,
    and training is bit for bit that of the same model without it."""
    from tensornet.optim.flat import grad_layout, offer_grad_memory
    plain, offered = _mlp(), _mlp()
    params = list(offered.parameters())
    memory = bytearray(grad_layout(params)[1])
    offer_grad_memory(params, memory)
    whole = np.frombuffer(memory, np.uint8)
    opts = [tn.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (plain, offered)]
    for step in range(3):
        for model, opt in zip((plain, offered), opts):
            opt.zero_grad()
            _backward(model, seed=step)
            opt.step()
        for p in params:
            assert np.shares_memory(p.grad, whole)  # written where it was offered
        for p, q in zip(plain.parameters(), offered.parameters()):
            np.testing.assert_array_equal(p.data, q.data)
            np.testing.assert_array_equal(p.grad, q.grad)
    buckets = make_buckets(params)
    assert len(buckets) == 1
    buckets[0].reduce_mean_(TwinComm())
    assert buckets[0].buffer is None  # the bucket is the offered memory itself


def test_a_move_that_changes_nothing_keeps_the_offered_gradient_memory():
    """``.to("cpu")`` on a CPU model, or to its own dtype, leaves the parameters where they
    are, so DataParallel's shared gradient memory stays theirs; a real cast drops it."""
    from tensornet.optim.flat import grad_layout, offer_grad_memory
    model = _mlp()
    params = list(model.parameters())
    memory = bytearray(grad_layout(params)[1])
    offer_grad_memory(params, memory)
    slots = [p._grad_slot for p in params]
    model.to("cpu")
    model.to(dtype="float32")
    assert all(p._grad_slot is s for p, s in zip(params, slots))
    model.to(dtype="float64")
    assert all(p._grad_slot is None for p in params)


def test_offered_gradient_memory_has_a_span_per_dtype_on_its_own_cache_line():
    from tensornet.optim.flat import grad_layout, offer_grad_memory
    tn.manual_seed(0)
    single, double = nn.Linear(20, 30), nn.Linear(10, 3).to(dtype="float64")
    params = [single.weight, double.weight, single.bias, double.bias]
    spans, nbytes = grad_layout(params)
    assert [(dtype, len(group)) for dtype, group, _ in spans] == [("float32", 2),
                                                                    ("float64", 2)]
    assert spans[1][2] == 2560 and nbytes == 2560 + 33 * 8  # 630 float32: 2,520 bytes
    memory = bytearray(nbytes)
    offer_grad_memory(params, memory)
    whole = np.frombuffer(memory, np.uint8)
    opt = tn.optim.Adam(params, lr=1e-3)
    for layer, dtype in ((single, np.float32), (double, np.float64)):
        x = np.ones((4, layer.in_features), dtype)
        layer.backward(layer(x))
        assert all(np.shares_memory(p.grad, whole) for p in layer.parameters())
    opt.step()
    for bucket in make_buckets(params):
        bucket.reduce_mean_(TwinComm())
        assert bucket.buffer is None


def test_offered_gradient_memory_is_taken_by_packs_of_its_parameters_in_order_only():
    """A pack over the parameters in another order allocates its own buffer, as does one
    whose contiguous slots are another pack's own buffer (nobody offered that memory);
    packs over runs of consecutive parameters take their part of the offered memory."""
    from tensornet.optim.flat import FlatPack, offer_grad_memory
    backend = tn.get_backend("cpu")
    params = list(_mlp().parameters())
    memory = bytearray(sum(p.size for p in params) * 4)
    whole = np.frombuffer(memory, np.uint8)
    offer_grad_memory(params, memory)
    assert not np.shares_memory(FlatPack(params[::-1], backend, "float32").grad, whole)
    offer_grad_memory(params, memory)
    assert np.shares_memory(FlatPack(params, backend, "float32").grad, whole)
    offer_grad_memory(params, memory)  # two groups of consecutive parameters: both adopt
    first, rest = FlatPack(params[:2], backend, "float32"), FlatPack(params[2:], backend,
                                                                      "float32")
    assert np.shares_memory(first.grad, whole) and np.shares_memory(rest.grad, whole)
    assert not np.shares_memory(first.grad, rest.grad)
    fresh = list(_mlp().parameters())
    own = FlatPack(fresh, backend, "float32")
    assert not np.shares_memory(FlatPack(fresh, backend, "float32").grad, own.grad)


def test_a_replaced_gradient_array_is_not_reduced_through_the_remembered_view():
    params = list(_mlp().parameters())[:2]
    buckets, comm = make_buckets(params), TwinComm()
    shared = np.zeros(sum(p.size for p in params), np.float32)
    offset = 0
    for p in params:  # views of one buffer: reduced there, the view remembered
        p.grad, offset = shared[offset:offset + p.size].reshape(p.shape), offset + p.size
    for value in (3.0, 4.0):
        shared[:] = value
        buckets[0].reduce_mean_(comm)
        np.testing.assert_array_equal(shared, value)  # (g + g) / 2
    params[1].grad = np.full(params[1].shape, 5.0, np.float32)  # replaced by the user
    shared[:] = 6.0
    buckets[0].reduce_mean_(comm)
    assert buckets[0].buffer is not None  # no longer one span: copied through the buffer
    np.testing.assert_array_equal(params[1].grad, 5.0)
    np.testing.assert_array_equal(params[0].grad, 6.0)
    assert comm.reductions == 3


def test_no_sync_accumulates_locally_and_the_next_backward_averages_it_all():
    plain, wrapped = _mlp(), _mlp()
    comm = TwinComm()
    dp = tn.distributed.DataParallel(wrapped, comm)
    _backward(plain, seed=1)
    _backward(plain, seed=2)
    with dp.no_sync() as inner:
        assert inner is dp
        _backward(dp, seed=1)
    assert comm.reductions == 0 and dp._sync
    _backward(dp, seed=2)
    assert comm.reductions == 1  # the accumulated sum, averaged once
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-6)
    with pytest.raises(RuntimeError), dp.no_sync():
        raise RuntimeError("inside")
    assert dp._sync  # restored after an error too


def test_unused_parameters_are_zero_here_when_another_rank_used_them():
    model = _mlp()
    dp = tn.distributed.DataParallel(model, TwinComm(other_has_grads=True))
    frozen = model[4].bias
    _backward(dp)
    frozen.grad = None  # as if this rank's loss never reached it
    dp.reduce_gradients()
    assert frozen.grad is not None and not np.any(frozen.grad)
    alone = tn.distributed.DataParallel(_mlp(), TwinComm())
    _backward(alone)
    alone.module[4].bias.grad = None
    alone.reduce_gradients()
    assert alone.module[4].bias.grad is None  # no rank had it: the optimizer skips it


def test_wrapping_needs_a_module_once():
    with pytest.raises(TypeError, match="wraps a tensornet Module"):
        tn.distributed.DataParallel(lambda x: x)
    dp = tn.distributed.DataParallel(_mlp())
    assert dp.comm.size == 1 and "rank 0 of 1" in repr(dp)
    with pytest.raises(TypeError, match="already wrapped"):
        tn.distributed.DataParallel(dp)


def test_single_process_dataparallel_fits_like_the_model():
    x = np.random.default_rng(0).standard_normal((64, 20)).astype(np.float32)
    y = np.arange(64) % 3
    histories = []
    for wrap in (False, True):
        model = _mlp()
        trained = tn.distributed.DataParallel(model) if wrap else model
        opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        histories.append(tn.fit(trained, nn.CrossEntropyLoss(), opt,
                                DataLoader(ArrayDataset(x, y), 16), epochs=2, verbose=0))
    assert histories[0]["train_loss"] == histories[1]["train_loss"]


# ---------------------------------------------------------------------- init and threads
def test_init_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setattr(comm_module, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'tensornet\[mpi\]'"):
        tn.distributed.init()


def test_cli_distributed_without_mpi4py_is_a_usage_error(monkeypatch, capsys):
    from tensornet.cli import main

    monkeypatch.setattr(comm_module, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert main(["train", "--distributed", "--dataset", "blobs", "--epochs", "1"]) == 2
    assert "pip install 'tensornet[mpi]'" in capsys.readouterr().err


def test_blas_threads_per_rank(monkeypatch):
    for name in comm_module.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(comm_module.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(comm_module.os, "sched_getaffinity", lambda pid: set(range(8)),
                        raising=False)
    two_ranks = tn.distributed.Communicator(local_size=2)
    assert tn.distributed.blas_threads_for(two_ranks) == 4
    assert tn.distributed.blas_threads_for(tn.distributed.Communicator(local_size=16)) == 1
    assert tn.distributed.blas_threads_for(two_ranks, threads=3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert tn.distributed.blas_threads_for(two_ranks) is None  # the user's choice stays
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        tn.distributed.blas_threads_for(two_ranks, threads=0)


def test_init_keeps_the_thread_count_of_an_earlier_set_num_threads(monkeypatch):
    """tn.set_num_threads(n) before init() is the user's choice, as the variables are."""
    from tensornet.backends import threads
    for name in comm_module.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    two_ranks = tn.distributed.Communicator(local_size=2)
    monkeypatch.setattr(threads, "_chosen", None)
    assert tn.distributed.blas_threads_for(two_ranks) is not None
    monkeypatch.setattr(threads, "_chosen", 2)
    assert tn.distributed.blas_threads_for(two_ranks) is None
    assert tn.distributed.blas_threads_for(two_ranks, threads=1) == 1  # init(threads=) wins


def test_one_gpu_per_rank_by_local_rank():
    comm = tn.distributed.Communicator(local_rank=1, local_size=2)
    comm.size = 2
    assert tn.distributed.device_for(comm, "cuda") == "cuda:1"
    assert tn.distributed.device_for(comm, "cuda:0") == "cuda:0"
    assert tn.distributed.device_for(comm, "cpu") == "cpu"


def test_fit_refuses_cuda_graphs_across_ranks():
    dp = tn.distributed.DataParallel(_mlp(), TwinComm())
    loader = DataLoader(ArrayDataset(np.zeros((8, 20), np.float32), np.zeros(8, np.int64)), 4)
    with pytest.raises(ValueError, match="cuda_graph=True cannot capture the all-reduce"):
        tn.fit(dp, nn.CrossEntropyLoss(), tn.optim.SGD(dp.parameters(), lr=0.1), loader,
               cuda_graph=True, verbose=0)


def test_cli_sync_bn_needs_distributed(capsys):
    from tensornet.cli import main
    assert main(["train", "--sync-bn", "--dataset", "blobs", "--epochs", "1"]) == 2
    assert "--sync-bn" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", [0, -1.0, True, "60", float("nan")])
def test_init_refuses_a_bad_collective_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        tn.distributed.init(timeout=timeout)


def test_fit_inside_no_sync_is_refused():
    dp = tn.distributed.DataParallel(_mlp(), TwinComm())
    x = np.zeros((8, 20), np.float32)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, np.arange(8) % 3), 4)
    opt = tn.optim.SGD(dp.parameters(), lr=0.1)
    with dp.no_sync():
        with pytest.raises(RuntimeError, match="fit inside DataParallel.no_sync"):
            tn.fit(dp, nn.CrossEntropyLoss(), opt, loader, verbose=0)
        # evaluate has no backward: allowed (the twin rank doubles the sample count)
        assert tn.evaluate(dp, nn.CrossEntropyLoss(), loader)["samples"] == 16


def test_fit_warns_once_when_the_train_loader_is_not_sharded():
    """Under several ranks a DataLoader without shard= gives every rank the same batches
    (silently N copies of one run): rank 0 says so once; a sharded loader is quiet."""
    import warnings

    from tensornet.distributed.training import DistributedFit

    class TwoRanks:
        rank, size = 0, 2

        def allgather(self, obj):
            return [obj, obj]

    import types
    wrapped = types.SimpleNamespace(module=nn.Linear(2, 2))  # what fit compares the weights of
    fit = object.__new__(DistributedFit)
    fit.comm, fit.is_main, fit.model = TwoRanks(), True, wrapped
    data = tn.data.ArrayDataset(np.zeros((8, 2), np.float32), np.zeros(8, np.int64))
    with pytest.warns(UserWarning, match=r"train_loader is not sharded, so each of the 2 "
                                         r"ranks trains on the same batches"):
        fit.check_loader(tn.data.DataLoader(data, 2), "train_loader")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit.check_loader(tn.data.DataLoader(data, 2), "train_loader")  # once per fit
        fresh = object.__new__(DistributedFit)
        fresh.comm, fresh.is_main, fresh.model = TwoRanks(), True, wrapped
        fresh.check_loader(tn.data.DataLoader(data, 2, shard=(0, 2)), "train_loader")


# ---------------------------------------------------------------------- the shared window
class _Ranks:
    """What ``shared.wanted`` reads of a communicator."""

    def __init__(self, size, local_size):
        self.size, self.local_size = size, local_size


@pytest.mark.parametrize("size, local_size, setting, expected", [
    (2, 2, None, True), (4, 4, "shared", True), (2, 2, "MPI", False), (2, 2, " mpi ", False),
    (1, 1, None, False), (4, 2, None, False), (4, 2, "shared", False)])
def test_the_shared_window_is_used_when_every_rank_is_on_this_host(monkeypatch, size,
                                                                   local_size, setting,
                                                                   expected):
    from tensornet.distributed import shared
    if setting is None:
        monkeypatch.delenv("TENSORNET_ALLREDUCE", raising=False)
    else:
        monkeypatch.setenv("TENSORNET_ALLREDUCE", setting)
    assert shared.wanted(_Ranks(size, local_size)) is expected


def test_an_unknown_allreduce_setting_is_refused_naming_the_choices(monkeypatch):
    from tensornet.distributed import shared
    monkeypatch.setenv("TENSORNET_ALLREDUCE", "nccl")
    with pytest.raises(ValueError, match="TENSORNET_ALLREDUCE must be 'shared'.*or 'mpi', "
                                         "got 'nccl'"):
        shared.wanted(_Ranks(2, 2))


class _World:
    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2


def test_the_shared_window_takes_large_contiguous_float_arrays_only():
    from tensornet.distributed import shared
    reducer = shared.SharedReducer(_World(), None)
    floats = shared.MIN_BYTES // 4
    assert reducer.handles(np.zeros(floats, np.float32))
    assert reducer.handles(np.zeros(floats // 2, np.float64))
    assert reducer.handles(np.asfortranarray(np.zeros((64, floats // 64), np.float32)))
    assert not reducer.handles(np.zeros(floats - 1, np.float32))  # MPI: small messages
    assert not reducer.handles(np.zeros(floats, np.int32))  # MPI's integer sums
    assert not reducer.handles(np.zeros(2 * floats, np.float32)[::2])  # MPI says why
    frozen = np.zeros(floats, np.float32)
    frozen.setflags(write=False)
    assert not reducer.handles(frozen)  # MPI says why, before any rank waits


def test_gradients_go_to_shared_memory_only_where_dev_shm_has_room(monkeypatch):
    """Containers often give /dev/shm 64 MiB: a block MPI could not map there would stop
    the program, so DataParallel keeps the gradients in each rank's memory instead."""
    import os
    from types import SimpleNamespace

    from tensornet.distributed import shared
    reducer = shared.SharedReducer(_World(), None)
    room = SimpleNamespace(f_bavail=64 * 2**20 // 4096, f_frsize=4096)  # 64 MiB free
    monkeypatch.setattr(os, "statvfs", lambda path: room)
    assert reducer.can_share(16 * 2**20)  # 2 ranks x 16 MiB, twice over: 64 MiB
    assert not reducer.can_share(16 * 2**20 + 1)

    def missing(path):
        raise FileNotFoundError(path)
    monkeypatch.setattr(os, "statvfs", missing)
    assert reducer.can_share(2**40)  # no /dev/shm: MPI maps its windows elsewhere


def test_a_mid_epoch_state_resumes_only_with_as_many_ranks():
    """Rank 0's mid-epoch state (ModelCheckpoint's file is rank 0's) resumes every rank of
    a run with as many ranks; with another number its batch count would have skipped
    other samples than those taken, silently."""
    ds = ArrayDataset(np.arange(96, dtype=np.float32)[:, None], np.arange(96))
    saved = DataLoader(ds, 4, shuffle=True, seed=1, shard=(0, 2))
    batches = iter(saved)
    next(batches), next(batches)
    state = saved.state_dict()
    assert state["batch"] == 2
    rank1 = DataLoader(ds, 4, shuffle=True, seed=1, shard=(1, 2))
    rank1.load_state_dict(state)  # the same number of ranks: fine on every rank
    whole = list(DataLoader(ds, 4, shuffle=True, seed=1, shard=(1, 2)))
    assert [b[1].tolist() for b in rank1] == [b[1].tolist() for b in whole[2:]]
    for other in (DataLoader(ds, 4, shuffle=True, seed=1, shard=(1, 4)),
                  DataLoader(ds, 4, shuffle=True, seed=1)):
        with pytest.raises(ValueError, match="saved with shards of 2 ranks"):
            other.load_state_dict(state)
    single = DataLoader(ds, 4, shuffle=True, seed=1)
    batches = iter(single)
    next(batches)
    with pytest.raises(ValueError, match="saved with no shard, this loader takes shards of 2"):
        rank1.load_state_dict(single.state_dict())
    end_of_epoch = dict(state)
    del end_of_epoch["batch"]
    DataLoader(ds, 4, shuffle=True, seed=1, shard=(3, 4)).load_state_dict(end_of_epoch)
