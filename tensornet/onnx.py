"""Export tensornet models to ONNX (``pip install 'tensornet[export]'``: onnx; onnxruntime
runs the file).

    tn.onnx.export(model, example_input, "model.onnx")

Sequential models (nested ones too) of: Linear, DropConnect (its eval weight), Conv1d,
Conv2d, ConvTranspose1d/2d, MaxPool1d/2d, AvgPool1d/2d, GlobalAvgPool2d,
AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d, Upsample, BatchNorm1d/2d (eval mode: running
statistics), LayerNorm, GroupNorm, InstanceNorm1d/2d, Embedding, Flatten, Unflatten,
PixelShuffle, PixelUnshuffle, the padding layers (Zero, Constant, Reflection, Replication;
1d/2d), Identity, Dropout, Dropout1d, Dropout2d and AlphaDropout (identity, as in eval),
Residual, and the activations ReLU, LeakyReLU, ELU, Tanh, Sigmoid, SoftPlus, Softmax,
LogSoftmax, GELU, SiLU, Hardtanh, PReLU, ReLU6, Hardsigmoid, Hardswish, Mish, CELU, SELU,
Softsign, LogSigmoid, Softmin, GLU, Threshold, Hardshrink, Softshrink, Tanhshrink.
MaxUnpool2d and the max pools with return_indices=True are refused by name (two inputs, two
outputs).
The graph computes what the model computes in eval mode, with the batch axis dynamic, in the
model's dtype (float32 or float64; onnxruntime's CPU provider has no float64 Conv,
ConvTranspose, AveragePool, GlobalAveragePool, Elu, Softplus, Erf, HardSigmoid, HardSwish,
Selu, Softsign or InstanceNormalization, so it refuses float64 files with those layers, and
with GroupNorm, InstanceNorm, Mish or LogSigmoid, which use them). A model without
parameters exports in its input's dtype.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tensornet import nn
from tensornet.io.atomic import atomic_write
from tensornet.backends import asnumpy, dtype_name, get_backend
from tensornet.backends.geometry import adaptive_bounds
from tensornet.summary import run_with_hooks

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization; Clip, Gather, pads and dilations as used here


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise RuntimeError("ONNX export needs the onnx package: pip install 'tensornet[export]' "
                           "(or pip install onnx)") from exc
    return onnx


def newest_opset() -> int:
    """The newest opset the installed onnx package defines."""
    return int(_onnx().defs.onnx_opset_version())


class _Graph:
    """Nodes and initializers being built; names are made unique by a counter."""

    def __init__(self, onnx, dtype: str):
        self.onnx, self.helper = onnx, onnx.helper
        self.dtype = dtype
        self.nodes, self.initializers = [], []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, value, hint: str, dtype: str | None = None) -> str:
        name = self.name(hint)
        array = np.asarray(asnumpy(value) if hasattr(value, "__array_namespace__") else value)
        array = array.astype(dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs, hint: str | None = None, **attributes) -> str:
        out = self.name(hint or op.lower())
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out,
                                                **attributes))
        return out


def _window_attributes(kernel, stride, pads, dilation=None) -> dict:
    """ONNX's pads list begins with every axis' start, then every axis' end."""
    attributes = {"kernel_shape": list(kernel), "strides": list(stride),
                  "pads": [p[0] for p in pads] + [p[1] for p in pads]}
    if dilation is not None:
        attributes["dilations"] = list(dilation)
    return attributes


def _conv(g, m, x, shapes):
    if isinstance(m, nn.Conv1d):
        kernel, stride, dilation = m.kernel_size[1:], m.stride[1:], m.dilation[1:]
        pads = m._pads[1:]
    else:
        kernel, stride, dilation, pads = m.kernel_size, m.stride, m.dilation, m._pads
    inputs = [x, g.constant(m.weight.data, "weight")]
    if m.bias is not None:
        inputs.append(g.constant(m.bias.data, "bias"))
    return g.node("Conv", inputs, group=m.groups, **_window_attributes(kernel, stride, pads,
                                                                      dilation))


