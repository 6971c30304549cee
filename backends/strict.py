"""array-api-strict backend: the generic math on a namespace that refuses NumPy-only idioms.

It exists for tests: code that runs here uses only the array API standard (pinned to the
2024.12 revision, the one tensornet's generic code is written for), so it will run on CuPy
and PyTorch too. It is slow and that is fine.
"""
from __future__ import annotations

from array_api_compat import array_namespace, is_array_api_strict_namespace

from . import register_backend
from .base import Backend, DeviceError

API_VERSION = "2024.12"


class StrictBackend(Backend):
    name = "strict"
    device = "strict"

    def __init__(self, seed=None):
        try:
            import array_api_strict
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DeviceError(
                "device='strict' needs the array-api-strict package: "
                "pip install 'tensornet[dev]' or pip install array-api-strict") from exc
        # Process-wide, as the library keeps it; nothing else in tensornet sets it.
        array_api_strict.set_array_api_strict_flags(api_version=API_VERSION)
        self.xp = array_api_strict
        self._array_type = array_api_strict.asarray(0).__class__
        super().__init__(seed)

    def owns(self, x) -> bool:
        return isinstance(x, self._array_type)


def _detect(x):
    if not hasattr(x, "__array_namespace__"):
        return None
    return "strict" if is_array_api_strict_namespace(array_namespace(x)) else None


register_backend("strict", parse=lambda t: "strict" if t in (
    "strict", "array_api_strict", "array-api-strict") else None,
    build=lambda key: StrictBackend(), detect=_detect, examples=("strict",),
    single_device=True)
