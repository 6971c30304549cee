"""Weight initialisers, drawn on the host with NumPy so a seed means the same weights on
every backend. Each takes a Parameter (a module's weight) or an array and writes its array
in place, as ``torch.nn.init`` does, so whatever holds that array sees the new values.

Names and arguments follow PyTorch (``xavier_uniform_``, ``uniform_(w, a, b)``); the forms
without the underscore are aliases.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from tensornet.backends import dtype_name, get_backend
from tensornet.random import host_rng

from .parameter import Parameter

_GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "conv1d": 1.0, "conv2d": 1.0,
          "conv3d": 1.0, "conv_transpose1d": 1.0, "conv_transpose2d": 1.0,
          "conv_transpose3d": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 0.75}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity (as ``torch.nn.init.calculate_gain``)."""
    if nonlinearity == "leaky_relu":
        if param is None:
            param = 0.01
        elif isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise ValueError(f"calculate_gain: negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1.0 + float(param) ** 2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of "
                         f"{', '.join(sorted(_GAINS))} or leaky_relu")
    return _GAINS[nonlinearity]


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: Linear ``(out, in)``, Conv ``(out, in/groups, kh, kw)``."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a weight with at least 2 dimensions, got shape {shape}")
    receptive = 1
    for d in shape[2:]:
        receptive *= d
    return shape[1] * receptive, shape[0] * receptive


def _fill(param, host: np.ndarray):
    """Write ``host`` into the Parameter's (or array's) own array; returns ``param``."""
    array = param.data if isinstance(param, Parameter) else param
    array[...] = get_backend(array).asarray(host.astype(dtype_name(array.dtype)))
    return param


def uniform_(param, a=0.0, b=1.0, rng=None):
    """U(a, b), as ``torch.nn.init.uniform_``."""
    return _fill(param, (rng or host_rng()).uniform(a, b, size=tuple(param.shape)))


def normal_(param, mean=0.0, std=1.0, rng=None):
    return _fill(param, (rng or host_rng()).normal(mean, std, size=tuple(param.shape)))


def constant_(param, value):
    return _fill(param, np.full(tuple(param.shape), value))


def zeros_(param):
    return constant_(param, 0.0)


def ones_(param):
    return constant_(param, 1.0)


def xavier_uniform_(param, gain=1.0, rng=None):
    """Glorot & Bengio (2010): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(param.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(param, -bound, bound, rng)


def xavier_normal_(param, gain=1.0, rng=None):
    """Glorot & Bengio (2010): N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(param.shape)
    return normal_(param, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def _kaiming_std(shape, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fans(shape)[0 if mode == "fan_in" else 1]
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(param, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He et al. (2015): U(-b, b), b = gain * sqrt(3 / fan). ``a`` is the leaky slope."""
    bound = math.sqrt(3.0) * _kaiming_std(param.shape, a, mode, nonlinearity)
    return uniform_(param, -bound, bound, rng)


def kaiming_normal_(param, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He et al. (2015): N(0, std^2), std = gain / sqrt(fan)."""
    return normal_(param, 0.0, _kaiming_std(param.shape, a, mode, nonlinearity), rng)


# Aliases without the trailing underscore, as the issue and many tutorials name them.
uniform, normal, constant, zeros, ones = uniform_, normal_, constant_, zeros_, ones_
xavier_uniform, xavier_normal = xavier_uniform_, xavier_normal_
kaiming_uniform, kaiming_normal = kaiming_uniform_, kaiming_normal_
glorot_uniform, glorot_normal = xavier_uniform_, xavier_normal_
he_uniform, he_normal = kaiming_uniform_, kaiming_normal_
