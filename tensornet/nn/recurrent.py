"""Recurrent layers, as PyTorch's: RNN (tanh or relu), LSTM and GRU, stacked
(``num_layers``), bidirectional, ``batch_first``, with dropout between layers.

Per layer and direction: one GEMM puts every time step's input through ``W_ih`` at once,
the backend's sequence kernel (``functional/recurrent.py``) runs the recurrence, and
backward (back-propagation through time) returns the gates' gradients, from which the
weight gradients are one GEMM each over the whole sequence.

Torch7-style backward, as every layer here: ``output, h_n = rnn(x)`` (LSTM: ``output,
(h_n, c_n)``), then ``dx = rnn.backward(grad_output, grad_h_n=..., grad_c_n=...)`` with the
gradients of whichever outputs the loss used; ``grad_output=None`` when only ``h_n`` was
used (a sequence classifier reading the last state). The gradient with respect to the
initial state ``hx`` is left in ``rnn.hx_grad`` (LSTM: ``(dh0, dc0)``).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from . import functional as F
from . import init
from .functional import recurrent as R
from .checks import check_flag
from .dropout import scaled_mask
from .linear import _positive_int
from .module import Module

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class _RNNBase(Module):
    """What the three share: PyTorch's parameters (``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``_reverse`` for the second direction; shapes
    (G*H, input of layer k) and (G*H, H); all U(-1/sqrt(H), 1/sqrt(H))), the input and
    state checks, the layer loop, dropout between layers and backward."""

    _cache_attrs = ("_cache",)

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _positive_int(name, "num_layers", num_layers)
        bias, batch_first, bidirectional = (check_flag(name, flag, value) for flag, value in (
            ("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)))
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
                or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} applies between stacked layers only, so "
                          f"with num_layers=1 it does nothing (as in PyTorch)", UserWarning,
                          stacklevel=3)
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.bidirectional, self.dropout = bool(bidirectional), float(dropout)
        self.hx_grad = None
        gates = _GATES[mode] * self.hidden_size
        for layer in range(self.num_layers):
            width = self.input_size if layer == 0 else self.hidden_size * self._directions
            for suffix in self._suffixes(layer):
                setattr(self, f"weight_ih{suffix}", self.new_parameter(np.zeros((gates, width))))
                setattr(self, f"weight_hh{suffix}",
                        self.new_parameter(np.zeros((gates, self.hidden_size))))
                if self.bias:
                    setattr(self, f"bias_ih{suffix}", self.new_parameter(np.zeros(gates)))
                    setattr(self, f"bias_hh{suffix}", self.new_parameter(np.zeros(gates)))
        self.reset_parameters()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer: int) -> list:
        return [f"_l{layer}", f"_l{layer}_reverse"][:self._directions]

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            init.uniform_(param, -bound, bound)

    def _weights(self, layer: int, direction: int) -> tuple:
        suffix = self._suffixes(layer)[direction]
        state = self._parameters
        return (state[f"weight_ih{suffix}"], state[f"weight_hh{suffix}"],
                state.get(f"bias_ih{suffix}"), state.get(f"bias_hh{suffix}"))

    # ------------------------------------------------------------------ checks
    def _layout(self) -> str:
        """The input layout the errors name."""
        return "(N, L, input_size)" if self.batch_first else "(L, N, input_size)"

    def _accept(self, x):
        """Check ``x``; returns it as (L, N, input_size)."""
        expected = self._layout().replace("input_size", str(self.input_size))
        if len(getattr(x, "shape", ())) == 3 and 0 in tuple(x.shape[:2]):
            # before _check_input, which would call an empty time axis an empty batch
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: "
                             f"expected at least one time step and one sequence")
        self._check_input(x, ndim=3, features=self.input_size, expected=expected
                          + " (an unbatched sequence: add a batch axis of 1)")
        return self.backend.xp.permute_dims(x, (1, 0, 2)) if self.batch_first else x

    def _state(self, value, name: str, n: int):
        """An initial state (num_layers * directions, N, H), or zeros for None."""
        shape = (self.num_layers * self._directions, n, self.hidden_size)
        if value is None:
            return self.backend.zeros(shape, self.dtype)
        if hasattr(value, "shape") and tuple(value.shape) != shape:
            raise ValueError(f"{self._describe()} got {name} of shape {tuple(value.shape)}; "
                             f"expected {shape} (num_layers * directions, N, hidden_size)")
        self._check_input(value, name=name)  # an array, its device and dtype
        return value

    def _check_grad_output(self, grad_output, spec) -> None:
        if grad_output is not None:  # None: only the final state's gradient is given
            super()._check_grad_output(grad_output, spec)

    def _grad_state(self, value, name: str, like):
        if value is None:
            return None
        if hasattr(value, "shape") and tuple(value.shape) != tuple(like.shape):
            raise ValueError(f"{self._describe()}.backward got {name} of shape "
                             f"{tuple(value.shape)}; expected {tuple(like.shape)}, the shape "
                             f"of the forward's {name[5:]}")
        self._check_input(value, name=name, backward=True)
        return value

    # ------------------------------------------------------------------ forward
    def _run(self, x, h0, c0=None):
        """``(output, h_n, c_n)`` (c_n None but for an LSTM); caches what backward needs."""
        xp = self.backend.xp
        seq = self._accept(x)
        length, n = seq.shape[:2]
        h0 = self._state(h0, "h0", n)
        c0 = self._state(c0, "c0", n) if self.mode == "LSTM" else None
        layer_input, layers, h_n, c_n = seq, [], [], []
        for layer in range(self.num_layers):
            directions, outputs = [], []
            rows = xp.reshape(layer_input, (length * n, layer_input.shape[2]))
            for direction in range(self._directions):
                k = layer * self._directions + direction
                ran = self._direction_forward(rows, length, n, layer, direction, h0[k, ...],
                                              None if c0 is None else c0[k, ...])
                outputs.append(ran["hs"])
                h_n.append(ran["h_n"])
                if c0 is not None:
                    c_n.append(ran["c_n"])
                directions.append(ran)
            out = outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=2)
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = scaled_mask(self.backend, tuple(out.shape), self.dropout, out.dtype)
                out = out * mask
            layers.append((rows, directions, mask))
            layer_input = out
        self._cache = (layers, h0, c0, tuple(x.shape))
        output = xp.permute_dims(layer_input, (1, 0, 2)) if self.batch_first else layer_input
        return output, xp.stack(h_n), (xp.stack(c_n) if c0 is not None else None)

    def _direction_forward(self, rows, length, n, layer, direction, h0, c0) -> dict:
        xp = self.backend.xp
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        gates_x = F.matmul(rows, xp.matrix_transpose(w_ih.data))
        if b_ih is not None:
            gates_x = gates_x + (b_ih.data if self.mode == "GRU" else b_ih.data + b_hh.data)
        gates_x = xp.reshape(gates_x, (length, n, gates_x.shape[1]))
        reverse = direction == 1
        if self.mode == "LSTM":
            hs, h_n, c_n, cache = R.lstm_sequence(gates_x, h0, c0, w_hh.data, reverse)
            return {"hs": hs, "h_n": h_n, "c_n": c_n, "cache": cache, "h0": h0, "c0": c0}
        if self.mode == "GRU":
            hs, h_n, cache = R.gru_sequence(gates_x, h0, w_hh.data,
                                            None if b_hh is None else b_hh.data, reverse)
            return {"hs": hs, "h_n": h_n, "cache": cache, "h0": h0}
        hs, h_n = R.rnn_sequence(gates_x, h0, w_hh.data, self._nonlinearity, reverse)
        return {"hs": hs, "h_n": h_n, "h0": h0}

    # ------------------------------------------------------------------ backward
    def _backprop(self, grad_output, grad_h_n, grad_c_n, input_grad: bool):
        """The subclasses' backward: the layers in reverse, each direction's BPTT and
        weight gradients; leaves d loss / d (initial state) in ``hx_grad``."""
        layers, h0, c0, x_shape = self._require_cache(self._cache)
        if grad_output is None and grad_h_n is None and grad_c_n is None:
            wanted = "grad_output, grad_h_n or grad_c_n" if c0 is not None else \
                "grad_output or grad_h_n"
            raise ValueError(f"{self._describe()}.backward got no gradient: give {wanted} "
                             f"(the gradients of the outputs the loss used)")
        xp = self.backend.xp
        length, n = (x_shape[1], x_shape[0]) if self.batch_first else x_shape[:2]
        grad_h_n = self._grad_state(grad_h_n, "grad_h_n", h0)
        grad_c_n = self._grad_state(grad_c_n, "grad_c_n", h0) if c0 is not None else None
        size, dirs = self.hidden_size, self._directions
        if grad_output is None:
            d_out = self.backend.zeros((length, n, size * dirs), self.dtype)
        else:
            d_out = xp.permute_dims(grad_output, (1, 0, 2)) if self.batch_first else grad_output
        dh0, dc0 = [None] * (self.num_layers * dirs), [None] * (self.num_layers * dirs)
        for layer in reversed(range(self.num_layers)):
            rows, directions, mask = layers[layer]
            if mask is not None:
                d_out = d_out * mask
            d_in = None
            for direction, ran in enumerate(directions):
                k = layer * dirs + direction
                d_rows, dh0[k], dc0[k] = self._direction_backward(
                    ran, rows, d_out[:, :, direction * size:(direction + 1) * size],
                    None if grad_h_n is None else grad_h_n[k, ...],
                    None if grad_c_n is None else grad_c_n[k, ...], layer, direction,
                    input_grad or layer > 0)
                if d_rows is not None:
                    d_in = d_rows if d_in is None else d_in + d_rows
            d_out = None if d_in is None else xp.reshape(d_in, (length, n, d_in.shape[1]))
        self.__dict__["hx_grad"] = (xp.stack(dh0), xp.stack(dc0)) if c0 is not None \
            else xp.stack(dh0)
        if d_out is None:
            return None
        return xp.permute_dims(d_out, (1, 0, 2)) if self.batch_first else d_out

    def _direction_backward(self, ran, rows, grad_hs, grad_hn, grad_cn, layer, direction,
                            want_input: bool):
        """``(d loss / d rows or None, dh0, dc0)``; adds this direction's weight gradients."""
        xp = self.backend.xp
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        reverse, dc0 = direction == 1, None
        if self.mode == "LSTM":
            d_x, dh0, dc0 = R.lstm_sequence_backward(grad_hs, grad_hn, grad_cn, ran["cache"],
                                                     ran["c0"], w_hh.data, reverse)
            d_h = d_x
        elif self.mode == "GRU":
            d_x, d_h, dh0 = R.gru_sequence_backward(grad_hs, grad_hn, ran["cache"], ran["hs"],
                                                    ran["h0"], w_hh.data, reverse)
        else:
            d_x, dh0 = R.rnn_sequence_backward(grad_hs, grad_hn, ran["hs"], w_hh.data,
                                               self._nonlinearity, reverse)
            d_h = d_x
        hs, h0 = ran["hs"], ran["h0"]
        # each step's previous state, at that step's position: h_{t-1} (reverse: h_{t+1})
        first = xp.reshape(h0, (1,) + tuple(h0.shape))
        before = xp.concat([hs[1:, ...], first]) if reverse else xp.concat([first, hs[:-1, ...]])
        width = d_x.shape[2]
        flat_x, flat_h = xp.reshape(d_x, (-1, width)), xp.reshape(d_h, (-1, width))
        if w_ih.requires_grad:
            w_ih.accumulate_grad(F.matmul(xp.matrix_transpose(flat_x), rows,
                                          out=w_ih.grad_buffer()))
        if w_hh.requires_grad:
            w_hh.accumulate_grad(F.matmul(xp.matrix_transpose(flat_h),
                                          xp.reshape(before, (-1, self.hidden_size)),
                                          out=w_hh.grad_buffer()))
        if b_ih is not None:
            if b_ih.requires_grad:
                b_ih.accumulate_grad(F.reduce_sum(flat_x, axis=0, out=b_ih.grad_buffer()))
            if b_hh.requires_grad:
                b_hh.accumulate_grad(F.reduce_sum(flat_h, axis=0, out=b_hh.grad_buffer()))
        d_rows = F.matmul(flat_x, w_ih.data) if want_input else None
        return d_rows, dh0, dc0

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.input_size} -> {self.hidden_size})"


