"""The host all-reduce alone: ``MPI_Allreduce`` against tensornet's shared-memory window
(``tensornet/distributed/shared.py``), float32 arrays of 64 KiB to 16 MiB: arrays in each
rank's own memory, copied through the window, and arrays already in shared memory
(``SharedReducer.share``, where DataParallel puts the gradients on one host), summed where
they lie.

    python -m benchmarks.allreduce [--ranks 2] [--calls 400]

Launches itself under ``mpiexec -n RANKS`` with one BLAS thread per rank. For each size,
each rank fills its array, all ranks meet at a barrier, and the call is timed; both ways
run at each size, one after the other. Printed: the median microseconds per call on rank
0, and the ratios. Each way's sums are checked against the exact answer (every element
equals the number of ranks).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import thread_env
from benchmarks.distributed import _mpiexec

SIZES = (16384, 32768, 65536, 262144, 1048576, 4194304)  # float32: 64 KiB .. 16 MiB


def worker(calls: int) -> None:
    import tensornet.distributed as td
    from tensornet.distributed.shared import SharedReducer
    comm = td.init()
    mpi_comm, mpi = comm._comm, comm._mpi
    window = SharedReducer(mpi_comm, mpi)
    ways = {"MPI_Allreduce": lambda a: mpi_comm.Allreduce(mpi.IN_PLACE, a),
            "shared window": window.allreduce_, "in place": window.allreduce_}
    block = window.share(4 * max(SIZES))
    rows = []
    for n in SIZES:
        medians = {}
        for name, reduce_ in ways.items():
            array = (np.frombuffer(block, dtype=np.float32, count=n) if name == "in place"
                     else np.empty(n, dtype=np.float32))
            times, before = [], window.in_place_calls
            for _ in range(calls):
                array[...] = 1.0
                mpi_comm.Barrier()
                start = time.perf_counter()
                reduce_(array)
                times.append(time.perf_counter() - start)
            if not np.all(array == comm.size):
                raise SystemExit(f"{name}: wrong sum at {n} elements")
            if (window.in_place_calls - before == calls) != (name == "in place"):
                raise SystemExit(f"{name}: not the path it names at {n} elements")
            medians[name] = float(np.median(times)) * 1e6
        rows.append((n, medians))
    if comm.rank == 0:
        print(f"{comm.size} ranks, median of {calls} calls after a barrier\n\n"
              f"| float32 array | MPI_Allreduce (us) | shared window (us) | in place (us) "
              f"| MPI / shared | MPI / in place |\n|---:|---:|---:|---:|---:|---:|")
        for n, medians in rows:
            mpi_us, shared_us = medians["MPI_Allreduce"], medians["shared window"]
            in_place_us = medians["in place"]
            print(f"| {4 * n // 1024:,} KiB | {mpi_us:,.1f} | {shared_us:,.1f} | "
                  f"{in_place_us:,.1f} | {mpi_us / shared_us:.2f} | "
                  f"{mpi_us / in_place_us:.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.allreduce",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.calls)
        return 0
    command = [_mpiexec(), "-n", str(args.ranks), sys.executable, "-m", "benchmarks.allreduce",
               "--worker", "--calls", str(args.calls)]
    env = thread_env(1)
    env.pop("TENSORNET_ALLREDUCE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(command, env=env, cwd=root, timeout=1800).returncode


if __name__ == "__main__":
    sys.exit(main())
