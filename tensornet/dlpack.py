"""DLPack interop: zero-copy exchange of arrays with PyTorch, CuPy, JAX and others.

Every tensornet array is its backend's own array (NumPy, CuPy, array-api-strict), and
those implement the DLPack protocol (``__dlpack__``), as does ``nn.Parameter`` (through its
``data``). So another library imports them directly, without a copy::

    t = torch.from_dlpack(layer.weight)       # shares the weight's memory
    w = tn.from_dlpack(t)                     # back: a NumPy array on the same memory

``to_dlpack`` gives the legacy capsule for consumers that still want one.
"""
from __future__ import annotations

from tensornet.backends import get_backend, to_device
from tensornet.nn.parameter import Parameter

# DLPack device types (dlpack.h): what __dlpack_device__() reports
_CPU_TYPES = {1: "CPU", 3: "CUDA host (pinned)"}
_CUDA_TYPES = {2: "CUDA", 13: "CUDA managed"}


def _device_of(x) -> str:
    if not hasattr(x, "__dlpack_device__"):
        raise TypeError(f"from_dlpack expected an object with the DLPack protocol "
                        f"(__dlpack__, __dlpack_device__), got {type(x).__name__}")
    kind, index = x.__dlpack_device__()
    kind = int(kind)
    if kind in _CPU_TYPES:
        return "cpu"
    if kind in _CUDA_TYPES:
        return f"cuda:{int(index)}"
    raise ValueError(f"from_dlpack: {type(x).__name__} lives on DLPack device type {kind}, "
                     f"which tensornet cannot use (it takes CPU and CUDA memory)")


def from_dlpack(x, device=None):
    """An array of tensornet's backend for ``x`` (a torch tensor, CuPy or JAX array, any
    DLPack producer), sharing its memory: CPU memory becomes a NumPy array, CUDA memory a
    CuPy array. With ``device`` (e.g. ``"strict"``, ``"cuda:1"``) the result is moved
    there, copying only when it is elsewhere."""
    x = x.data if isinstance(x, Parameter) else x
    native = get_backend(_device_of(x))
    array = native.xp.from_dlpack(x)
    if device is None:
        return array
    target = get_backend(device)
    if target is native:
        return array
    if target.name == "strict" and native.name == "numpy":
        return target.xp.from_dlpack(array)  # array-api-strict wraps NumPy memory as is
    return to_device(array, target)


def to_dlpack(x):
    """The DLPack capsule of a tensornet array or Parameter, for legacy consumers
    (``torch.utils.dlpack.from_dlpack(capsule)``); new code passes the array itself."""
    x = x.data if isinstance(x, Parameter) else x
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"to_dlpack expected an array, got {type(x).__name__}")
    return x.__dlpack__()
