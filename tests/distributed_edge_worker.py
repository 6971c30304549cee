"""Correct programs under ``mpiexec`` that the collective watchdog once ended (``python
distributed_edge_worker.py CASE OUT``); each rank writes ``CASE-rank<r>.json`` at the end.

Cases: ``broadcast-tree`` (4 ranks: MPI lets a broadcast's root leave before a rank lower
in the tree has its data), ``slow-unpickle`` (a rank unpickles what it gathered for
seconds while the other ends its program), ``caught`` (3 ranks: one rank's collective
raises before MPI sees it, the program catches that and calls again).
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


CASES = {"broadcast-tree": case_broadcast_tree, "slow-unpickle": case_slow_unpickle,
         "caught": case_caught}


def main(argv) -> None:
    case, out = argv[1], argv[2]
    comm = tn.distributed.init()
    result = CASES[case](comm)
    with open(os.path.join(out, f"{case}-rank{comm.rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
