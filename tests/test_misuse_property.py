"""Property test: random layer stacks driven through forward and backward with wrong
shapes, wrong dtypes, non-arrays, arrays of another device and misuse (backward before
forward, twice, after a no_grad forward, with a wrong grad_output). Every failure must be
a tensornet error (ValueError, TypeError, RuntimeError/DeviceError) raised by tensornet's
own code and naming a layer, never a raw NumPy, PyTorch or Python exception; and no
parameter is left with a gradient of the wrong shape."""
from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tensornet as tn  # noqa: E402
from tensornet import nn  # noqa: E402
from tensornet.backends import get_backend  # noqa: E402

from conftest import TORCH_SKIP_REASON  # noqa: E402

DEVICES = ["cpu", "strict"] + ([] if TORCH_SKIP_REASON else ["torch"])
OURS = tuple(str(Path(p).resolve()) for p in (Path(tn.__file__).parent,
                                              Path(tn.backends.__file__).parent))
BAD_DTYPES = ["float64", "float16", "int64", "uint8", "bool", "complex64", "object"]
ALWAYS_WRONG = ("non_array", "backward_first", "backward_twice", "no_grad_then_backward",
                "grad_shape", "grad_dtype", "grad_list", "grad_device")
MISUSE = ["none", "shape", "rank", "dtype", "non_array", "device", "empty", "backward_first",
          "backward_twice", "no_grad_then_backward", "grad_shape", "grad_dtype", "grad_list",
          "grad_device"]


@st.composite
def dense_stack(draw, width):
    """Layers over (N, width) features; returns (layers, output width)."""
    layers = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["linear", "dropconnect", "act", "softmax", "dropout",
                                     "batchnorm", "layernorm", "identity", "residual"]))
        if kind in ("linear", "dropconnect"):
            out = draw(st.integers(1, 6))
            layers.append(nn.Linear(width, out) if kind == "linear"
                          else nn.DropConnect(width, out, p=draw(st.sampled_from([0.0, 0.5]))))
            width = out
        elif kind == "act":
            layers.append(draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU,
                                                nn.ELU, nn.SoftPlus, nn.GELU, nn.SiLU,
                                                nn.Hardtanh, nn.PReLU]))())
        elif kind == "softmax":
            layer = draw(st.sampled_from([nn.Softmax, nn.LogSoftmax]))
            layers.append(layer(dim=draw(st.sampled_from([-1, 1, 0, 2, 5, -3]))))
        elif kind == "dropout":
            layers.append(nn.Dropout(draw(st.sampled_from([0.0, 0.3, 1.0]))))
        elif kind == "batchnorm":
            layers.append(nn.BatchNorm1d(width))
        elif kind == "layernorm":
            layers.append(nn.LayerNorm(width))
        elif kind == "identity":
            layers.append(nn.Identity())
        else:
            layers.append(nn.Residual(nn.Sequential(nn.Linear(width, width), nn.Tanh())))
    if all(isinstance(layer, nn.Identity) for layer in layers):
        layers.append(nn.ReLU())  # an Identity alone passes anything through, by design
    return layers, width


