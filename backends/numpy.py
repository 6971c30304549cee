"""NumPy (CPU) backend: the generic math with NumPy's ``out=`` and ``bincount`` speed-ups."""
from __future__ import annotations

import math

import numpy as np

from .base import Backend, adam_weight_decay, window_output_size, windows_tile


class NumpyBackend(Backend):
    """CPU arrays are plain ``numpy.ndarray``; the RNG is NumPy's Generator."""

    xp = np
    name = "numpy"
    device = "cpu"

    def owns(self, x) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        if isinstance(x, np.ndarray):
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

    def scatter_add(self, target, index, values):
        # bincount sums in float64 and is far faster than np.add.at.
        flat = target.reshape(-1)
        summed = np.bincount(index.reshape(-1), weights=values.reshape(-1), minlength=flat.size)
        flat += summed.astype(target.dtype, copy=False)
        return target

    def labels_in_range(self, labels, num_classes: int) -> bool:
        # Seen as unsigned, a negative label is huge: one max() checks both ends.
        if labels.dtype.kind == "i":
            labels = labels.view(_UNSIGNED[labels.dtype.itemsize])
        return int(labels.max()) < num_classes

    def relu(self, x):
        return np.maximum(x, 0, dtype=x.dtype)

    def relu_backward(self, grad, y):
        out = np.greater(y, 0).astype(grad.dtype, copy=False)
        out *= grad
        return out

    # Softmax cross-entropy: the generic versions build an (N, C) one-hot target and multiply
    # it in; here the true class is picked (forward) or hit (backward) by index, and the
    # uniform part of label smoothing is a scalar. Same math, ~20 array calls fewer per step.
    # Labels must be in range: the loss checks that on CPU before it calls these. A row
    # holding NaN or +inf, or only -inf, gets NaN log-probabilities (the generic version
    # gives NaN or -inf there) and a non-finite loss either way, which the loss reports.
    def softmax_cross_entropy(self, logits, labels, label_smoothing=0.0):
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

    def softmax_cross_entropy_backward(self, log_probs, labels, scale, label_smoothing=0.0):
        grad = np.exp(log_probs)
        hit = (np.arange(len(labels)), labels)
        if label_smoothing:
            grad -= label_smoothing / log_probs.shape[1]
            grad[hit] -= 1.0 - label_smoothing
        else:
            grad[hit] -= 1.0
        grad *= scale
        return grad

    # im2col/col2im. In general the generic slice loops: they measured as fast as a
    # sliding_window_view plus one copy (conv 8->16 on 14x14, batch 128: 1.3 vs 1.4 ms).
    # Their copies run W elements at a time, though, and NumPy's per-row overhead dominates
    # on small images. When a stride-1 convolution keeps the image size (padding "same",
    # the common 3x3/p1), each kernel offset is one shift of the flattened H*W plane: the
    # copies and adds then run over whole planes, and the few positions that wrap around a
    # row edge are zeroed (im2col) or taken back (col2im). Measured (batch 128, 3x3/p1):
    # im2col 1.27 -> 0.44 ms and col2im 2.67 -> 1.34 ms for 8 channels of 14x14.
    def im2col(self, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
        if not _keeps_size(x.shape, kernel_size, stride, padding, dilation):
            return super().im2col(x, kernel_size, stride, padding, dilation)
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

    def col2im(self, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
               dilation=(1, 1)):
        if not _keeps_size(x_shape, kernel_size, stride, padding, dilation):
            return super().col2im(cols, x_shape, kernel_size, stride, padding, dilation)
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

    # Pooling: the tiling pools (stride == kernel, no padding; the common 2x2) skip the
    # generic padded buffers and write straight into strided views of one output array.
    def max_pool2d(self, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
        if tuple(kernel_size) != (2, 2) or not windows_tile(x.shape, kernel_size, stride,
                                                            padding, dilation):
            return super().max_pool2d(x, kernel_size, stride, padding, dilation)
        # A tree of three maxima over the four corners; the arg-max offset 2*row + column
        # comes from three comparisons as a uint8 (ties keep the earlier offset).
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
        return y, argmax

    def max_pool2d_backward(self, grad, argmax, x_shape, kernel_size, stride,
                            padding=((0, 0), (0, 0)), dilation=(1, 1)):
        if not windows_tile(x_shape, kernel_size, stride, padding, dilation):
            return super().max_pool2d_backward(grad, argmax, x_shape, kernel_size, stride,
                                               padding, dilation)
        kh, kw = kernel_size
        # dx and the mask take grad's memory order (channel-major when grad comes from
        # Conv2d), so the loop below and the next layer's backward stream through memory.
        dx = _empty_in_order_of(grad, x_shape, grad.dtype)
        mask = _empty_in_order_of(grad, argmax.shape, bool)
        for i in range(kh):
            for j in range(kw):
                np.equal(argmax, i * kw + j, out=mask)
                np.multiply(grad, mask, out=dx[:, :, i::kh, j::kw])
        return dx

    # Optimizer updates with out= so that a step allocates no full-size temporaries
    # beyond one scratch array per call.
    def sgd_update(self, param, grad, buf, *, lr, momentum, dampening, nesterov, weight_decay,
                   first_step):
        if weight_decay:
            grad = grad + weight_decay * param
        if not momentum:
            param -= lr * grad
            return
        if first_step:
            np.copyto(buf, grad)
        else:
            buf *= momentum
            if dampening:
                buf += (1.0 - dampening) * grad
            else:
                buf += grad
        if nesterov:
            step = momentum * buf
            step += grad
            step *= lr
        else:
            step = np.multiply(buf, lr, dtype=buf.dtype)
        param -= step

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step, weight_decay,
                    decoupled):
        grad = adam_weight_decay(param, grad, lr, weight_decay, decoupled)
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        scratch = np.multiply(grad, grad)
        scratch *= 1.0 - beta2
        v += scratch
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
        np.sqrt(v, out=scratch)
        scratch *= 1.0 / math.sqrt(bc2)  # a Python float: np.sqrt would give a float64 scalar
        scratch += eps
        np.divide(m, scratch, out=scratch)
        scratch *= lr / bc1
        param -= scratch

    def rmsprop_update(self, param, grad, sq, buf, *, lr, alpha, eps, momentum, weight_decay):
        if weight_decay:
            grad = grad + weight_decay * param
        sq *= alpha
        scratch = np.multiply(grad, grad)
        scratch *= 1.0 - alpha
        sq += scratch
        np.sqrt(sq, out=scratch)
        scratch += eps
        np.divide(grad, scratch, out=scratch)
        if momentum:
            buf *= momentum
            buf += scratch
            np.multiply(buf, lr, out=scratch)
        else:
            scratch *= lr
        param -= scratch

    def adagrad_update(self, param, grad, acc, *, lr, eps, weight_decay):
        if weight_decay:
            grad = grad + weight_decay * param
        scratch = np.multiply(grad, grad)
        acc += scratch
        np.sqrt(acc, out=scratch)
        scratch += eps
        np.divide(grad, scratch, out=scratch)
        scratch *= lr
        param -= scratch


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _empty_in_order_of(like: np.ndarray, shape, dtype) -> np.ndarray:
    """An empty array of ``shape`` whose axes are laid out in memory in the order of
    ``like``'s (e.g. a (N, C, H, W) view of a (C, N, H, W) buffer gives the same)."""
    outer_to_inner = sorted(range(like.ndim), key=lambda axis: -like.strides[axis])
    out = np.empty([shape[axis] for axis in outer_to_inner], dtype=dtype)
    return out.transpose(np.argsort(outer_to_inner))


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
