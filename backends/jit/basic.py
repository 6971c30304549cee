"""numba kernels of ReLU (forward and backward), a Linear's bias with the ReLU after it
(forward and backward) and softmax cross-entropy (forward and backward), each one pass.

ReLU works on 1-D views listing both arrays in one memory order (``layout.flat_in_order_of``),
so any layout streams. Softmax cross-entropy: one row per task. The loss checks that labels
are in range before it calls these, unless its checks are off: then a row whose label is
outside [0, C) (and not the ``ignore_index`` asked for, whose rows get loss 0 and a 0
gradient row) gets a NaN loss and a NaN gradient row (as the CUDA kernel), never a read or
write outside the row. A row holding NaN or +inf, or only -inf, gets NaN log-probabilities,
as the NumPy override.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import run_tasks

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
# Elementwise loops index with unsigned integers: numba checks a signed index for Python's
# negative wrap-around, and a loop starting at a variable ``lo`` then does not vectorise
# (a ReLU over 32K float32: 28 us instead of 4).
_U = np.uint64


@njit(inline="always", **_OPTIONS)
def _relu_at(x, out, i):
    v = x[i]
    out[i] = v if not v < 0 else 0   # max(v, 0), NaN kept, as np.maximum


@njit(**_OPTIONS)
def _relu_tasks(x, out, lo, hi):
    for i in range(_U(lo), _U(hi)):
        _relu_at(x, out, i)


@njit(inline="always", **_OPTIONS)
def _relu_backward_at(grad, y, out, i):
    out[i] = grad[i] if y[i] > 0 else 0     # where(y > 0, grad, 0)


@njit(**_OPTIONS)
def _relu_backward_tasks(grad, y, out, lo, hi):
    for i in range(_U(lo), _U(hi)):
        _relu_backward_at(grad, y, out, i)


def relu(x_flat, out_flat):
    run_tasks(_relu_tasks, x_flat.size, x_flat.size, x_flat, out_flat)


def relu_backward(grad_flat, y_flat, out_flat):
    run_tasks(_relu_backward_tasks, y_flat.size, y_flat.size, grad_flat, y_flat, out_flat)


# ---------------------------------------------------------------------- Linear + ReLU
# What a Linear followed by a ReLU does around its GEMMs (``tensornet/nn/fusion.py``): the
# bias add and the ReLU in one pass over the GEMM's output, in place; backward, ReLU's mask
# and the bias gradient (the column sums of the masked gradient) in one pass. The sums run
# down each column in row order, as NumPy's ``sum(axis=0)``, so the results are bitwise
# those of the separate steps; a split over the threads cuts the columns, never a sum.
@njit(**_OPTIONS)
def _bias_relu_tasks(y, bias, lo, hi):
    columns = y.shape[1]
    for i in range(_U(lo), _U(hi)):
        for j in range(_U(0), _U(columns)):
            v = y[i, j] + bias[j]
            y[i, j] = v if not v < 0 else 0   # max(v, 0), NaN kept, as np.maximum


@njit(**_OPTIONS)
def _relu_backward_sum_tasks(grad, y, out, sums, lo, hi):
    for j in range(_U(lo), _U(hi)):
        out[0, j] = grad[0, j] if y[0, j] > 0 else 0
        sums[j] = 0   # NumPy's sum starts from 0 too: a column of -0 sums to +0
        sums[j] += out[0, j]
    for i in range(_U(1), _U(y.shape[0])):
        for j in range(_U(lo), _U(hi)):
            out[i, j] = grad[i, j] if y[i, j] > 0 else 0
            sums[j] += out[i, j]


def bias_relu(y, bias):
    """``y = max(y + bias, 0)`` in place: y (N, C) C-contiguous, bias (C,)."""
    run_tasks(_bias_relu_tasks, y.shape[0], y.size, y, bias)
    return y


def relu_backward_sum(grad, y, sums):
    """``(where(y > 0, grad, 0), its column sums written into sums (C,))``; grad and y
    (N >= 1, C) C-contiguous."""
    out = np.empty_like(y)  # (a NumPy subclass stays one, as relu_backward's output)
    run_tasks(_relu_backward_sum_tasks, y.shape[1], y.size, grad, y, out, sums)
    return out, sums


# ---------------------------------------------------------------------- softmax cross-entropy
# ``ignoring``/``ignore``: with ignoring set, a row whose label is ``ignore`` gets loss 0
# and a 0 gradient row (its log-probabilities are still written: the backward reads them).
# The exponentials run through NumPy's vectorised exp between two compiled passes: numba's
# is a libm call per element (1280 float32: 5.5 us against NumPy's 1.1 on the Zen 4 VM),
# which made it most of the kernel's time at the benchmark MLP's (128, 10).
@njit(**_OPTIONS)
def _shift_rows(logits, shifted, lo, hi):
    """``shifted = logits - rowmax(logits)`` (a NaN in the row makes the max NaN, as np.max)."""
    classes = logits.shape[1]
    for row in range(lo, hi):
        x = logits[row]
        top = x[0]
        for k in range(1, classes):
            top = max(top, x[k]) if x[k] == x[k] else x[k]
        out = shifted[row]
        for k in range(classes):
            out[k] = x[k] - top


@njit(**_OPTIONS)
def _cross_entropy_finish(exps, labels, smoothing, ignoring, ignore, losses, log_probs, lo, hi):
    """From ``log_probs`` holding the shifted logits and ``exps`` their exponentials: each
    row's log-sum-exp, the log-probabilities written over the shifted logits, the loss."""
    classes = log_probs.shape[1]
    for row in range(lo, hi):
        lp = log_probs[row]
        e = exps[row - lo]
        total = 0.0
        for k in range(classes):
            total += e[k]
        losses[row] = np.log(total)       # stored (and read back) in the logits' precision
        shift = losses[row]
        summed = 0.0
        for k in range(classes):
            lp[k] = lp[k] - shift
            summed += lp[k]
        label = labels[row]
        if ignoring and label == ignore:
            losses[row] = 0.0
            continue
        if label < 0 or label >= classes:
            losses[row] = np.nan
            continue
        picked = lp[label]
        if smoothing == 0.0:
            losses[row] = -picked
        else:  # target (1 - eps) * onehot + eps / C
            losses[row] = -(1.0 - smoothing) * picked - smoothing / classes * summed


