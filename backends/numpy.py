"""NumPy (CPU) backend: the device, and the functional kernels it does faster than generic.

Each ``@NumpyBackend.override`` function replaces the generic kernel of the same name in
``tensornet.nn.functional`` for NumPy arrays; returning ``NotImplemented`` hands that call
back to the generic version.
"""
from __future__ import annotations

import numpy as np

from array_api_compat import is_numpy_array

from . import register_backend
from .base import Backend
from .geometry import window_output_size, windows_tile


def _is_host_array(x) -> bool:
    # The tests' CUDA emulation makes its CuPy arrays NumPy subclasses; they stay GPU arrays.
    return isinstance(x, np.ndarray) and not type(x).__module__.startswith("cupy")


class NumpyBackend(Backend):
    """CPU arrays are plain ``numpy.ndarray``; the RNG is NumPy's Generator."""

    xp = np
    name = "numpy"
    device = "cpu"

    def owns(self, x) -> bool:
        return _is_host_array(x)

    def asarray(self, x, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        if _is_host_array(x):
            return x if dtype is None or x.dtype == dtype else x.astype(dtype)
        return super().asarray(x, dtype)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def collective_allreduce(self, comm):
        """Host arrays go to MPI as they are (issue 18)."""
        return comm.allreduce_host_

    # Draws need no transfer on the CPU.
    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        out = self._rng.standard_normal(size=shape, dtype=self.dtype(dtype))
        if std != 1.0:
            out *= std
        if mean != 0.0:
            out += mean
        return out

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        out = self._rng.random(size=shape, dtype=self.dtype(dtype))
        if (low, high) != (0.0, 1.0):
            out *= high - low
            out += low
        return out

    def bernoulli(self, shape, p, dtype=None):
        draw = self._rng.random(size=shape, dtype=np.float32)
        return np.less(draw, p).astype(self.dtype(dtype))

    def permutation(self, n: int):
        return self._rng.permutation(n).astype(np.int64)

    def describe(self) -> dict:
        return {"device": "cpu", "library": f"numpy {np.__version__}", "blas": _blas_info()}


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(f"{p['internal_api']} {p.get('version') or ''} "
                             f"({p['num_threads']} threads)".replace("  ", " ") for p in pools)
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # the layout of show_config differs across NumPy versions
        return "unknown"


register_backend(
    "numpy",
    parse=lambda text: "cpu" if text in ("cpu", "numpy") else None,
    build=lambda key: NumpyBackend(),
    detect=lambda x: "cpu" if is_numpy_array(x) else None,
    examples=("cpu", "numpy"),
    single_device=True,
)


# ---------------------------------------------------------------------- hatches
@NumpyBackend.override
def scatter_add(backend, target, index, values):
    # bincount sums in float64 and is far faster than np.add.at.
    flat = target.reshape(-1)
    summed = np.bincount(index.reshape(-1), weights=values.reshape(-1), minlength=flat.size)
    flat += summed.astype(target.dtype, copy=False)
    return target


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@NumpyBackend.override
def labels_in_range(backend, labels, num_classes: int) -> bool:
    # Seen as unsigned, a negative label is huge: one max() checks both ends.
    if labels.dtype.kind == "i":
        labels = labels.view(_UNSIGNED[labels.dtype.itemsize])
    return int(labels.max()) < num_classes


@NumpyBackend.override
def matmul(backend, a, b, out=None):
    return np.matmul(a, b, out=out)


@NumpyBackend.override
def reduce_sum(backend, x, axis=None, keepdims=False, out=None):
    return np.sum(x, axis=axis, keepdims=keepdims, out=out)


@NumpyBackend.override
def relu(backend, x):
    return np.maximum(x, 0, dtype=x.dtype)


@NumpyBackend.override
def relu_backward(backend, grad, y):
    out = np.greater(y, 0).astype(grad.dtype, copy=False)
    out *= grad
    return out


# Softmax cross-entropy: the generic versions build an (N, C) one-hot target and multiply
# it in; here the true class is picked (forward) or hit (backward) by index, and the
# uniform part of label smoothing is a scalar. Same math, ~20 array calls fewer per step.
# Labels must be in range: the loss checks that on CPU before it calls these. A row
# holding NaN or +inf, or only -inf, gets NaN log-probabilities (the generic version
# gives NaN or -inf there) and a non-finite loss either way, which the loss reports.
@NumpyBackend.override
def softmax_cross_entropy(backend, logits, labels, label_smoothing=0.0):
    log_probs = np.subtract(logits, logits.max(axis=1, keepdims=True))
    shifted_lse = np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    log_probs -= shifted_lse
    picked = log_probs[np.arange(len(labels)), labels]
    if not label_smoothing:
        return np.negative(picked), log_probs
    # target (1 - eps) * onehot + eps / C: loss = -(1 - eps) * lp[y] - eps / C * sum(lp)
    losses = log_probs.sum(axis=1)
    losses *= -label_smoothing / logits.shape[1]
    picked *= 1.0 - label_smoothing
    losses -= picked
    return losses, log_probs


@NumpyBackend.override
def softmax_cross_entropy_backward(backend, log_probs, labels, scale, label_smoothing=0.0):
    grad = np.exp(log_probs)
    hit = (np.arange(len(labels)), labels)
    if label_smoothing:
        grad -= label_smoothing / log_probs.shape[1]
        grad[hit] -= 1.0 - label_smoothing
    else:
        grad[hit] -= 1.0
    grad *= scale
    return grad


# ---------------------------------------------------------------------- im2col / col2im
# In general the generic slice loops: they measured as fast as a sliding_window_view plus
# one copy (conv 8->16 on 14x14, batch 128: 1.3 vs 1.4 ms). Their copies run W elements at a
# time, though, and NumPy's per-row overhead dominates on small images. When a stride-1
# convolution keeps the image size (padding "same", the common 3x3/p1), each kernel offset
# is one shift of the flattened H*W plane: the copies and adds then run over whole planes,
# and the few positions that wrap around a row edge are zeroed (im2col) or taken back
# (col2im). Measured (batch 128, 3x3/p1): im2col 1.27 -> 0.44 ms and col2im 2.67 -> 1.34 ms
# for 8 channels of 14x14.
@NumpyBackend.override
def im2col(backend, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
    if not _keeps_size(x.shape, kernel_size, stride, padding, dilation):
        return NotImplemented
    n, c, h, w = x.shape
    plane = h * w
    flat = x.transpose(1, 0, 2, 3).reshape(c, n, plane)
    cols = np.empty((c, kernel_size[0], kernel_size[1], n, plane), dtype=x.dtype)
    for i, j, row_shift, column_shift in _offset_shifts(kernel_size, padding, dilation):
        shift = row_shift * w + column_shift
        lo, hi = max(0, -shift), min(plane, plane - shift)
        out = cols[:, i, j]
        out[..., lo:hi] = flat[..., lo + shift:hi + shift]
        out[..., :lo] = 0
        out[..., hi:] = 0
        rows = out.reshape(c, n, h, w)
        if column_shift > 0:      # read past the right edge: padding
            rows[..., w - column_shift:] = 0
        elif column_shift < 0:    # read before the left edge: padding
            rows[..., :-column_shift] = 0
    return cols.reshape(c, kernel_size[0], kernel_size[1], n, h, w)


@NumpyBackend.override
def col2im(backend, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
           dilation=(1, 1)):
    if not _keeps_size(x_shape, kernel_size, stride, padding, dilation):
        return NotImplemented
    n, c, h, w = x_shape
    plane = h * w
    cols = cols.reshape(c, kernel_size[0], kernel_size[1], n, plane)
    dx = np.zeros((c, n, plane), dtype=cols.dtype)
    dx_rows = dx.reshape(c, n, h, w)
    for i, j, row_shift, column_shift in _offset_shifts(kernel_size, padding, dilation):
        shift = row_shift * w + column_shift
        lo, hi = max(0, -shift), min(plane, plane - shift)
        part = cols[:, i, j]
        dx[..., lo + shift:hi + shift] += part[..., lo:hi]
        # Output columns whose input column lies in the padding were added to the
        # neighbouring row's other edge; take them back out.
        rows = part.reshape(c, n, h, w)
        if column_shift > 0:      # last columns landed on the next row's first ones
            first, last = max(0, -row_shift - 1), min(h, h - row_shift - 1)
            if last > first:
                dx_rows[:, :, first + row_shift + 1:last + row_shift + 1,
                        :column_shift] -= rows[:, :, first:last, w - column_shift:]
        elif column_shift < 0:    # first columns landed on the previous row's last ones
            first, last = max(0, 1 - row_shift), min(h, h + 1 - row_shift)
            if last > first:
                dx_rows[:, :, first + row_shift - 1:last + row_shift - 1,
                        w + column_shift:] -= rows[:, :, first:last, :-column_shift]
    return dx_rows.transpose(1, 0, 2, 3)


def _keeps_size(x_shape, kernel_size, stride, padding, dilation) -> bool:
    """True for a stride-1 window geometry whose output is as large as its input (and whose
    kernel is narrower than the image, so a shifted row wraps into one neighbour only)."""
    return (tuple(stride) == (1, 1) and x_shape[2] * x_shape[3] > 0
            and window_output_size(x_shape, kernel_size, stride, padding, dilation)
            == tuple(x_shape[2:])
            and (kernel_size[1] - 1) * dilation[1] < x_shape[3])


def _offset_shifts(kernel_size, padding, dilation):
    """Yield ``(i, j, row_shift, column_shift)``: where kernel offset (i, j) reads the
    unpadded image relative to each output position."""
    (top, _), (left, _) = padding
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            yield i, j, i * dilation[0] - top, j * dilation[1] - left


# ---------------------------------------------------------------------- pooling
# The tiling pools (stride == kernel, no padding; the common 2x2) skip the generic padded
# buffers and write straight into strided views of one output array.
@NumpyBackend.override
def max_pool2d(backend, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
    if tuple(kernel_size) != (2, 2) or not windows_tile(x.shape, kernel_size, stride,
                                                        padding, dilation):
        return NotImplemented
    # A tree of three maxima over the four corners; the arg-max offset 2*row + column comes
    # from three comparisons as a uint8 (ties keep the earlier offset).
    top_left, top_right = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    bottom_left, bottom_right = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    top = np.maximum(top_left, top_right)
    bottom = np.maximum(bottom_left, bottom_right)
    row = np.greater(bottom, top)
    y = np.maximum(top, bottom, out=top)
    column = np.greater(top_right, top_left)
    column_bottom = np.greater(bottom_right, bottom_left)
    column_bottom ^= column          # column = row ? column_bottom : column, in place
    column_bottom &= row
    column ^= column_bottom
    argmax = np.left_shift(row.view(np.uint8), 1)
    argmax |= column.view(np.uint8)
    nan = np.isnan(y)
    if nan.any():  # a NaN wins, the last one (as the generic code and the CUDA kernel)
        for k, corner in enumerate((top_left, top_right, bottom_left, bottom_right)):
            argmax[nan & np.isnan(corner)] = k
    return y, argmax


@NumpyBackend.override
def max_pool2d_backward(backend, grad, argmax, x_shape, kernel_size, stride,
                        padding=((0, 0), (0, 0)), dilation=(1, 1)):
    if not windows_tile(x_shape, kernel_size, stride, padding, dilation):
        return NotImplemented
    kh, kw = kernel_size
    # dx and the mask take grad's memory order (channel-major when grad comes from Conv2d),
    # so the loop below and the next layer's backward stream through memory.
    dx = _empty_in_order_of(grad, x_shape, grad.dtype)
    mask = _empty_in_order_of(grad, argmax.shape, bool)
    for i in range(kh):
        for j in range(kw):
            np.equal(argmax, i * kw + j, out=mask)
            np.multiply(grad, mask, out=dx[:, :, i::kh, j::kw])
    return dx


def _empty_in_order_of(like: np.ndarray, shape, dtype) -> np.ndarray:
    """An empty array of ``shape`` whose axes are laid out in memory in the order of
    ``like``'s (e.g. a (N, C, H, W) view of a (C, N, H, W) buffer gives the same)."""
    outer_to_inner = sorted(range(like.ndim), key=lambda axis: -like.strides[axis])
    out = np.empty([shape[axis] for axis in outer_to_inner], dtype=dtype)
    return out.transpose(np.argsort(outer_to_inner))