class RNN(_RNNBase):
    """Elman RNN, as ``torch.nn.RNN(input_size, hidden_size, num_layers=1,
    nonlinearity="tanh", bias=True, batch_first=False, dropout=0.0, bidirectional=False)``:
    ``h_t = act(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh)``, act tanh or relu.

    ``forward(x, hx=None)``: x (L, N, input_size) (``batch_first``: (N, L, input_size)),
    hx the initial state h0 (num_layers * directions, N, H), zeros by default ->
    ``(output, h_n)``: output
    (L, N, directions * H) (``batch_first``: (N, L, ...)), h_n like h0.
    ``backward(grad_output, grad_h_n=None)`` -> d loss / d x; ``hx_grad`` then holds
    d loss / d h0. Forward caches every step's state."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)
        self._nonlinearity = nonlinearity

    def forward(self, x, hx=None):
        output, h_n, _ = self._run(x, hx)
        return output, h_n

    def backward(self, grad_output=None, grad_h_n=None, input_grad: bool = True):
        return self._backprop(grad_output, grad_h_n, None, input_grad)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", nonlinearity='relu'" if self._nonlinearity == "relu" else "")


class LSTM(_RNNBase):
    """LSTM, as ``torch.nn.LSTM(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)`` (no ``proj_size``): gates i, f,
    g, o in PyTorch's order and layout (``weight_ih_l0`` is (4H, input_size)).

    ``forward(x, hx=None)``: hx ``(h0, c0)``, each (num_layers * directions, N, H), zeros by
    default -> ``(output, (h_n, c_n))``. ``backward(grad_output, grad_h_n=None,
    grad_c_n=None)`` -> d loss / d x; ``hx_grad`` then holds ``(dh0, dc0)``. Forward caches
    every step's gates and cell state."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, *, device=None, dtype=None):
        if proj_size != 0:
            raise ValueError(f"LSTM: proj_size={proj_size!r} is not supported (only 0, no "
                             f"projection)")
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)

    def forward(self, x, hx=None):
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"{self._describe()}: hx must be a pair (h0, c0), got "
                            f"{type(hx).__name__}")
        h0, c0 = (None, None) if hx is None else hx
        output, h_n, c_n = self._run(x, h0, c0)
        return output, (h_n, c_n)

    def backward(self, grad_output=None, grad_h_n=None, grad_c_n=None, input_grad: bool = True):
        return self._backprop(grad_output, grad_h_n, grad_c_n, input_grad)


class GRU(_RNNBase):
    """GRU, as ``torch.nn.GRU(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``: gates r, z, n in PyTorch's order,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.

    ``forward(x, hx=None)`` (hx: h0) -> ``(output, h_n)``; ``backward(grad_output,
    grad_h_n=None)`` -> d loss / d x; ``hx_grad`` then holds d loss / d h0. Forward caches
    every step's gates."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)

    def forward(self, x, hx=None):
        output, h_n, _ = self._run(x, hx)
        return output, h_n

    def backward(self, grad_output=None, grad_h_n=None, input_grad: bool = True):
        return self._backprop(grad_output, grad_h_n, None, input_grad)