def _conv_transpose(g, m, x, shapes):
    """The layer's own geometry: output_padding as a smaller end padding, and the rows past
    the padding as zeros (onnxruntime refuses an output_padding >= stride, which PyTorch
    allows below the dilation); the bias comes after those zeros, as in the layer."""
    pads, extra, core = m._geometry(m.output_size(*shapes.of(m)[0][2:]))
    if 0 in core:  # onnxruntime refuses a ConvTranspose with an empty output
        raise ValueError(f"ONNX export: {m._describe()} cannot be exported at this input "
                         f"size: its padding crops every window, so its output is the bias "
                         f"alone")
    weight = asnumpy(m.weight.data).reshape(m.in_channels, -1, *m.kernel_size)  # 1-D: 4-D
    y = g.node("ConvTranspose", [x, g.constant(weight, "weight")], group=m.groups,
               **_window_attributes(m.kernel_size, m.stride, pads, m.dilation))
    if extra != (0, 0):
        y = g.node("Pad", [y, g.constant(np.array([0, 0, 0, 0, 0, 0, *extra]), "pads",
                                         "int64")])
    if m.bias is None:
        return y
    return g.node("Add", [y, g.constant(asnumpy(m.bias.data).reshape(-1, 1, 1), "bias")])


def _linear(g, m, x, shapes):
    weight = m.weight.data if not isinstance(m, nn.DropConnect) else \
        (1.0 - m.p) * asnumpy(m.weight.data)
    if len(shapes.of(m)[0]) != 2:  # (*, in): Gemm takes matrices only
        y = g.node("MatMul", [x, g.constant(asnumpy(weight).T, "weight")])
        return y if m.bias is None else g.node("Add", [y, g.constant(m.bias.data, "bias")])
    inputs = [x, g.constant(weight, "weight")]
    if m.bias is not None:
        inputs.append(g.constant(m.bias.data, "bias"))
    return g.node("Gemm", inputs, transB=1)


def _batch_norm(g, m, x, shapes):
    if not m.track_running_stats:
        raise ValueError(f"ONNX export: {m._describe()} has no running statistics "
                         f"(track_running_stats=False), so eval mode uses batch statistics, "
                         f"which ONNX's BatchNormalization cannot express")
    c = m.num_features
    scale = m.weight.data if m.affine else np.ones(c)
    shift = m.bias.data if m.affine else np.zeros(c)
    return g.node("BatchNormalization",
                  [x, g.constant(scale, "scale"), g.constant(shift, "shift"),
                   g.constant(m.running_mean, "running_mean"),
                   g.constant(m.running_var, "running_var")], epsilon=m.eps)


class _HeightOne:
    """``shapes`` as a 2-D pool's converter sees a 1-D pool: (N, C, L) as (N, C, 1, L)."""

    def __init__(self, shapes):
        self._shapes = shapes

    def of(self, module) -> tuple:
        return tuple(tuple(s[:2]) + (1,) + tuple(s[2:]) for s in self._shapes.of(module))


def _as_1d(convert):
    """A 1-D pool's converter: its 2-D pool's ``convert`` between an Unsqueeze and a
    Squeeze of a height axis."""
    def convert_1d(g, m, x, shapes):
        axis = g.constant(np.array([2]), "height", "int64")
        y = convert(g, m, g.node("Unsqueeze", [x, axis]), _HeightOne(shapes))
        return g.node("Squeeze", [y, axis])
    return convert_1d


def _group_norm(g, m, x, shapes):
    """(N, C, *S) as (N, G, C/G * prod(S)), InstanceNormalization over its last axis (unit
    scale, zero shift), back to (N, C, *S), then the per-channel weight and bias."""
    in_shape = tuple(shapes.of(m)[0])
    grouped = g.node("Reshape", [x, g.constant(np.array([0, m.num_groups, -1]), "groups",
                                               "int64")])
    y = g.node("InstanceNormalization", [grouped, g.constant(np.ones(m.num_groups), "ones"),
                                         g.constant(np.zeros(m.num_groups), "zeros")],
               epsilon=m.eps)
    y = g.node("Reshape", [y, g.constant(np.array((0,) + in_shape[1:]), "shape", "int64")])
    if not m.affine:
        return y
    channel = (-1,) + (1,) * (len(in_shape) - 2)
    y = g.node("Mul", [y, g.constant(asnumpy(m.weight.data).reshape(channel), "weight")])
    return g.node("Add", [y, g.constant(asnumpy(m.bias.data).reshape(channel), "bias")])