@st.composite
def image_stack(draw, channels):
    """Layers over (N, C, H, W) images, maybe flattened into a dense head."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "maxpool", "avgpool", "batchnorm", "act",
                                     "conv_transpose", "adaptive", "upsample", "dropout2d"]))
        if kind == "conv":
            out = draw(st.integers(1, 3))
            layers.append(nn.Conv2d(channels, out, draw(st.sampled_from([1, 3])),
                                    padding=draw(st.sampled_from([0, 1]))))
            channels = out
        elif kind == "maxpool":
            layers.append(nn.MaxPool2d(2, padding=draw(st.sampled_from([0, 1]))))
        elif kind == "avgpool":
            layers.append(nn.AvgPool2d(2))
        elif kind == "batchnorm":
            layers.append(nn.BatchNorm2d(channels))
        elif kind == "conv_transpose":
            out = draw(st.integers(1, 3))
            layers.append(nn.ConvTranspose2d(channels, out, 2, stride=2))
            channels = out
        elif kind == "adaptive":
            layers.append(nn.AdaptiveAvgPool2d(2))
        elif kind == "upsample":
            layers.append(nn.Upsample(scale_factor=2))
        elif kind == "dropout2d":
            layers.append(nn.Dropout2d(draw(st.sampled_from([0.0, 0.5]))))
        else:
            layers.append(nn.ReLU())
    tail = draw(st.sampled_from(["flatten", "global", "none"]))
    if tail == "flatten":
        layers.append(nn.Flatten(draw(st.sampled_from([1, 2]))))
    elif tail == "global":
        layers.append(nn.GlobalAvgPool2d())
    return layers


@st.composite
def scenario(draw):
    device = draw(st.sampled_from(DEVICES))
    batch = draw(st.integers(1, 4))
    if draw(st.booleans()):
        width = draw(st.integers(1, 5))
        layers, _ = draw(dense_stack(width))
        shape = (batch, width)
    else:
        channels, size = draw(st.integers(1, 2)), draw(st.integers(1, 6))
        layers = draw(image_stack(channels))
        shape = (batch, channels, size, size)
    return {"device": device, "layers": layers, "shape": shape,
            "training": draw(st.booleans()), "misuse": draw(st.sampled_from(MISUSE)),
            "dtype": draw(st.sampled_from(BAD_DTYPES)), "axis": draw(st.integers(0, 3)),
            "wrap": draw(st.booleans()), "seed": draw(st.integers(0, 2 ** 16))}


def _other_device(device):
    return "strict" if device != "strict" else "cpu"


def _run(case):
    rng = np.random.default_rng(case["seed"])
    device, shape, misuse = case["device"], case["shape"], case["misuse"]
    model = nn.Sequential(*case["layers"]) if case["wrap"] or len(case["layers"]) > 1 \
        else case["layers"][0]
    model.to(device).train(case["training"])
    good = get_backend(device).asarray(rng.standard_normal(shape).astype(np.float32))
    x = good
    if misuse == "shape":
        axis = case["axis"] % len(shape)
        x = get_backend(device).asarray(np.ones(shape[:axis] + (shape[axis] + 1,)
                                                + shape[axis + 1:], np.float32))
    elif misuse == "rank":
        x = get_backend(device).asarray(np.ones(shape + (2,) if case["axis"] % 2 else shape[1:],
                                                np.float32))
    elif misuse == "dtype":
        dtype = case["dtype"]
        if device == "strict" and dtype in ("float16", "object", "complex64"):
            x = np.ones(shape, dtype)  # strict lacks them: a NumPy array, another device
        elif device == "torch" and dtype == "object":
            x = np.ones(shape, dtype)
        else:
            x = get_backend(device).asarray(np.ones(shape, dtype))
    elif misuse == "non_array":
        x = [case["seed"], "abc", None, 3.5][case["axis"]]
    elif misuse == "device":
        x = tn.to_device(good, _other_device(device))
    elif misuse == "empty":
        x = get_backend(device).asarray(np.ones((0,) + shape[1:], np.float32))

    if misuse == "backward_first":
        model.backward(good)
        return model
    if misuse == "no_grad_then_backward":
        with tn.no_grad():
            y = model(x)
        model.backward(y)
        return model
    y = model(x)
    grad = get_backend(device).asarray(np.ones(tuple(y.shape), np.float32)) \
        if tn.is_grad_enabled() else None
    if misuse == "grad_shape":
        grad = get_backend(device).asarray(np.ones(tuple(y.shape) + (1,), np.float32))
    elif misuse == "grad_dtype":
        grad = get_backend(device).asarray(np.ones(tuple(y.shape), np.int64))
    elif misuse == "grad_list":
        grad = np.ones(tuple(y.shape), np.float32).tolist()
    elif misuse == "grad_device":
        grad = tn.to_device(grad, _other_device(device))
    model.backward(grad, input_grad=bool(case["axis"] % 2))
    if misuse == "backward_twice":
        model.backward(grad)
    return model


def _raised_by_tensornet(exc) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(OURS)


@settings(max_examples=150, deadline=2000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_misuse_fails_with_a_tensornet_error_naming_a_layer(case):
    names = {type(m).__name__ for layer in case["layers"] for m in layer.modules()}
    try:
        model = _run(case)
    except (ValueError, TypeError, RuntimeError) as exc:
        if isinstance(exc, (IndexError, KeyError, AttributeError, ZeroDivisionError)) \
                or type(exc).__module__.startswith(("numpy", "torch", "array_api_strict")):
            raise AssertionError(f"a raw {type(exc).__name__} escaped: {exc}") from exc
        message = str(exc)
        assert _raised_by_tensornet(exc), f"raised outside tensornet: {exc!r}"
        assert any(name in message for name in names), f"names no layer: {message}"
        model = nn.Sequential(*case["layers"])
    else:
        assert case["misuse"] not in ALWAYS_WRONG or _nothing_to_check(case), case["misuse"]
    for p in model.parameters():
        assert p.grad is None or tuple(p.grad.shape) == p.shape


def _nothing_to_check(case) -> bool:
    """``backward(grad, input_grad=False)`` of a Sequential without trainable parameters
    returns None at once: it asks for nothing, so nothing runs (or can be wrong)."""
    return (not case["axis"] % 2 and case["misuse"] != "backward_first"
            and (case["wrap"] or len(case["layers"]) > 1)
            and not any(p.requires_grad for layer in case["layers"] for p in layer.parameters()))
