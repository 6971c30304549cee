"""Correct programs under ``mpiexec`` that once ended with an error (``python
distributed_edge_worker.py CASE OUT``); each rank writes ``CASE-rank<r>.json`` at the end.

Cases: ``broadcast-tree`` (4 ranks: MPI lets a broadcast's root leave before a rank lower
in the tree has its data), ``slow-unpickle`` (a rank unpickles what it gathered for
seconds while the other ends its program), ``caught`` (3 ranks: one rank's collective
raises before MPI sees it, the program catches that and calls again): the collective
watchdog took them for deadlocks. ``finalized`` (the program calls ``MPI.Finalize()``
itself, then works on without MPI: the watchdog thread must make no MPI call after).
``checkpoints`` (ModelCheckpoint subclasses with hooks
of their own, and a save_best_only whose monitored figure is this rank's own).
``nan-syncbn`` (an infinite target on rank 1 alone in a model with SyncBatchNorm, whose
backward communicates: rank 0 waited in its all-reduce, rank 1 in the step's failure flag).
``stop-at-begin`` (a callback stops rank 1 alone in on_train_begin: rank 1 left the epoch
after one step, rank 0 went on to the next).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np

import tensornet as tn

BUSY = 6.0  # seconds a rank works between two collectives: longer than the watchdog's checks


def case_broadcast_tree(comm) -> dict:
    """Rank 2 works before a broadcast from rank 0. With 4 ranks MPI's tree sends rank 3
    its data through rank 2, and lets ranks 0 and 1 leave at once: they wait in the next
    all-reduce while rank 3 still waits in the broadcast (two collectives, no deadlock).
    Then the same before the program's last collective: ranks 0 and 1 end the program
    while rank 3 still waits for its data."""
    assert comm.size == 4, comm.size
    comm.sum([1.0])
    values = np.arange(4.0) if comm.rank == 0 else np.zeros(4)
    if comm.rank == 2:
        time.sleep(BUSY)
    comm.bcast_(values)
    total = comm.sum([1.0])
    if comm.rank == 2:
        time.sleep(BUSY)
    message = comm.bcast("from rank 0" if comm.rank == 0 else None)
    return {"values": values.tolist(), "total": float(total[0]), "message": message}


class _SlowToUnpickle:
    """Rebuilds something for ``BUSY`` seconds when rank 0 unpickles it."""

    def __init__(self, rank):
        self.rank = rank

    def __setstate__(self, state):
        self.__dict__.update(state)
        if tn.distributed.world().rank == 0 and state["rank"] == 1:
            time.sleep(BUSY)


def case_slow_unpickle(comm) -> dict:
    """The program's last collective is an all-gather; rank 0 then spends seconds
    unpickling rank 1's object while rank 1 ends its program."""
    gathered = comm.allgather(_SlowToUnpickle(comm.rank))
    return {"ranks": [g.rank for g in gathered]}


def case_caught(comm) -> dict:
    """Rank 1's first all-gather gets an object that cannot be pickled, and its first
    all-reduce an array MPI cannot add: both raise before any message leaves, the program
    catches that and calls again, so every rank's MPI calls still match. After each, rank
    2 works while ranks 0 and 1 wait in the same all-reduce."""
    assert comm.size == 3, comm.size
    try:
        gathered = comm.allgather(threading.Lock() if comm.rank == 1 else comm.rank)
    except TypeError:  # cannot pickle '_thread.lock' object
        gathered = comm.allgather(comm.rank)
    if comm.rank == 2:
        time.sleep(BUSY)
    first = comm.sum([1.0])
    try:
        second = comm.allreduce_host_(np.ones(1, dtype=object if comm.rank == 1 else float))
    except KeyError:  # mpi4py: cannot map 'O' to an MPI datatype
        second = comm.allreduce_host_(np.ones(1))
    if comm.rank == 2:
        time.sleep(BUSY)
    third = comm.sum([1.0])
    return {"gathered": gathered, "sums": [float(first[0]), float(second[0]), float(third[0])]}


def case_finalized(comm) -> dict:
    """``MPI.Finalize()`` by hand (as many mpi4py examples end), then seconds of work
    without MPI (writing results) before the script ends."""
    from mpi4py import MPI

    total = comm.sum([1.0])
    MPI.Finalize()
    time.sleep(2.5)  # longer than the watchdog's look between collectives (1 s)
    return {"total": float(total[0])}


