"""Launching the programs of distributed_worker.py under ``mpiexec`` for the tests (and
the skip when mpi4py or mpiexec is missing)."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def _skip_reason():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'tensornet[mpi]')"
    if _mpiexec() is None:
        return "mpiexec is not on PATH (pip install mpich)"
    return None


needs_mpi = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def mpirun(args, ranks=2, timeout=120, env=None, cwd=HERE):
    """Run ``args`` on ``ranks`` ranks; returns (CompletedProcess, seconds)."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    environment.update(env or {})
    environment["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE)])
    before = set(glob.glob(SHM_SEGMENTS))
    start = time.perf_counter()
    try:
        done = subprocess.run([_mpiexec(), "-n", str(ranks), *args], capture_output=True,
                              text=True, timeout=timeout, env=environment, cwd=cwd)
    finally:
        _remove_leftover_segments(before)
    return done, time.perf_counter() - start


# MPICH's shared-memory segments: a run that aborts leaves its own behind, and its name
# comes from the launcher's job name, which holds mpiexec's pid. Once pids wrap (32768 on
# many machines; a test session starts thousands of processes) a later job of the same
# name opens the stale segment and can hang in its start-up. Each test run removes what
# it left and no live process still maps.
SHM_SEGMENTS = "/dev/shm/mpich_shm_*"


def _remove_leftover_segments(before: set) -> None:
    left = set(glob.glob(SHM_SEGMENTS)) - before
    if not left:
        return
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                text = f.read()
        except OSError:
            continue
        left = {path for path in left if path not in text}
    for path in left:
        with contextlib.suppress(OSError):
            os.unlink(path)


def run_case(case, out, extra=(), worker="distributed_worker.py", **kwargs):
    return mpirun([sys.executable, str(HERE / worker), case, str(out), *extra], **kwargs)
