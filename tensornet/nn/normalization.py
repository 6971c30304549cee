"""Normalization layers: BatchNorm1d, BatchNorm2d, GroupNorm and InstanceNorm1d/2d
(GroupNorm with a group per channel); LayerNorm and RMSNorm, which normalize each sample
over its last axes, are in ``normalization_layer.py``.

The statistics and the backward formula live in ``tensornet.nn.functional``
(``normalize`` and ``normalize_backward``), shared by these and LayerNorm; these layers add
the affine transform, the running estimates and the checks.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import functional as F
from .checks import check_flag
from .linear import _positive_int
from .module import Module


class _BatchNorm(Module):
    """Batch normalization over every axis except the channel axis 1 (Ioffe & Szegedy 2015).

    Training (or ``track_running_stats=False``): normalise with the batch mean and biased
    variance and, when tracking, update ``running_mean`` / ``running_var`` exactly as
    PyTorch: ``running = (1 - momentum) * running + momentum * batch_stat`` with the
    *unbiased* batch variance (``momentum=None``: cumulative average over
    ``num_batches_tracked``). Eval: normalise with the running estimates.
    ``y = xhat * weight + bias`` per channel when ``affine``.

    The running estimates and ``num_batches_tracked`` are buffers: ``state_dict()`` saves
    them and ``to()`` moves them. Forward caches ``xhat`` (input-sized) and ``1/sqrt(var+eps)``
    (run with the ReLU after it, ``fusion.py``, also the ReLU's output and the (2, C) weight
    and bias that made it).
    """

    _layout = ""  # "(N, C)"-style text for errors, set by subclasses
    _cache_attrs = ("_cache",)
    _ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, device=None,
                 dtype=None):
        super().__init__(device=device, dtype=dtype)
        name = type(self).__name__
        self.num_features = _positive_int(name, "num_features", num_features)
        self.eps = float(eps)
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        self.weight = self.new_parameter(np.ones(c)) if self.affine else None
        self.bias = self.new_parameter(np.zeros(c)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", self.backend.asarray(np.zeros(c, self.dtype)))
            self.register_buffer("running_var", self.backend.asarray(np.ones(c, self.dtype)))
            self.register_buffer("num_batches_tracked",
                                 self.backend.asarray(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @property
    def graph_unsafe_reason(self) -> str | None:
        """Why a CUDA graph cannot capture this layer's training step (None when it can)."""
        if self.training and self.track_running_stats and self.momentum is None:
            return ("momentum=None averages over num_batches_tracked, which it reads on the "
                    "host every step; pass a momentum such as 0.1")
        return None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            c = self.num_features
            self.running_mean = self.backend.asarray(np.zeros(c, self.dtype))
            self.running_var = self.backend.asarray(np.ones(c, self.dtype))
            self.num_batches_tracked = self.backend.asarray(np.zeros((), np.int64))

    def _per_channel(self, values, ndim: int):
        """(C,) -> (1, C, 1, ...) broadcasting against an ndim-dimensional input."""
        try:
            return self.backend.xp.reshape(values, (1, self.num_features) + (1,) * (ndim - 2))
        except (ValueError, TypeError, RuntimeError) as error:  # (a user-assigned array)
            raise ValueError(f"{self._describe()}: weight, bias, running_mean and running_var "
                             f"must have {self.num_features} values, one per channel; got one "
                             f"of shape {tuple(np.shape(values))}") from error

    def forward(self, x):
        """x (N, C, ...) -> y of the same shape; caches xhat and 1/sqrt(var+eps)."""
        return self._forward(x)

    def _forward(self, x, relu: bool = False):
        """forward; with ``relu``, ``relu(forward(x))`` (a Sequential's BatchNorm + ReLU,
        ``fusion.py``): with batch statistics and ``affine`` one kernel, which on the NumPy
        backend normalizes, scales, shifts and rectifies in one sweep."""
        self._check_input(x, ndim=self._ndims, expected=self._layout.format(self.num_features))
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; expected "
                             f"{self._layout.format(self.num_features)}")
        xp = self.backend.xp
        axes = (0,) + tuple(range(2, x.ndim))
        self._cache = y = affine = None
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            count = x.shape[0] * math.prod(x.shape[2:])
            if relu and self.affine and self._plain_affine(x):
                self._require_values(x, count)
                xhat, y, mean, var, invstd, affine = F.normalize_affine_relu(
                    x, axes, self.eps, self.weight.data, self.bias.data)
            else:
                xhat, mean, var, invstd, count = self._batch_normalize(x, axes, count)
            if self.training and self.track_running_stats:
                self._update_running_stats(xp.reshape(mean, (-1,)), xp.reshape(var, (-1,)),
                                           count)
        else:
            invstd = self._per_channel(1.0 / xp.sqrt(self.running_var + self.eps), x.ndim)
            xhat = x - self._per_channel(self.running_mean, x.ndim)
            xhat *= invstd
        self._cache = (xhat, invstd, batch_stats, axes)
        if y is not None:
            if affine is not None:  # what made y from xhat: its mask in _backward
                self._cache += ((y, affine),)
            return y
        y = xhat
        if self.affine:
            y = xhat * self._per_channel(self.weight.data, x.ndim)
            y += self._per_channel(self.bias.data, x.ndim)
        return F.relu(y) if relu else y

    def _plain_affine(self, x) -> bool:
        """Whether weight and bias are (C,) arrays of x's type and dtype, as the fused
        BatchNorm + ReLU kernel takes them. Anything else a user assigned takes the
        separate steps, which broadcast, promote or fail in the affine step after the
        running statistics moved, as the modules one by one."""
        return all(v.__class__ is x.__class__ and tuple(v.shape) == (self.num_features,)
                   and v.dtype == x.dtype for v in (self.weight.data, self.bias.data))

    def _batch_normalize(self, x, axes, count: int):
        """``normalize`` with batch statistics, and the element count per channel they
        cover (SyncBatchNorm overrides both to span every rank)."""
        self._require_values(x, count)
        return (*F.normalize(x, axes, self.eps), count)

    def _require_values(self, x, count: int, over: str = "") -> None:
        """Batch statistics need ``count`` (values per channel) of at least 2."""
        if count < 2:
            raise ValueError(f"{self._describe()} needs more than one value per channel{over} "
                             f"to compute batch statistics, got input of shape "
                             f"{tuple(x.shape)}; use a larger batch or call .eval()")

    def _batch_normalize_backward(self, grad_output, xhat, scale, axes, sums_out):
        return F.normalize_backward(grad_output, xhat, scale, axes, sums_out=sums_out)

    def _update_running_stats(self, mean, var, count: int) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / int(self.num_batches_tracked)
        else:
            factor = self.momentum
        self.running_mean *= 1.0 - factor
        self.running_mean += factor * mean
        self.running_var *= 1.0 - factor
        self.running_var += (factor * count / (count - 1)) * var

    def backward(self, grad_output):
        """grad_output like x -> dx; adds weight/bias grads (sums over all but axis 1)."""
        return self._backward(grad_output)

    def _backward(self, grad_output, relu_output=None):
        """backward; with ``relu_output`` (``fusion.py``): the backward of the ReLU after
        this BatchNorm, whose output that is, then this BatchNorm's; ``grad_output`` is the
        gradient of the ReLU's output."""
        xhat, invstd, batch_stats, axes, *made = self._require_cache(self._cache)
        xp = self.backend.xp
        scale = invstd
        if self.affine:
            scale = invstd * self._per_channel(self.weight.data, xhat.ndim)
        # The affine gradients are sums written straight into the optimizer's flat buffers
        # when there are some (Parameter.grad_buffer).
        buffers = (self.bias.grad_buffer(), self.weight.grad_buffer()) if self.affine \
            else (None, None)
        outs = [None if b is None else self._per_channel(b, xhat.ndim) for b in buffers]
        if relu_output is not None and not batch_stats:
            grad_output, relu_output = F.relu_backward(grad_output, relu_output), None
        if batch_stats and relu_output is not None:
            # (when the ReLU's output is the one the fused forward made from xhat, its mask can
            # be recomputed from xhat and the weight and bias that forward used)
            affine = made[0][1] if made and made[0][0] is relu_output else None
            dx, sum_grad, sum_grad_xhat = F.normalize_relu_backward(
                grad_output, relu_output, xhat, scale, axes, sums_out=outs, affine=affine)
        elif batch_stats:
            dx, sum_grad, sum_grad_xhat = self._batch_normalize_backward(grad_output, xhat,
                                                                         scale, axes, outs)
        else:
            dx = grad_output * scale
            if self.affine:
                sum_grad = F.reduce_sum(grad_output, axis=axes, keepdims=True, out=outs[0])
                sum_grad_xhat = F.reduce_sum(grad_output * xhat, axis=axes, keepdims=True,
                                             out=outs[1])
        if self.affine:
            for param, buffer, total in ((self.bias, buffers[0], sum_grad),
                                         (self.weight, buffers[1], sum_grad_xhat)):
                param.accumulate_grad(xp.reshape(total, (-1,)) if buffer is None else buffer)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.num_features})"