def _layer_norm(g, m, x, shapes):
    shape = m.normalized_shape
    scale = m.weight.data if m.weight is not None else np.ones(shape)
    inputs = [x, g.constant(scale, "scale")]
    if m.bias is not None:
        inputs.append(g.constant(m.bias.data, "bias"))
    return g.node("LayerNormalization", inputs, axis=-len(shape), epsilon=m.eps)


def _separable(g, m, x, shapes):
    """AdaptiveAvgPool2d and Upsample: the layer's own per-axis matrices as MatMuls, the
    last axis ``x @ A.T``, the one before ``A @ x`` (an image: ``A_h @ x @ A_w.T``), a
    volume's depth axis swapped with the height axis around its ``A @ x``."""
    spatial = tuple(shapes.of(m)[0][2:])
    rank = 2 + len(spatial)
    matrices = [m._axis_matrix(a, n, len(spatial)) for a, n in enumerate(spatial)]
    for position, matrix in enumerate(matrices, start=2):
        if matrix is None:
            continue
        if position == rank - 1:
            x = g.node("MatMul", [x, g.constant(matrix.T, "columns")])
            continue
        swap = None
        if position < rank - 2:
            swap = list(range(rank))
            swap[position], swap[rank - 2] = rank - 2, position
            x = g.node("Transpose", [x], perm=swap)
        x = g.node("MatMul", [g.constant(matrix, "rows"), x])
        if swap is not None:
            x = g.node("Transpose", [x], perm=swap)
    return x


def _max_pool(g, m, x, shapes):
    return g.node("MaxPool", [x], **_window_attributes(
        m.kernel_size, m.stride, m.pads_for(shapes.of(m)[0][2:]), m.dilation))


def _adaptive_max_pool(g, m, x, shapes):
    """One axis at a time (a maximum over a rectangle is the maximum of the row maxima):
    bins that tile the axis as one MaxPool, overlapping ones (the output size does not
    divide the input's) as a Slice and a MaxPool per bin, concatenated along the axis."""
    spatial = tuple(shapes.of(m)[0][2:])
    for axis, (size, out) in enumerate(zip(spatial, m.output_size), start=2):
        out = size if out is None else out
        if out == size:
            continue
        kernel = [1, 1]
        if size % out == 0:
            kernel[axis - 2] = size // out
            x = g.node("MaxPool", [x], kernel_shape=kernel, strides=kernel)
            continue
        bins = []
        for start, end in adaptive_bounds(size, out):
            kernel[axis - 2] = end - start
            part = g.node("Slice", [x, g.constant(np.array([start]), "start", "int64"),
                                    g.constant(np.array([end]), "end", "int64"),
                                    g.constant(np.array([axis]), "axis", "int64")])
            bins.append(g.node("MaxPool", [part], kernel_shape=list(kernel)))
        x = g.node("Concat", bins, axis=axis)
    return x


def _avg_pool(g, m, x, shapes):
    """The layer's padding (ceil_mode's extra rows included); a window count other than
    ONNX's (ceil_mode, divisor_override) as the layer computes it: the mean of the real
    pixels times its (OH, OW) factor."""
    pads, include, factor = m.window_plan(tuple(shapes.of(m)[0][2:]))
    y = g.node("AveragePool", [x], count_include_pad=int(include),
               **_window_attributes(m.kernel_size, m.stride, pads))
    return y if factor is None else g.node("Mul", [y, g.constant(factor, "divisors")])


def _global_pool(g, m, x, shapes):
    y = g.node("GlobalAveragePool", [x])
    return y if m.keepdims else g.node("Flatten", [y], axis=1)


