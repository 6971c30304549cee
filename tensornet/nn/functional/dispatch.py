"""How a functional kernel finds its device's version: ``@kernel`` on the generic one."""
from __future__ import annotations

import functools
import inspect

from tensornet.backends import backend_of


def kernel(generic):
    """Make ``generic(backend, x, ...)`` callable as ``f(x, ...)``, dispatching on ``x``.

    The call looks up ``x``'s backend and runs its override of the same name (registered
    with ``@SomeBackend.override`` in the device's file) or, when there is none or it
    returns ``NotImplemented``, the generic version, which uses only the array API
    standard on ``backend.xp`` and creates arrays through the backend (``backend.zeros``...,
    so they land on ``x``'s device). ``f.generic`` is the generic version itself.
    """
    name = generic.__name__

    @functools.wraps(generic)
    def call(x, *args, **kwargs):
        backend = backend_of(x)
        override = backend.kernels.get(name)
        if override is not None:
            out = override(backend, x, *args, **kwargs)
            if out is not NotImplemented:
                return out
        return generic(backend, x, *args, **kwargs)

    params = list(inspect.signature(generic).parameters.values())[1:]
    call.__signature__ = inspect.Signature(params)
    call.generic = generic
    return call
