"""Generic math of the convolution, pooling and normalization layers, mixed into Backend.

Like the rest of ``Backend`` it uses only array-API-standard calls on ``self.xp`` (so it runs
on NumPy, array-api-strict and CuPy); devices override single methods for speed
(``backends/numpy.py``: the 2x2 pool; ``backends/cupy.py``: im2col/col2im/pool kernels).
It lives in its own file only to keep ``base.py`` short; ``Backend`` inherits it.
"""
from __future__ import annotations

import math


class LayerOps:
    """Sliding-window (im2col/col2im, pooling) and normalization methods of ``Backend``."""

    # ------------------------------------------------------------------ windows: conv, pooling
    # Geometry shared by every method below and by every device override:
    #   x: (N, C, H, W); kernel_size (kh, kw); stride (sh, sw); dilation (dh, dw);
    #   padding ((top, bottom), (left, right)), zeros except for max pooling (-inf);
    #   OH = (H + top + bottom - dh*(kh-1) - 1) // sh + 1, likewise OW (see window_output_size);
    #   window (oh, ow), kernel offset (i, j) reads x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw].
    # The loops below run over the kh*kw kernel offsets only; each step moves whole arrays.
    def pad2d(self, x, padding, value=0.0):
        """``x`` (N, C, H, W) padded to (N, C, H+top+bottom, W+left+right) with ``value``;
        ``x`` itself (no copy) when the padding is all zero."""
        (top, bottom), (left, right) = padding
        if not (top or bottom or left or right):
            return x
        n, c, h, w = x.shape
        out = self.xp.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
        out[:, :, top:top + h, left:left + w] = x
        return out

    def im2col(self, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
        """Unfold the sliding windows of ``x`` into columns for a convolution GEMM.

        Args: x (N, C, H, W); kernel_size (kh, kw); stride (sh, sw); zero padding
        ((top, bottom), (left, right)); dilation (dh, dw).
        Returns ``cols`` of shape (C, kh, kw, N, OH, OW), C-contiguous, with
        ``cols[c, i, j, n, oh, ow] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]``.
        ``reshape(cols, (C*kh*kw, N*OH*OW))`` is then the right operand of ONE GEMM with the
        weight as (O, C*kh*kw): the batch is folded into the GEMM's long axis, and channel
        groups are contiguous row blocks. Overrides must return this exact layout.
        """
        n, c = x.shape[0], x.shape[1]
        oh, ow = window_output_size(x.shape, kernel_size, stride, padding, dilation)
        xpad = self.xp.permute_dims(self.pad2d(x, padding), (1, 0, 2, 3))
        cols = self.xp.empty((c, kernel_size[0], kernel_size[1], n, oh, ow), dtype=x.dtype)
        for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, (oh, ow)):
            cols[:, i, j, :, :, :] = xpad[:, :, rows, columns]
        return cols

    def col2im(self, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
               dilation=(1, 1)):
        """Adjoint of ``im2col``: fold columns back into an image, summing overlaps.

        Args: cols (C, kh, kw, N, OH, OW) (or any shape with that many elements in that
        order, e.g. (C*kh*kw, N*OH*OW)); x_shape (N, C, H, W) of the unpadded image; the
        geometry as in ``im2col``. Returns dx (N, C, H, W) with
        ``dx[n, c, h, w] = sum of cols[c, i, j, n, oh, ow] over oh*sh + i*dh - top == h``
        (likewise for w); padding positions are dropped. The sums run in cols' own
        (C, N, H, W) order, so dx may be a transposed, cropped view of that buffer.
        """
        xp = self.xp
        n, c, h, w = x_shape
        (top, bottom), (left, right) = padding
        oh, ow = window_output_size(x_shape, kernel_size, stride, padding, dilation)
        cols = xp.reshape(cols, (c, kernel_size[0], kernel_size[1], n, oh, ow))
        dx = xp.zeros((c, n, h + top + bottom, w + left + right), dtype=cols.dtype)
        for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, (oh, ow)):
            dx[:, :, rows, columns] += cols[:, i, j, :, :, :]
        return xp.permute_dims(dx[:, :, top:top + h, left:left + w], (1, 0, 2, 3))

    def max_pool2d(self, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
        """Max over each window. x (N, C, H, W) -> (y, argmax), both (N, C, OH, OW).

        ``argmax`` (an integer array, int32 here; overrides may pick a narrower dtype) is
        the winning kernel offset ``i*kw + j`` of each window, the first one on ties, as
        PyTorch. NaNs propagate to ``y``. Padding counts as -inf. Backward needs only
        ``argmax``, which is opaque to layers: it goes back to ``max_pool2d_backward``.
        """
        xp = self.xp
        oh, ow = window_output_size(x.shape, kernel_size, stride, padding, dilation)
        xpad = self.pad2d(x, padding, value=-math.inf)
        best = argmax = None
        for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, (oh, ow)):
            value = xpad[:, :, rows, columns]
            if best is None:
                best = value
                argmax = xp.zeros(value.shape, dtype=xp.int32)
                continue
            argmax = xp.where(value > best, i * kernel_size[1] + j, argmax)
            best = xp.maximum(best, value)  # the standard's maximum propagates NaN
        return best, argmax

    def max_pool2d_backward(self, grad, argmax, x_shape, kernel_size, stride,
                            padding=((0, 0), (0, 0)), dilation=(1, 1)):
        """Route ``grad`` (N, C, OH, OW) to each window's arg-max; returns dx (N, C, H, W).

        Non-overlapping windows write each input position at most once (a select per
        kernel offset); overlapping windows can route several gradients to one position,
        so they accumulate through ``scatter_add``.
        """
        xp = self.xp
        n, c, h, w = x_shape
        kh, kw = kernel_size
        if windows_tile(x_shape, kernel_size, stride, padding, dilation):
            oh, ow = grad.shape[2], grad.shape[3]
            dx = xp.empty((n, c, oh, kh, ow, kw), dtype=grad.dtype)
            for i in range(kh):
                for j in range(kw):
                    dx[:, :, :, i, :, j] = xp.where(argmax == i * kw + j, grad, 0.0)
            return xp.reshape(dx, (n, c, h, w))
        (top, bottom), (left, right) = padding
        hp, wp = h + top + bottom, w + left + right
        if windows_overlap(kernel_size, stride, dilation):
            return self._max_pool2d_scatter(grad, argmax, x_shape, kernel_size, stride,
                                            padding, dilation)
        dx = xp.zeros((n, c, hp, wp), dtype=grad.dtype)
        for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, grad.shape[2:]):
            dx[:, :, rows, columns] = xp.where(argmax == i * kw + j, grad, 0.0)
        return dx[:, :, top:top + h, left:left + w]

    def _max_pool2d_scatter(self, grad, argmax, x_shape, kernel_size, stride, padding,
                            dilation):
        xp = self.xp
        n, c, h, w = x_shape
        (top, bottom), (left, right) = padding
        hp, wp = h + top + bottom, w + left + right
        oh, ow = grad.shape[2], grad.shape[3]
        arg = xp.astype(argmax, xp.int64)
        row = (xp.reshape(xp.arange(oh, dtype=xp.int64), (1, 1, oh, 1)) * stride[0]
               + (arg // kernel_size[1]) * dilation[0])
        col = (xp.reshape(xp.arange(ow, dtype=xp.int64), (1, 1, 1, ow)) * stride[1]
               + (arg % kernel_size[1]) * dilation[1])
        plane = xp.reshape(xp.arange(n * c, dtype=xp.int64), (n, c, 1, 1)) * (hp * wp)
        dx = xp.zeros((n, c, hp, wp), dtype=grad.dtype)
        self.scatter_add(dx, plane + row * wp + col, grad)
        return dx[:, :, top:top + h, left:left + w]

    def avg_pool2d(self, x, kernel_size, stride, padding=((0, 0), (0, 0)),
                   count_include_pad=True):
        """Mean over each window. x (N, C, H, W) -> (N, C, OH, OW).

        Padding counts as zeros; with ``count_include_pad=False`` each window is divided
        by the number of real (unpadded) positions it covers, as PyTorch.
        """
        xp = self.xp
        oh, ow = window_output_size(x.shape, kernel_size, stride, padding)
        xpad = self.pad2d(x, padding)
        total = None
        for _, _, rows, columns in window_offsets(kernel_size, stride, (1, 1), (oh, ow)):
            window = xpad[:, :, rows, columns]
            if total is None:
                total = xp.asarray(window, copy=True)
            else:
                total += window
        total *= self._avg_pool_scale(x.shape, kernel_size, stride, padding, count_include_pad,
                                      x.dtype)
        return total

    def avg_pool2d_backward(self, grad, x_shape, kernel_size, stride,
                            padding=((0, 0), (0, 0)), count_include_pad=True):
        """Spread ``grad`` (N, C, OH, OW) evenly over each window; returns dx (N, C, H, W)."""
        xp = self.xp
        n, c, h, w = x_shape
        (top, bottom), (left, right) = padding
        share = grad * self._avg_pool_scale(x_shape, kernel_size, stride, padding,
                                            count_include_pad, grad.dtype)
        dx = xp.zeros((n, c, h + top + bottom, w + left + right), dtype=grad.dtype)
        for _, _, rows, columns in window_offsets(kernel_size, stride, (1, 1), grad.shape[2:]):
            dx[:, :, rows, columns] += share
        return dx[:, :, top:top + h, left:left + w]

    def _avg_pool_scale(self, x_shape, kernel_size, stride, padding, count_include_pad, dtype):
        """1 / (positions per window): a Python float, or (OH, OW) when padding is excluded."""
        (top, bottom), (left, right) = padding
        if count_include_pad or not (top or bottom or left or right):
            return 1.0 / (kernel_size[0] * kernel_size[1])
        xp = self.xp
        ones = self.pad2d(xp.ones((1, 1) + tuple(x_shape[2:]), dtype=dtype), padding)
        out_size = window_output_size(x_shape, kernel_size, stride, padding)
        count = None
        for _, _, rows, columns in window_offsets(kernel_size, stride, (1, 1), out_size):
            window = ones[0, 0, rows, columns]
            count = window if count is None else count + window
        return 1.0 / count

    # ------------------------------------------------------------------ normalization
    def normalize(self, x, axes, eps, allreduce=None, count=None):
        """Standardise ``x`` over ``axes`` (a tuple): returns ``(xhat, mean, var, invstd)``.

        ``mean``, ``var`` (biased, as used for normalising) and ``invstd = 1/sqrt(var+eps)``
        keep the reduced axes with size 1; ``xhat = (x - mean) * invstd`` has x's shape.
        SyncBatchNorm passes ``allreduce`` (sums an array in place over the ranks) and
        ``count`` (the elements per channel on all ranks): the statistics are then those of
        every rank's input together (two passes, as here: sum, then squared deviations).
        """
        xp = self.xp

        def mean_over(values):
            if allreduce is None:
                return xp.mean(values, axis=axes, keepdims=True)
            return allreduce(xp.sum(values, axis=axes, keepdims=True)) / count

        mean = mean_over(x)
        xhat = x - mean
        var = mean_over(xhat * xhat)
        invstd = 1.0 / xp.sqrt(var + eps)
        xhat *= invstd
        return xhat, mean, var, invstd

    def normalize_backward(self, grad, xhat, scale, axes, allreduce=None, count=None):
        """Backward of ``normalize`` through ``xhat``, times ``scale``.

        With M the number of elements reduced over ``axes``:
        ``dx = scale * (grad - sum(grad)/M - xhat * sum(grad*xhat)/M)``. BatchNorm passes
        ``scale = weight*invstd`` (per channel) and the output gradient; LayerNorm passes
        ``scale = invstd`` and ``grad = dy*weight``. Returns ``(dx, sum(grad),
        sum(grad*xhat))``, the sums keeping the reduced axes with size 1 (BatchNorm's bias
        and weight gradients). With ``allreduce`` and ``count`` (SyncBatchNorm) the two
        sums in ``dx`` and M are over all ranks; the returned sums stay this rank's own
        (its parameter gradients, which DataParallel averages).
        """
        xp = self.xp
        if count is None:
            count = 1
            for axis in axes:
                count *= grad.shape[axis]
        sum_grad = xp.sum(grad, axis=axes, keepdims=True)
        sum_grad_xhat = xp.sum(grad * xhat, axis=axes, keepdims=True)
        total_grad, total_grad_xhat = sum_grad, sum_grad_xhat
        if allreduce is not None:
            both = allreduce(xp.stack([xp.reshape(sum_grad, (-1,)),
                                       xp.reshape(sum_grad_xhat, (-1,))]))
            total_grad = xp.reshape(both[0, ...], sum_grad.shape)
            total_grad_xhat = xp.reshape(both[1, ...], sum_grad.shape)
        dx = grad - total_grad / count
        dx -= xhat * (total_grad_xhat / count)
        dx *= scale
        return dx, sum_grad, sum_grad_xhat


def window_output_size(x_shape, kernel_size, stride, padding, dilation=(1, 1)) -> tuple:
    """(OH, OW) of the sliding windows over an (N, C, H, W) input (see the geometry note
    in LayerOps); a size below 1 means the padded input is smaller than the dilated kernel."""
    return tuple((size + lo + hi - d * (k - 1) - 1) // s + 1
                 for size, k, s, (lo, hi), d in zip(x_shape[2:], kernel_size, stride, padding,
                                                    dilation))


def window_offsets(kernel_size, stride, dilation, out_size):
    """Yield ``(i, j, rows, columns)`` for each kernel offset: the strided slices of the
    padded image that offset (i, j) reads across all OH x OW windows."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_size, stride, dilation, out_size
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            yield i, j, rows, slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)


def windows_overlap(kernel_size, stride, dilation) -> bool:
    """True when an input position may lie in two windows (stride shorter than the dilated
    kernel along either axis); conservative for dilated kernels."""
    return any(s < d * (k - 1) + 1 for k, s, d in zip(kernel_size, stride, dilation))


def windows_tile(x_shape, kernel_size, stride, padding, dilation) -> bool:
    """True when the windows tile the unpadded input exactly (stride == kernel, e.g. the
    common 2x2 pool on even sizes): then (N, C, H, W) reshapes to (N, C, OH, kh, OW, kw)."""
    return (tuple(kernel_size) == tuple(stride) and tuple(dilation) == (1, 1)
            and not any(lo or hi for lo, hi in padding)
            and x_shape[2] % kernel_size[0] == 0 and x_shape[3] % kernel_size[1] == 0)
