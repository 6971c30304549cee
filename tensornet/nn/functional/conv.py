"""Generic kernels of the convolution: forward and backward of Conv2d as im2col + GEMM.

``conv2d`` returns the output and an opaque cache for ``conv2d_backward`` (as
``max_pool2d``'s argmax): here the im2col columns, so the backward reuses them. A device
may keep something else (the NumPy backend keeps the input and rebuilds the columns a
block of images at a time, in cache, instead of holding C_in*kh*kw x N*OH*OW values
between forward and backward); every version accepts the other's cache.
"""
from __future__ import annotations

from tensornet.backends.geometry import window_output_size

from .basic import matmul
from .dispatch import kernel
from .windows import col2im, im2col


def grouped_shape(groups: int, rows: int, columns: int) -> tuple:
    """GEMM operand shape: (rows, columns) for one group, else (groups, rows/groups,
    columns), so that one (batched) matmul covers all groups."""
    if groups == 1:
        return rows, columns
    return groups, rows // groups, columns


@kernel
def conv2d(backend, x, weight, bias, stride, padding, dilation, groups):
    """x (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw), bias (C_out,) or None ->
    ``(y, cache)``. y (N, C_out, OH, OW) is a transposed view of (C_out, N, OH, OW) memory
    (the GEMM's layout; BatchNorm's per-channel sums after it read that contiguously).
    ``cache`` goes to ``conv2d_backward``; geometry as ``im2col``."""
    xp = backend.xp
    n, c_out, kernel_size = x.shape[0], weight.shape[0], tuple(weight.shape[2:])
    oh, ow = window_output_size(x.shape, kernel_size, stride, padding, dilation)
    cols = im2col(x, kernel_size, stride, padding, dilation)
    rows = x.shape[1] * kernel_size[0] * kernel_size[1]
    cols = xp.reshape(cols, grouped_shape(groups, rows, n * oh * ow))
    w = xp.reshape(weight, grouped_shape(groups, c_out, -1))
    y = xp.reshape(matmul(w, cols), (c_out, n * oh * ow))
    if bias is not None:
        y += xp.reshape(bias, (c_out, 1))
    y = xp.permute_dims(xp.reshape(y, (c_out, n, oh, ow)), (1, 0, 2, 3))
    return y, ("cols", cols, tuple(x.shape))


@kernel
def conv2d_backward(backend, grad, cache, weight, stride, padding, dilation, groups,
                    weight_grad=True, weight_grad_out=None, input_grad=True):
    """grad (N, C_out, OH, OW) and ``conv2d``'s cache -> ``(dx, dweight)``: dx (N, C_in,
    H, W) (None when ``input_grad`` is False) and dweight of weight's shape (None when
    ``weight_grad`` is False), written into ``weight_grad_out`` when given (an optimizer's
    flat gradient view)."""
    xp = backend.xp
    kind, saved, x_shape = cache
    n, _, oh, ow = grad.shape
    c_out, kernel_size = weight.shape[0], tuple(weight.shape[2:])
    rows = x_shape[1] * kernel_size[0] * kernel_size[1]
    if kind == "input":  # another device's cache: the columns again
        saved = xp.reshape(im2col(saved, kernel_size, stride, padding, dilation),
                           grouped_shape(groups, rows, n * oh * ow))
    g = xp.reshape(xp.permute_dims(grad, (1, 0, 2, 3)),
                   grouped_shape(groups, c_out, n * oh * ow))
    w = xp.reshape(weight, grouped_shape(groups, c_out, -1))
    dweight = None
    if weight_grad:
        out = None if weight_grad_out is None else xp.reshape(weight_grad_out, w.shape)
        dweight = xp.reshape(matmul(g, xp.matrix_transpose(saved), out=out), weight.shape)
        if weight_grad_out is not None:
            dweight = weight_grad_out
    if not input_grad:
        return None, dweight
    dcols = matmul(xp.matrix_transpose(w), g)
    return col2im(dcols, x_shape, kernel_size, stride, padding, dilation), dweight