def _flatten(g, m, x, shapes):
    in_shape, out_shape = shapes.of(m)
    start = m.start_dim % len(in_shape)
    if start == m.end_dim % len(in_shape):  # one axis "merged": the identity
        return x
    if start == 1 and m.end_dim % len(in_shape) == len(in_shape) - 1:
        return g.node("Flatten", [x], axis=1)
    if start == 0:
        raise ValueError(f"ONNX export: {m._describe()} merges the batch axis; only "
                         f"start_dim >= 1 exports with a dynamic batch")
    target = g.constant(np.array((0,) + tuple(out_shape[1:])), "shape", "int64")
    return g.node("Reshape", [x, target])


def _pad(g, m, x, shapes):
    """ONNX's Pad: the begins of every axis, then the ends (PyTorch's tuple is last axis
    first, in (before, after) pairs)."""
    rank = len(shapes.of(m)[0])
    begins, ends = [0] * rank, [0] * rank
    for axis, before, after in m._pairs():
        begins[axis], ends[axis] = before, after
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[m.mode]
    inputs = [x, g.constant(np.array(begins + ends), "pads", "int64")]
    if mode == "constant":
        inputs.append(g.constant(np.array(m.value), "value"))
    return g.node("Pad", inputs, mode=mode)


def _pixel_unshuffle(g, m, x, shapes):
    """PixelShuffle's inverse (ONNX's SpaceToDepth orders the channels otherwise): split H
    and W by r, move both r axes after the channel, merge them into it."""
    _, c, h, w = shapes.of(m)[0]
    r = m.downscale_factor
    split = g.constant(np.array([0, c, h // r, r, w // r, r]), "split", "int64")
    y = g.node("Transpose", [g.node("Reshape", [x, split])], perm=[0, 1, 3, 5, 2, 4])
    merged = g.constant(np.array([0, c * r * r, h // r, w // r]), "merged", "int64")
    return g.node("Reshape", [y, merged])


def _unflatten(g, m, x, shapes):
    in_shape, out_shape = shapes.of(m)
    if m.dim % len(in_shape) == 0:
        raise ValueError(f"ONNX export: {m._describe()} splits the batch axis; only dim >= 1 "
                         f"exports with a dynamic batch")
    target = g.constant(np.array((0,) + tuple(out_shape[1:])), "shape", "int64")
    return g.node("Reshape", [x, target])


def _gelu(g, m, x, shapes):
    half = g.constant(0.5, "half")
    one = g.constant(1.0, "one")
    if m.approximate == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [g.constant(m._TANH_CUBIC, "c"), cube])])
        core = g.node("Tanh", [g.node("Mul", [g.constant(math.sqrt(2 / math.pi), "k"), inner])])
    else:
        core = g.node("Erf", [g.node("Mul", [x, g.constant(1 / math.sqrt(2), "k")])])
    return g.node("Mul", [g.node("Mul", [x, half]), g.node("Add", [core, one])])


def _celu(g, m, x, shapes):
    """``x`` where positive, else ``alpha * (exp(x / alpha) - 1)``: ONNX's Celu takes
    float32 only."""
    alpha = g.constant(m.alpha, "alpha")
    negative = g.node("Mul", [alpha, g.node("Sub", [g.node("Exp", [g.node("Div", [x, alpha])]),
                                                    g.constant(1.0, "one")])])
    return g.node("Where", [g.node("Greater", [x, g.constant(0.0, "zero")]), x, negative])


def _shrink(g, m, x, shapes):
    """0 where ``|x| <= lambd``, else x (Hardshrink) or ``x - lambd * sign(x)``
    (Softshrink). Not ONNX's Shrink: it takes NaN to 0, and onnxruntime's float64 Shrink
    rounds through float32."""
    lambd = g.constant(m.lambd, "lambd")
    kept = x if isinstance(m, nn.Hardshrink) else g.node(
        "Sub", [x, g.node("Mul", [lambd, g.node("Sign", [x])])])
    inside = g.node("LessOrEqual", [g.node("Abs", [x]), lambd])
    return g.node("Where", [inside, g.constant(0.0, "zero"), kept])


def _glu(g, m, x, shapes):
    """The first half along ``dim`` times the sigmoid of the second (two Slices)."""
    in_shape = shapes.of(m)[0]
    axis = m.dim % len(in_shape)
    if axis == 0:
        raise ValueError(f"ONNX export: {m._describe()} halves the batch axis; only dim >= 1 "
                         f"exports with a dynamic batch")
    half = in_shape[axis] // 2

    def part(start, stop, hint):
        return g.node("Slice", [x, g.constant(np.array([start]), f"{hint}_start", "int64"),
                                g.constant(np.array([stop]), f"{hint}_stop", "int64"),
                                g.constant(np.array([axis]), f"{hint}_axis", "int64")])
    return g.node("Mul", [part(0, half, "a"),
                          g.node("Sigmoid", [part(half, 2 * half, "b")])])


def _clip(g, m, x, shapes):
    """Hardtanh and ReLU6."""
    return g.node("Clip", [x, g.constant(m.min_val, "min"), g.constant(m.max_val, "max")])


def _softplus(g, m, x, shapes):
    """``x`` where ``beta * x > threshold`` (the layer's linear part), else the softplus."""
    beta = g.constant(m.beta, "beta")
    scaled = g.node("Mul", [x, beta])
    soft = g.node("Div", [g.node("Softplus", [scaled]), beta])
    linear = g.node("Greater", [scaled, g.constant(m.threshold, "threshold")])
    return g.node("Where", [linear, x, soft])


def _prelu(g, m, x, shapes):
    rank = len(shapes.of(m)[0])
    slope = asnumpy(m.weight.data)
    if m.num_parameters > 1:
        slope = slope.reshape((m.num_parameters,) + (1,) * (rank - 2))
    return g.node("PRelu", [x, g.constant(slope, "slope")])


def _residual(g, m, x, shapes):
    return g.node("Add", [x, _emit(g, m.body, x, shapes)])


def _sequential(g, m, x, shapes):
    for child in m:
        x = _emit(g, child, x, shapes)
    return x


_CONVERTERS = {
    nn.Sequential: _sequential, nn.Residual: _residual,
    nn.Linear: _linear, nn.DropConnect: _linear,
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose1d: _as_1d(_conv_transpose),
    nn.MaxPool2d: _max_pool,
    nn.AvgPool2d: _avg_pool,
    nn.MaxPool1d: _as_1d(_max_pool), nn.AvgPool1d: _as_1d(_avg_pool),
    nn.AdaptiveAvgPool1d: _as_1d(_separable),
    nn.AdaptiveMaxPool2d: _adaptive_max_pool, nn.AdaptiveMaxPool1d: _as_1d(_adaptive_max_pool),
    nn.GlobalAvgPool2d: _global_pool, nn.AdaptiveAvgPool2d: _separable, nn.Upsample: _separable,
    nn.BatchNorm1d: _batch_norm, nn.BatchNorm2d: _batch_norm, nn.LayerNorm: _layer_norm,
    nn.GroupNorm: _group_norm, nn.InstanceNorm1d: _group_norm, nn.InstanceNorm2d: _group_norm,
    nn.Embedding: lambda g, m, x, s: g.node("Gather", [g.constant(m.weight.data, "weight"), x],
                                            axis=0),
    nn.Flatten: _flatten, nn.Unflatten: _unflatten,
    nn.PixelShuffle: lambda g, m, x, s: g.node("DepthToSpace", [x], blocksize=m.upscale_factor,
                                               mode="CRD"),
    nn.PixelUnshuffle: _pixel_unshuffle,
    **{layer: _pad for layer in (nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
                                 nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d,
                                 nn.ReplicationPad2d)},
    nn.Identity: lambda g, m, x, s: x, nn.Dropout: lambda g, m, x, s: x,
    nn.Dropout1d: lambda g, m, x, s: x, nn.Dropout2d: lambda g, m, x, s: x,
    nn.AlphaDropout: lambda g, m, x, s: x,
    nn.ReLU: lambda g, m, x, s: g.node("Relu", [x]),
    # PRelu, not LeakyRelu: its alpha attribute is a float32, which rounds a float64 slope
    nn.LeakyReLU: lambda g, m, x, s: g.node("PRelu", [x, g.constant(m.negative_slope,
                                                                    "slope")]),
    nn.ELU: lambda g, m, x, s: g.node("Elu", [x], alpha=m.alpha),
    nn.Tanh: lambda g, m, x, s: g.node("Tanh", [x]),
    nn.Sigmoid: lambda g, m, x, s: g.node("Sigmoid", [x]),
    nn.SoftPlus: _softplus,
    nn.Softmax: lambda g, m, x, s: g.node("Softmax", [x], axis=m.dim),
    nn.LogSoftmax: lambda g, m, x, s: g.node("LogSoftmax", [x], axis=m.dim),
    nn.GELU: _gelu,
    nn.SiLU: lambda g, m, x, s: g.node("Mul", [x, g.node("Sigmoid", [x])]),
    nn.Hardsigmoid: lambda g, m, x, s: g.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5),
    nn.Hardswish: lambda g, m, x, s: g.node("HardSwish", [x]),
    nn.Mish: lambda g, m, x, s: g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])]),
    nn.CELU: _celu,
    nn.SELU: lambda g, m, x, s: g.node("Selu", [x], alpha=m.ALPHA, gamma=m.SCALE),
    nn.Softsign: lambda g, m, x, s: g.node("Softsign", [x]),
    nn.Softmin: lambda g, m, x, s: g.node("Softmax", [g.node("Neg", [x])], axis=m.dim),
    nn.GLU: _glu,
    nn.Threshold: lambda g, m, x, s: g.node("Where", [
        g.node("LessOrEqual", [x, g.constant(m.threshold, "threshold")]),
        g.constant(m.value, "value"), x]),
    nn.Hardshrink: _shrink, nn.Softshrink: _shrink,
    nn.Tanhshrink: lambda g, m, x, s: g.node("Sub", [x, g.node("Tanh", [x])]),
    nn.LogSigmoid: lambda g, m, x, s: g.node("Neg", [g.node("Softplus", [g.node("Neg", [x])])]),
    nn.Hardtanh: _clip, nn.ReLU6: _clip,
    nn.PReLU: _prelu,
}