class BatchNorm1d(_BatchNorm):
    """BatchNorm over x (N, C) or (N, C, L): statistics per feature/channel C."""

    _layout = "(N, {0}) or (N, {0}, L)"
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over x (N, C, H, W): statistics per channel over N, H and W."""

    _layout = "(N, {0}, H, W)"
    _ndims = (4,)


class GroupNorm(Module):
    """Group normalization (Wu & He 2018), as ``torch.nn.GroupNorm(num_groups,
    num_channels, eps, affine)``.

    x (N, C, *) with C = ``num_channels``: the channels are split into ``num_groups``
    consecutive groups of C / G channels, and each (sample, group) is standardised over its
    channels and every other axis, with its own mean and biased variance; then
    ``y = xhat * weight + bias`` per channel (shape (C,)) when ``affine``. Same statistics in
    train and eval, whatever the batch size (the reason to use it over BatchNorm for small
    batches). ``GroupNorm(C, C)`` is InstanceNorm with affine weights, ``GroupNorm(1, C)``
    LayerNorm over (C, *) with per-channel weights. Forward caches ``xhat`` (input-sized)
    and ``1/sqrt(var+eps)`` per (sample, group).
    """

    _cache_attrs = ("_cache",)
    _expected = "(N, {}, ...)"  # the input layout, for errors

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        name = type(self).__name__
        self.num_groups = _positive_int(name, "num_groups", num_groups)
        self.num_channels = _positive_int(name, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"{name}: num_channels ({self.num_channels}) must be divisible "
                             f"by num_groups ({self.num_groups})")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0 \
                or not math.isfinite(eps):
            raise ValueError(f"{name}: eps must be a positive finite number, got {eps!r}")
        self.eps, self.affine = float(eps), check_flag(name, "affine", affine)
        self.weight = self.new_parameter(np.ones(self.num_channels)) if self.affine else None
        self.bias = self.new_parameter(np.zeros(self.num_channels)) if self.affine else None

    def forward(self, x):
        expected = self._expected.format(self.num_channels)
        self._check_input(x, expected=expected)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; "
                             f"expected {expected}")
        if 0 in tuple(x.shape[2:]):
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; "
                             f"expected at least one value along every axis")
        if self.affine and (tuple(self.weight.shape) != (self.num_channels,)
                            or tuple(self.bias.shape) != (self.num_channels,)):
            raise ValueError(f"{self._describe()}: weight and bias must have "
                             f"{self.num_channels} values, got shapes "
                             f"{tuple(self.weight.shape)} and {tuple(self.bias.shape)}")
        xp = self.backend.xp
        shape = tuple(x.shape)
        self._cache = None
        grouped = xp.reshape(x, (shape[0], self.num_groups, -1))
        xhat, _, _, invstd = F.normalize(grouped, (2,), self.eps)
        xhat = xp.reshape(xhat, shape)
        self._cache = (xhat, invstd)
        if not self.affine:
            return xhat
        channel = (1, self.num_channels) + (1,) * (len(shape) - 2)
        return xhat * xp.reshape(self.weight.data, channel) + xp.reshape(self.bias.data,
                                                                          channel)

    def backward(self, grad_output):
        xhat, invstd = self._require_cache(self._cache)
        xp = self.backend.xp
        shape = tuple(xhat.shape)
        others = (0,) + tuple(range(2, len(shape)))  # every axis but the channels
        grad_xhat = grad_output
        if self.affine:
            channel = (1, self.num_channels) + (1,) * (len(shape) - 2)
            grad_xhat = grad_output * xp.reshape(self.weight.data, channel)
            if self.weight.requires_grad:
                self.weight.accumulate_grad(F.reduce_sum(grad_output * xhat, axis=others,
                                                         out=self.weight.grad_buffer()))
            if self.bias.requires_grad:
                self.bias.accumulate_grad(F.reduce_sum(grad_output, axis=others,
                                                       out=self.bias.grad_buffer()))
        grouped = (shape[0], self.num_groups, -1)
        dx, _, _ = F.normalize_backward(xp.reshape(grad_xhat, grouped),
                                        xp.reshape(xhat, grouped), invstd, (2,))
        return xp.reshape(dx, shape)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"

    def _describe(self) -> str:
        return f"GroupNorm({self.num_groups}, {self.num_channels})"


class _InstanceNorm(GroupNorm):
    """Instance normalization (Ulyanov et al. 2016): GroupNorm with one group per channel,
    with PyTorch's defaults and checks (``affine=False``; more than one spatial element).
    ``track_running_stats=True`` (running estimates for eval) is not implemented."""

    _ndims = 3

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, *, device=None,
                 dtype=None):
        name = type(self).__name__
        if track_running_stats:
            raise ValueError(f"{name}: track_running_stats=True (running estimates used in "
                             f"eval) is not implemented; with the default False, train and "
                             f"eval both normalise each sample by its own statistics")
        features = _positive_int(name, "num_features", num_features)
        super().__init__(features, features, eps=eps, affine=affine, device=device,
                         dtype=dtype)
        self.momentum, self.track_running_stats = momentum, False

    def forward(self, x):
        self._check_input(x, ndim=self._ndims, expected=self._expected.format(self.num_channels))
        # PyTorch's check, in eval too (there are no running estimates to use instead)
        if math.prod(tuple(x.shape[2:])) == 1:
            raise ValueError(f"{self._describe()}: expected more than 1 spatial element, "
                             f"got input of shape {tuple(x.shape)}: each channel would "
                             f"normalise to 0")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.num_channels})"


class InstanceNorm1d(_InstanceNorm):
    """``torch.nn.InstanceNorm1d``: x (N, C, L), each (sample, channel) standardised over L."""

    _ndims, _expected = 3, "(N, {}, L)"


class InstanceNorm2d(_InstanceNorm):
    """``torch.nn.InstanceNorm2d``: x (N, C, H, W), each (sample, channel) standardised over
    its H x W plane (style transfer, image generation)."""

    _ndims, _expected = 4, "(N, {}, H, W)"
