"""CuPy (NVIDIA GPU) backend.

All GPU-specific code lives here (and in files this module imports). The core never
imports cupy: ``get_backend("cuda")`` imports this module lazily.
"""
from __future__ import annotations

import numpy as np

from .base import Backend, DeviceError

INSTALL_HINT = ("pip install 'tensornet[cuda12]' (CUDA 12 driver) or 'tensornet[cuda13]' "
                "(CUDA 13); nvidia-smi shows the driver's CUDA version")


def _import_cupy():
    """Import CuPy and check a GPU is really there; one clear error otherwise."""
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"device='cuda' needs CuPy and an NVIDIA GPU: CuPy is not installed. "
                          f"Install it with {INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when there is no driver
        raise DeviceError(f"device='cuda' needs CuPy and an NVIDIA GPU: CuPy is installed but "
                          f"no CUDA device is usable ({exc})") from exc
    if count == 0:
        raise DeviceError("device='cuda' needs CuPy and an NVIDIA GPU: no CUDA device found")
    return cupy, count


def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device answers."""
    try:
        _import_cupy()
    except DeviceError:
        return False
    return True


class CupyBackend(Backend):
    name = "cupy"
    cheap_sync = False

    def __init__(self, index: int = 0, seed=None):
        cupy, count = _import_cupy()
        if not 0 <= index < count:
            raise DeviceError(f"device='cuda:{index}' does not exist; this machine has {count} "
                              f"CUDA device(s): cuda:0 .. cuda:{count - 1}")
        self.xp = cupy
        self.index = index
        self.device = f"cuda:{index}"
        self._cuda_device = cupy.cuda.Device(index)
        super().__init__(seed)
        with self._cuda_device:
            self._gpu_rng = cupy.random.default_rng(seed)

    def owns(self, x) -> bool:
        return isinstance(x, self.xp.ndarray) and x.device.id == self.index

    def asarray(self, x, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        with self._cuda_device:
            if isinstance(x, self.xp.ndarray) and not self.owns(x):
                raise DeviceError(f"asarray on {self.device!r} got an array on cuda:{x.device.id}; "
                                  f"move it with tensornet.to_device(x, {self.device!r})")
            return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self.xp.cuda.Device(self.index).synchronize()

    def seed(self, seed):
        super().seed(seed)
        with self._cuda_device:
            self._gpu_rng = self.xp.random.default_rng(seed)

    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        with self._cuda_device:
            out = self._gpu_rng.standard_normal(size=shape, dtype=self.dtype(dtype))
            return out * std + mean if (mean, std) != (0.0, 1.0) else out

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        with self._cuda_device:
            out = self._gpu_rng.random(size=shape, dtype=self.dtype(dtype))
            return out * (high - low) + low if (low, high) != (0.0, 1.0) else out

    def bernoulli(self, shape, p, dtype=None):
        with self._cuda_device:
            draw = self._gpu_rng.random(size=shape, dtype=self.xp.float32)
            return (draw < p).astype(self.dtype(dtype))

    def permutation(self, n: int):
        with self._cuda_device:
            return self._gpu_rng.permutation(n).astype(self.xp.int64)

    def scatter_add(self, target, index, values):
        import cupyx
        cupyx.scatter_add(target.reshape(-1), index.reshape(-1), values.reshape(-1))
        return target