def _emit(g, module, x, shapes):
    convert = _CONVERTERS.get(type(module))
    if convert is None:
        supported = ", ".join(sorted({t.__name__ for t in _CONVERTERS}))
        raise ValueError(f"ONNX export: no converter for {module._describe()} "
                         f"({type(module).__module__}.{type(module).__name__}); supported: "
                         f"{supported}")
    shapes.advance(module)
    return convert(g, module, x, shapes)


def _refuse_index_layers(model) -> None:
    """The layers that pass max-pool indices cannot be written: the exporter writes a chain
    of one-input, one-output layers, and ONNX's MaxPool indices count over the whole
    (N, C, H, W) tensor, not per (n, c) plane as PyTorch's and tensornet's."""
    for module in model.modules():
        if isinstance(module, nn.MaxUnpool2d):
            raise ValueError(f"ONNX export: {module._describe()} cannot be exported: it takes "
                             f"a second input (a pool's indices), and the exporter writes "
                             f"chains of one-input layers")
        if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) and module.return_indices:
            raise ValueError(f"ONNX export: {module._describe()} cannot be exported: with "
                             f"return_indices=True it returns (y, indices), and the exporter "
                             f"writes chains of one-output layers; export a model whose "
                             f"{type(module).__name__} has return_indices=False")


