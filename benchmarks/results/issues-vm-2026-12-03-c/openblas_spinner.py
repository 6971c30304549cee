"""Does OpenBLAS's idle worker give its core back? Run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-c/openblas_spinner.py

Prints, per thread of this process, the user and system CPU ticks (1/100 s) it used while
the main thread slept for 50 ms after a two-thread GEMM: a worker that waits by
sched_yield would show system ticks; one that waits in a user-space loop shows only user
ticks, about 5 of them (its whole core) until its timeout runs out.
"""
import os
import time

import numpy as np
from threadpoolctl import ThreadpoolController

blas = ThreadpoolController().select(user_api="blas").lib_controllers[0]
blas.set_num_threads(2)
a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
a @ a
tasks = sorted(os.listdir(f"/proc/{os.getpid()}/task"), key=int)


def ticks():
    out = []
    for task in tasks:
        with open(f"/proc/{os.getpid()}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out.append((int(fields[11]), int(fields[12])))  # utime, stime
    return np.array(out)


print(f"{blas.internal_api} {blas.version}, {blas.num_threads} threads, "
      f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}")
for sleep in (0.05, 0.05, 0.2):
    a @ a
    before = ticks()
    time.sleep(sleep)
    used = ticks() - before
    print(f"after a GEMM, {sleep * 1e3:.0f} ms asleep: " + ", ".join(
        f"thread {t} user {u} sys {s}" for t, (u, s) in zip(tasks, used)))
