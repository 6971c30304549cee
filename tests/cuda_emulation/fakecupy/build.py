"""g++ for the CUDA emulation: compile generated C++ once, cache the shared library by the
hash of its source, load it with ctypes.

Kernels compile with ``-O2 -ffp-contract=fast`` (and ``-mfma`` where the CPU has FMA), so
``a*b + c`` becomes one fused multiply-add as NVRTC makes it by default. The cache lives in
``$TN_CUDA_EMU_CACHE`` or ``~/.cache/tensornet/cuda-emulation``; entries are written
atomically, so parallel test runs can share it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNTIME = HERE / "runtime.cpp"


class EmulatorCompileError(RuntimeError):
    """g++ rejected a kernel: the message holds the compiler's output and the source."""


def compiler() -> str | None:
    """The C++ compiler the emulation uses (``$CXX`` or g++), or None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


@lru_cache(maxsize=None)
def _flags() -> tuple:
    flags = ["-std=c++17", "-O2", "-fPIC", "-shared", "-pthread", "-ffp-contract=fast",
             "-fno-math-errno", "-w", f"-I{HERE}"]
    try:
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpu = ""
    if " fma " in cpu or cpu.rstrip().endswith(" fma"):
        flags.append("-mfma")
    return tuple(flags)


@lru_cache(maxsize=None)
def _compiler_id() -> str:
    out = subprocess.run([compiler(), "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def cache_dir() -> Path:
    root = os.environ.get("TN_CUDA_EMU_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "tensornet" / "cuda-emulation"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build(source: str, what: str) -> Path:
    """The shared library compiled from ``source`` (built now unless cached)."""
    headers = [p.read_text() for p in sorted(HERE.glob("*.h"))]
    key = hashlib.sha256("\0".join([source, *headers, " ".join(_flags()),
                                    _compiler_id()]).encode()).hexdigest()[:24]
    target = cache_dir() / f"{what}-{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        src = Path(tmp) / f"{what}.cpp"
        src.write_text(source)
        out = Path(tmp) / "kernel.so"
        result = subprocess.run([compiler(), *_flags(), str(src), "-o", str(out)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            numbered = "\n".join(f"{n:4d}  {line}" for n, line in
                                 enumerate(source.splitlines(), 1))
            raise EmulatorCompileError(f"g++ could not compile {what}:\n{result.stderr}\n"
                                       f"--- source ---\n{numbered}")
        os.replace(out, target)
    return target


@lru_cache(maxsize=None)
def runtime() -> ctypes.CDLL:
    """The emulation runtime (threads, barriers, shuffles, errors), loaded RTLD_GLOBAL so that
    every kernel library resolves its ``tn_emu_*`` calls against this one copy."""
    lib = ctypes.CDLL(str(build(RUNTIME.read_text(), "runtime")), mode=ctypes.RTLD_GLOBAL)
    lib.tn_emu_error.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.tn_emu_reset.argtypes = []
    return lib


@lru_cache(maxsize=None)
def load(source: str, what: str) -> ctypes.CDLL:
    runtime()
    return ctypes.CDLL(str(build(source, what)))


def last_error() -> str:
    buf = ctypes.create_string_buffer(4096)
    runtime().tn_emu_error(buf, len(buf))
    return buf.value.decode(errors="replace")


class KernelFault(RuntimeError):
    """A kernel did something that on a GPU is undefined or an error (see the message)."""


def check(status: int, what: str) -> None:
    if status:
        raise KernelFault(f"{what}: {last_error()}")