class _RankScore(tn.callbacks.Callback):
    """Logs a figure of this rank's own: it falls every epoch on rank 0, rises on rank 1."""

    def on_epoch_end(self, run, logs):
        logs["score"] = float(run.epoch if run.model.comm.rank else -run.epoch)


class _KeepsBest(tn.ModelCheckpoint):
    """Saves as ModelCheckpoint does and, at the end, notes its last file (a file it writes
    itself, in a hook ModelCheckpoint does not have)."""

    def on_train_end(self, run):
        with open(os.path.join(os.path.dirname(self.path),
                               f"best-noted-by-rank{run.model.comm.rank}.txt"), "x") as f:
            f.write(self.saved[-1])


class _Announces(tn.ModelCheckpoint):
    """A ModelCheckpoint with an on_epoch_end of its own that calls ModelCheckpoint's."""

    def on_epoch_end(self, run, logs):
        super().on_epoch_end(run, logs)
        self.announced = getattr(self, "announced", 0) + 1


def case_checkpoints(comm, out) -> dict:
    """Three epochs with ModelCheckpoint(save_best_only) on the figure _RankScore logs (rank
    0's rules, as the file is rank 0's), _KeepsBest and _Announces."""
    from distributed_worker import build, data

    x, y = data(128)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    tn.manual_seed(comm.rank)  # each rank its own streams
    opt = tn.optim.SGD(model.parameters(), lr=0.05)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    best = tn.ModelCheckpoint(os.path.join(out, "best-{epoch}.safetensors"), monitor="score",
                              mode="min", save_best_only=True)
    tn.fit(model, tn.nn.CrossEntropyLoss(), opt, loader, epochs=3, verbose=0, callbacks=[
        _RankScore(), best, _KeepsBest(os.path.join(out, "kept.safetensors"), "train_loss"),
        _Announces(os.path.join(out, "announced.safetensors"), "train_loss")])
    return {"best_saved": [os.path.basename(p) for p in best.saved]}


def case_nan_syncbn(comm, out) -> dict:
    """Rank 1's 3rd batch has an infinite target, so its loss alone is not finite, after
    the collective forward of the SyncBatchNorm; TerminateOnNaN must stop both ranks."""
    tn.manual_seed(0)
    model = tn.distributed.DataParallel(tn.nn.Sequential(
        tn.nn.Linear(4, 8), tn.nn.SyncBatchNorm(8), tn.nn.ReLU(), tn.nn.Linear(8, 1)), comm)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4), dtype=np.float32)
    y = rng.standard_normal((64, 1), dtype=np.float32)
    y[1 + 2 * 2 * 8] = np.inf  # rank 1 takes positions 1, 3, ...: its step 3 of batch 8
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    history = tn.fit(model, tn.nn.MSELoss(), tn.optim.SGD(model.parameters(), lr=0.01), loader,
                     epochs=2, verbose=0, callbacks=[tn.TerminateOnNaN()])
    return {"epochs": history.epoch, "reason": history.stop_reason,
            "train_loss": history["train_loss"]}


class _StopsRank1AtBegin(tn.callbacks.Callback):
    def on_train_begin(self, run):
        if run.model.comm.rank == 1:
            run.stop("rank 1: out of time")


def case_stop_at_begin(comm) -> dict:
    """A stop asked for on rank 1 alone before the first epoch; no callback that may stop
    between steps, so fit agrees on stops at the end of each epoch only."""
    from distributed_worker import build, data

    x, y = data(128)
    model = tn.distributed.DataParallel(build("mlp", False, 0), comm)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, shard=comm.shard)
    history = tn.fit(model, tn.nn.CrossEntropyLoss(), tn.optim.SGD(model.parameters(), lr=0.05),
                     loader, epochs=3, verbose=0, callbacks=[_StopsRank1AtBegin()])
    return {"epochs": history.epoch, "train_loss": history["train_loss"]}


CASES = {"broadcast-tree": case_broadcast_tree, "slow-unpickle": case_slow_unpickle,
         "caught": case_caught, "finalized": case_finalized, "checkpoints": case_checkpoints,
         "nan-syncbn": case_nan_syncbn, "stop-at-begin": case_stop_at_begin}


def main(argv) -> None:
    case, out = argv[1], argv[2]
    comm = tn.distributed.init()
    result = CASES[case](comm, out) if case in ("checkpoints", "nan-syncbn") else CASES[case](comm)
    with open(os.path.join(out, f"{case}-rank{comm.rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
