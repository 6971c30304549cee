"""Generic kernels of the recurrent layers: one direction of one layer of an Elman RNN, an
LSTM or a GRU over a whole sequence, forward and backward (back-propagation through time).

The input's part of every step's gates, ``x_t @ W_ih.T`` plus biases, is one GEMM over the
whole sequence, done by the layer (``nn/recurrent.py``) before these run; so are the weight
gradients after backward (one GEMM each over the stacked gate gradients). What is left here
is the recurrence itself: one ``h @ W_hh.T`` and the gate arithmetic per time step, which
cannot be batched over time. Shapes: sequence length L, batch N, hidden size H; ``gates_x``
(L, N, G*H) with PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z, n). ``reverse=True``
runs the steps from t = L-1 down to 0 (a bidirectional layer's second direction); outputs
stay at their time positions either way.
"""
from __future__ import annotations

from ..special import sigmoid
from .dispatch import kernel


def _steps(length: int, reverse: bool):
    """``(t, previous t or None)`` in processing order."""
    order = range(length - 1, -1, -1) if reverse else range(length)
    previous = None
    for t in order:
        yield t, previous
        previous = t


def _buffers(backend, gates_x, gates: int, w_hh) -> tuple:
    """``(H, w_hh.T, acts, states, more)``: a forward's outputs to fill step by step, the
    gates (L, N, G*H) and two (L, N, H) per-step states."""
    length, n, width = gates_x.shape
    size = width // gates
    states = [backend.empty((length, n, size), gates_x.dtype) for _ in range(2)]
    return (size, backend.xp.matrix_transpose(w_hh),
            backend.empty(tuple(gates_x.shape), gates_x.dtype), *states)


@kernel
def rnn_sequence(backend, gates_x, h0, w_hh, nonlinearity: str = "tanh", reverse: bool = False):
    """Elman RNN: ``h_t = act(gates_x[t] + h_{t-1} @ w_hh.T)``, act tanh or relu; ``gates_x``
    holds both biases. Returns ``(hs (L, N, H), h_n)``; backward needs only ``hs``."""
    xp = backend.xp
    w_t = xp.matrix_transpose(w_hh)
    hs = backend.empty(tuple(gates_x.shape), gates_x.dtype)
    h = h0
    for t, _ in _steps(gates_x.shape[0], reverse):
        pre = gates_x[t, ...] + xp.matmul(h, w_t)
        h = xp.tanh(pre) if nonlinearity == "tanh" else xp.maximum(pre, 0.0)
        hs[t, ...] = h
    return hs, h


@kernel
def rnn_sequence_backward(backend, grad_hs, grad_hn, hs, w_hh, nonlinearity: str = "tanh",
                          reverse: bool = False):
    """``(d_gates (L, N, H), dh0)`` from ``grad_hs`` (L, N, H), d loss / d h_t through the
    layer's output, and ``grad_hn`` (N, H) or None, through h_n."""
    xp = backend.xp
    d_gates = backend.empty(tuple(hs.shape), hs.dtype)
    dh = grad_hn
    for t, _ in reversed(list(_steps(hs.shape[0], reverse))):
        dh = grad_hs[t, ...] if dh is None else dh + grad_hs[t, ...]
        h = hs[t, ...]
        d_pre = dh * (1.0 - h * h) if nonlinearity == "tanh" else xp.where(h > 0, dh, 0.0)
        d_gates[t, ...] = d_pre
        dh = xp.matmul(d_pre, w_hh)
    return d_gates, dh


@kernel
def lstm_sequence(backend, gates_x, h0, c0, w_hh, reverse: bool = False):
    """LSTM, PyTorch's cell: ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of
    ``gates_x[t] + h_{t-1} @ w_hh.T`` (both biases in ``gates_x``), ``c_t = f * c_{t-1} +
    i * g``, ``h_t = o * tanh(c_t)``. Returns ``(hs, h_n, c_n, (acts, cs))``: the gates
    after their nonlinearities (L, N, 4H) and the cell states (L, N, H), for backward."""
    xp = backend.xp
    size, w_t, acts, hs, cs = _buffers(backend, gates_x, 4, w_hh)
    h, c = h0, c0
    for t, _ in _steps(gates_x.shape[0], reverse):
        pre = gates_x[t, ...] + xp.matmul(h, w_t)
        i, f = sigmoid(xp, pre[:, :size]), sigmoid(xp, pre[:, size:2 * size])
        g, o = xp.tanh(pre[:, 2 * size:3 * size]), sigmoid(xp, pre[:, 3 * size:])
        c = f * c + i * g
        h = o * xp.tanh(c)
        acts[t, ...] = xp.concat([i, f, g, o], axis=1)
        cs[t, ...], hs[t, ...] = c, h
    return hs, h, c, (acts, cs)


