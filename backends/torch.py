"""PyTorch-tensor backend: ``device="torch"`` (CPU tensors) or ``"torch:cuda[:N]"``.

The array namespace is ``array_api_compat.torch``, the array-API view of PyTorch, so all of
tensornet's generic math runs on torch tensors unchanged; PyTorch's autograd is never used
(tensors never require grad). Random numbers come from the host NumPy generator, so a seed
gives the same masks and shuffles as on the NumPy backend. Optional: ``pip install torch``.

This file is the whole backend: the device, its registration, and its kernel overrides.
"""
from __future__ import annotations

import numpy as np
from array_api_compat import is_torch_array

from . import register_backend
from .base import Backend, DeviceError, SyncPolicy

_NEEDS = "device='torch' needs PyTorch: pip install torch"


class TorchBackend(Backend):
    """Arrays are ``torch.Tensor`` on one torch device (``cpu`` or ``cuda:N``)."""

    name = "torch"

    def __init__(self, key: str = "torch", seed=None):
        try:
            import torch
            import array_api_compat.torch as xp
        except ImportError as exc:
            raise DeviceError(f"{_NEEDS} (and array-api-compat)") from exc
        self.torch, self.xp, self.device = torch, xp, key
        if key == "torch":
            self._device = torch.device("cpu")
        else:
            index = int(key.rsplit(":", 1)[1])
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if index >= count:
                raise DeviceError(f"device={key!r} needs a CUDA device visible to PyTorch; "
                                  f"this machine has {count}")
            self._device = torch.device("cuda", index)
            self.sync_policy = SyncPolicy.PER_EPOCH
        super().__init__(seed)

    def owns(self, x) -> bool:
        return isinstance(x, self.torch.Tensor) and x.device == self._device

    def asarray(self, x, dtype=None):
        torch = self.torch
        dtype = self.dtype(dtype) if dtype is not None else None
        if isinstance(x, torch.Tensor):
            if x.device != self._device:
                raise DeviceError(f"asarray on {self.device!r} got a tensor on {x.device}; "
                                  f"move it with tensornet.to_device(x, {self.device!r})")
            return x if dtype is None or x.dtype == dtype else x.to(dtype)
        host = np.asarray(x)
        if any(s < 0 for s in host.strides) or not host.flags.writeable:
            host = host.copy()  # torch.from_numpy takes neither
        tensor = torch.from_numpy(host).to(self._device)
        return tensor if dtype is None or tensor.dtype == dtype else tensor.to(dtype)

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def zeros(self, shape, dtype=None):
        return self.torch.zeros(shape, dtype=self.dtype(dtype), device=self._device)

    def ones(self, shape, dtype=None):
        return self.torch.ones(shape, dtype=self.dtype(dtype), device=self._device)

    def empty(self, shape, dtype=None):
        return self.torch.empty(shape, dtype=self.dtype(dtype), device=self._device)

    def full(self, shape, value, dtype=None):
        return self.torch.full(shape, value, dtype=self.dtype(dtype), device=self._device)

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            self.torch.cuda.synchronize(self._device)

    def describe(self) -> dict:
        info = {"device": self.device, "library": f"torch {self.torch.__version__}"}
        if self._device.type == "cuda":
            info["gpu"] = self.torch.cuda.get_device_name(self._device)
        return info


def _parse(text: str):
    if text in ("torch", "torch:cpu"):
        return "torch"
    if text == "torch:cuda":
        return "torch:cuda:0"
    if text.startswith("torch:cuda:") and text[11:].isdigit():
        return f"torch:cuda:{int(text[11:])}"
    return None


def _detect(x):
    if not is_torch_array(x):
        return None
    return "torch" if x.device.type == "cpu" else f"torch:cuda:{x.device.index or 0}"


register_backend("torch", parse=_parse, build=TorchBackend, detect=_detect,
                 examples=("torch", "torch:cuda"))


@TorchBackend.override
def scatter_add(backend, target, index, values):
    # index_add_ is exact and ordered on the CPU (atomics, so unordered, on CUDA).
    target.view(-1).index_add_(0, index.reshape(-1), values.reshape(-1))
    return target


@TorchBackend.override
def scatter_assign(backend, target, index, values):
    flat = target.view(-1)  # target is contiguous (the callers' own zeros)
    flat[index.reshape(-1).to(backend.torch.int64)] = values.reshape(-1)
    return target


@TorchBackend.override
def reduce_sum(backend, x, axis=None, keepdims=False, out=None):
    if axis is None:
        axis = tuple(range(x.ndim))
    return backend.torch.sum(x, dim=axis, keepdim=keepdims, out=out)


@TorchBackend.override
def matmul(backend, a, b, out=None):
    return backend.torch.matmul(a, b, out=out)