def _normalize(g, transform, value, rank: int, dtype: str) -> str:
    """``(x - mean) / std`` of a ``tn.data.Normalize``, per channel (axis 1) or scalar."""
    mean, std = np.asarray(transform.mean), np.asarray(transform.std)
    shape = (1, mean.size) + (1,) * (rank - 2) if mean.size > 1 else (1,) * rank
    centred = g.node("Sub", [value, g.constant(mean.reshape(shape), "mean", dtype)])
    return g.node("Mul", [centred, g.constant((1.0 / std).reshape(shape), "inv_std", dtype)])


class _CallShapes:
    """Each module's (input shape, output shape) per call, in call order, for converters
    that need static sizes: a module called twice (one Upsample shared by two places) is
    converted with each call's own sizes. The converters are called in the forward's
    order, and ``advance`` (in ``_emit``) moves a module on to its next call."""

    def __init__(self):
        self._calls, self._current = {}, {}

    def record(self, module, inputs, output) -> None:
        if isinstance(output, tuple):  # RNN's (output, h_n); the max pools' are refused before
            raise ValueError(f"ONNX export: {module._describe()} cannot be exported: it returns "
                             f"a tuple of {len(output)} arrays, and the exporter writes chains "
                             f"of one-output layers")
        self._calls.setdefault(id(module), []).append((tuple(inputs[0].shape),
                                                       tuple(output.shape)))

    def advance(self, module) -> None:
        calls = self._calls.get(id(module))
        self._current[id(module)] = calls.pop(0) if calls else None

    def of(self, module) -> tuple:
        return self._current[id(module)]