@kernel
def lstm_sequence_backward(backend, grad_hs, grad_hn, grad_cn, cache, c0, w_hh,
                           reverse: bool = False):
    """``(d_gates (L, N, 4H), dh0, dc0)``: the gradients of the gates before their
    nonlinearities, and of the initial state, from ``grad_hs`` (L, N, H) and ``grad_hn``,
    ``grad_cn`` (N, H) or None."""
    xp = backend.xp
    acts, cs = cache
    size = cs.shape[2]
    d_gates = backend.empty(tuple(acts.shape), acts.dtype)
    dh, dc = grad_hn, grad_cn
    for t, previous in reversed(list(_steps(cs.shape[0], reverse))):
        dh = grad_hs[t, ...] if dh is None else dh + grad_hs[t, ...]
        gates = acts[t, ...]
        i, f = gates[:, :size], gates[:, size:2 * size]
        g, o = gates[:, 2 * size:3 * size], gates[:, 3 * size:]
        tanh_c = xp.tanh(cs[t, ...])
        through_h = dh * o * (1.0 - tanh_c * tanh_c)
        dc = through_h if dc is None else dc + through_h
        c_prev = c0 if previous is None else cs[previous, ...]
        d_pre = xp.concat([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                           dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], axis=1)
        d_gates[t, ...] = d_pre
        dc = dc * f
        dh = xp.matmul(d_pre, w_hh)
    return d_gates, dh, dc


@kernel
def gru_sequence(backend, gates_x, h0, w_hh, b_hh=None, reverse: bool = False):
    """GRU, PyTorch's cell: with ``a = h_{t-1} @ w_hh.T + b_hh``, ``r, z = sigmoid(gates_x[t]
    + a)`` (their parts), ``n = tanh(gates_x[t] + r * a)`` (the n parts), ``h_t = (h_{t-1}
    - n) * z + n``; ``gates_x`` holds ``b_ih`` only. Returns ``(hs, h_n, (acts, a_n))``: r,
    z, n (L, N, 3H) and the n part of ``a`` (L, N, H), for backward."""
    xp = backend.xp
    size, w_t, acts, hs, a_n = _buffers(backend, gates_x, 3, w_hh)
    h = h0
    for t, _ in _steps(gates_x.shape[0], reverse):
        a = xp.matmul(h, w_t)
        if b_hh is not None:
            a = a + b_hh
        x_part = gates_x[t, ...]
        r = sigmoid(xp, x_part[:, :size] + a[:, :size])
        z = sigmoid(xp, x_part[:, size:2 * size] + a[:, size:2 * size])
        new = xp.tanh(x_part[:, 2 * size:] + r * a[:, 2 * size:])
        h = (h - new) * z + new
        acts[t, ...] = xp.concat([r, z, new], axis=1)
        a_n[t, ...], hs[t, ...] = a[:, 2 * size:], h
    return hs, h, (acts, a_n)


@kernel
def gru_sequence_backward(backend, grad_hs, grad_hn, cache, hs, h0, w_hh, reverse: bool = False):
    """``(d_x_gates, d_h_gates, dh0)``: the gradients of ``gates_x`` and of ``a`` (both
    (L, N, 3H); they differ in the n part, which ``a`` enters through ``r * a``) and of
    the initial state, from ``grad_hs`` (L, N, H) and ``grad_hn`` (N, H) or None."""
    xp = backend.xp
    acts, a_n = cache
    size = a_n.shape[2]
    d_x = backend.empty(tuple(acts.shape), acts.dtype)
    d_h = backend.empty(tuple(acts.shape), acts.dtype)
    dh = grad_hn
    for t, previous in reversed(list(_steps(hs.shape[0], reverse))):
        dh = grad_hs[t, ...] if dh is None else dh + grad_hs[t, ...]
        gates = acts[t, ...]
        r, z, new = gates[:, :size], gates[:, size:2 * size], gates[:, 2 * size:]
        h_prev = h0 if previous is None else hs[previous, ...]
        d_new = dh * (1.0 - z) * (1.0 - new * new)
        d_r = d_new * a_n[t, ...] * r * (1.0 - r)
        d_z = dh * (h_prev - new) * z * (1.0 - z)
        d_x[t, ...] = xp.concat([d_r, d_z, d_new], axis=1)
        d_h[t, ...] = d_a = xp.concat([d_r, d_z, d_new * r], axis=1)
        dh = dh * z + xp.matmul(d_a, w_hh)
    return d_x, d_h, dh
