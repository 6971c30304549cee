"""array-api-strict backend: the generic math on a namespace that refuses NumPy-only idioms.

It exists for tests: code that runs here uses only the array API standard, so it will run
on CuPy too. It is slow and that is fine.
"""
from __future__ import annotations

from .base import Backend


class StrictBackend(Backend):
    name = "strict"
    device = "strict"

    def __init__(self, seed=None):
        try:
            import array_api_strict
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "device='strict' needs the array-api-strict package: "
                "pip install 'tensornet[dev]' or pip install array-api-strict") from exc
        self.xp = array_api_strict
        self._array_type = array_api_strict.asarray(0).__class__
        super().__init__(seed)

    def owns(self, x) -> bool:
        return isinstance(x, self._array_type)