def _record_shapes(model, x):
    """Run ``model`` on ``x`` in eval mode: its output and the ``_CallShapes`` of its
    modules."""
    shapes = _CallShapes()
    return run_with_hooks(model, x, shapes.record), shapes


def export(model, example_input, path=None, *, input_transform=None, opset: int = DEFAULT_OPSET,
           input_name: str = "input", output_name: str = "output"):
    """Write ``model`` (as in eval mode) to the ONNX file ``path`` and return the ModelProto.

    ``example_input``: one batch (host or the model's device) fixing the dtype and the
    shape after the batch axis, which stays dynamic (``"N"``). ``input_transform``: a
    ``tn.data.Normalize`` folded in front of the model, so the file takes the raw inputs
    the DataLoader reads (any other transform raises ``TypeError``). The graph is checked
    with ``onnx.checker``, types included, before it is written.
    Unsupported layers raise ``ValueError`` naming them (MaxUnpool2d and a max pool with
    ``return_indices=True`` among them: ``_refuse_index_layers``).
    """
    onnx = _onnx()
    if opset < MIN_OPSET:
        raise ValueError(f"ONNX export: opset {opset} is too old; tensornet needs >= {MIN_OPSET}")
    if opset > newest_opset():  # the checker lets it pass; no runtime loads the file
        raise ValueError(f"ONNX export: opset {opset} is newer than the installed onnx "
                         f"{onnx.__version__} knows (<= {newest_opset()})")
    if not isinstance(model, nn.Module):
        raise TypeError(f"export expected a tensornet Module, got {type(model).__name__}")
    from tensornet.data.transforms import Normalize
    if input_transform is not None and not isinstance(input_transform, Normalize):
        raise TypeError(f"ONNX export: input_transform must be a tensornet.data.Normalize (the "
                        f"one transform folded into the graph), got "
                        f"{type(input_transform).__name__}; apply other transforms to the "
                        f"inputs before they reach the file")
    _refuse_index_layers(model)
    backend = next((get_backend(p.data) for p in model.parameters()), model.backend)
    x = example_input if backend.owns(example_input) else backend.asarray(
        np.asarray(example_input))
    transformed = input_transform(x) if input_transform is not None else x
    output, shapes = _record_shapes(model, transformed)
    graph_dtype = model.dtype  # a model without parameters computes in its input's dtype
    if next(iter(model.parameters()), None) is None and dtype_name(output.dtype) in (
            "float32", "float64"):
        graph_dtype = dtype_name(output.dtype)
    g = _Graph(onnx, graph_dtype)
    value = input_name
    if input_transform is not None:
        value = _normalize(g, input_transform, value, len(x.shape), dtype_name(x.dtype))
    value = _emit(g, model, value, shapes)
    g.nodes.append(onnx.helper.make_node("Identity", [value], [output_name]))
    element = {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE,
               "int64": onnx.TensorProto.INT64, "int32": onnx.TensorProto.INT32}
    in_type, out_type = dtype_name(x.dtype), dtype_name(output.dtype)
    if in_type not in element or out_type not in element:
        raise ValueError(f"ONNX export: unsupported dtypes {in_type} -> {out_type}")
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__, [onnx.helper.make_tensor_value_info(
            input_name, element[in_type], ["N", *x.shape[1:]])],
        [onnx.helper.make_tensor_value_info(output_name, element[out_type],
                                            ["N", *output.shape[1:]])],
        initializer=g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="tensornet",
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto, full_check=True)  # with types: what runtimes load
    if path is not None:  # the previous file or the whole new one, never a partial file
        atomic_write(Path(path), proto.SerializeToString(), "the ONNX model")
    return proto