def _cross_entropy_tasks(logits, labels, smoothing, ignoring, ignore, losses, log_probs, lo,
                         hi):
    _shift_rows(logits, log_probs, lo, hi)
    exps = np.exp(log_probs[lo:hi])
    _cross_entropy_finish(exps, labels, smoothing, ignoring, ignore, losses, log_probs, lo, hi)


@njit(**_OPTIONS)
def _count_other(labels, value):
    """How many labels differ from ``value`` (the mean's divisor)."""
    count = 0
    for i in range(labels.shape[0]):
        count += labels[i] != value
    return count


@njit(**_OPTIONS)
def _cross_entropy_backward_finish(labels, scale, smoothing, ignoring, ignore, grad, lo, hi):
    """``grad`` holding softmax (the exponentials of the log-probabilities): minus the
    target, times ``scale``; 0 rows for ``ignore``, NaN rows for labels outside [0, C)."""
    classes = grad.shape[1]
    for row in range(lo, hi):
        g = grad[row]
        label = labels[row]
        if ignoring and label == ignore:
            for k in range(classes):
                g[k] = 0.0
            continue
        if label < 0 or label >= classes:
            for k in range(classes):
                g[k] = np.nan
            continue
        if smoothing != 0.0:
            for k in range(classes):
                g[k] -= smoothing / classes
            g[label] -= 1.0 - smoothing
        else:
            g[label] -= 1.0
        for k in range(classes):
            g[k] *= scale


def _cross_entropy_backward_tasks(log_probs, labels, scale, smoothing, ignoring, ignore, grad,
                                  lo, hi):
    np.exp(log_probs[lo:hi], out=grad[lo:hi])
    _cross_entropy_backward_finish(labels, scale, smoothing, ignoring, ignore, grad, lo, hi)


def softmax_cross_entropy(logits, labels, label_smoothing, ignore_index=None):
    """``(losses, log_probs)``, and with ``ignore_index`` given the number of rows whose
    label is not it (a Python int)."""
    losses = np.empty(logits.shape[0], dtype=logits.dtype)
    log_probs = np.empty(logits.shape, dtype=logits.dtype)
    ignoring = ignore_index is not None
    ignore = ignore_index if ignoring else 0  # a Python int: numba's quickest argument
    run_tasks(_cross_entropy_tasks, logits.shape[0], logits.size, logits, labels,
              float(label_smoothing), ignoring, ignore, losses, log_probs)
    if not ignoring:
        return losses, log_probs
    return losses, log_probs, _count_other(labels, ignore)


def softmax_cross_entropy_backward(log_probs, labels, scale, label_smoothing, ignore_index=None):
    grad = np.empty(log_probs.shape, dtype=log_probs.dtype)
    ignoring = ignore_index is not None
    run_tasks(_cross_entropy_backward_tasks, log_probs.shape[0], log_probs.size, log_probs,
              labels, float(scale), float(label_smoothing), ignoring,
              ignore_index if ignoring else 0, grad)
    return grad
