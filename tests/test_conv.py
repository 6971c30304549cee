"""Conv2d and the backend's im2col/col2im: naive references, gradchecks, backend agreement."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tensornet as tn
from tensornet.nn import functional as F
from tensornet.backends import dtype_name, get_backend
from tensornet.nn import Conv2d

# in_channels, out_channels, kernel, stride, padding, dilation, groups, input (H, W)
GRID = [
    (2, 3, 3, 1, 0, 1, 1, (5, 6)),
    (2, 3, 3, 1, 1, 1, 1, (5, 5)),
    (3, 2, (2, 3), (2, 1), (1, 0), 1, 1, (7, 6)),
    (2, 2, 3, 2, 1, 2, 1, (7, 7)),
    (4, 6, 3, 1, 1, 1, 2, (5, 4)),
    (4, 4, 3, 2, 1, 1, 4, (6, 5)),        # depthwise
    (1, 2, 5, 1, 2, 1, 1, (5, 7)),
    (3, 3, 1, 1, 0, 1, 1, (3, 4)),        # 1x1
    (2, 4, 3, 1, "same", 1, 2, (5, 6)),
    (2, 2, (2, 4), 1, "same", (2, 1), 1, (6, 7)),  # even kernel: asymmetric "same"
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def naive_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """Direct definition, one output element at a time (float64)."""
    n, c, h, w = x.shape
    out_c, cg, kh, kw = weight.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if padding == "same":
        totals = (dh * (kh - 1), dw * (kw - 1))
        pads = [(t // 2, t - t // 2) for t in totals]  # extra row/column at the end
    else:
        ph, pw = _pair(padding)
        pads = [(ph, ph), (pw, pw)]
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    og = out_c // groups
    y = np.zeros((n, out_c, oh, ow))
    for b in range(n):
        for o in range(out_c):
            g = o // og
            for r in range(oh):
                for s in range(ow):
                    acc = 0.0 if bias is None else bias[o]
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += (weight[o, ci, i, j]
                                        * xp[b, g * cg + ci, r * sh + i * dh, s * sw + j * dw])
                    y[b, o, r, s] = acc
    return y


def _conv(config, device, dtype="float64", bias=True):
    cin, cout, k, s, p, d, g, _ = config
    tn.manual_seed(0)
    return Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias,
                  device=device, dtype=dtype)


@pytest.mark.parametrize("config", GRID)
def test_forward_matches_naive_reference(device, rng, config):
    conv = _conv(config, device)
    x = rng.standard_normal((2, config[0]) + config[7])
    got = tn.asnumpy(conv(conv.backend.asarray(x)))
    want = naive_conv2d(x, tn.asnumpy(conv.weight.data), tn.asnumpy(conv.bias.data),
                        config[3], config[4], config[5], config[6])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", GRID)
def test_gradcheck(device, rng, config):
    conv = _conv(config, device, bias=config[6] != 4)
    x = rng.standard_normal((2, config[0]) + config[7])
    # Element by element on NumPy; along 20 random directions on the (slow) strict backend,
    # whose agreement with NumPy is checked separately.
    assert tn.gradcheck(conv, x, max_elements=400 if device == "cpu" else 16)


def test_gradcheck_directional_on_larger_input(rng):
    # Beyond max_elements the checker projects onto random directions: still must pass.
    conv = _conv((3, 4, 3, 2, 1, 1, 1, None), "cpu")
    assert tn.gradcheck(conv, rng.standard_normal((3, 3, 9, 8)))


def test_gradcheck_catches_a_wrong_backward(rng, monkeypatch):
    conv = _conv(GRID[1], "cpu")
    kernels = type(conv.backend).kernels
    def wrong_input_grad(backend, *args, **kwargs):
        dx, dw = F.conv2d_backward.generic(backend, *args, **kwargs)
        return None if dx is None else dx * 1.01, dw

    monkeypatch.setitem(kernels, "conv2d_backward", wrong_input_grad)
    with pytest.raises(tn.nn.GradcheckError, match="input"):
        tn.gradcheck(conv, rng.standard_normal((2, 2, 5, 5)))


@pytest.mark.parametrize("config", [GRID[2], GRID[4], GRID[9]])
def test_backends_agree_float32(any_device, rng, config):
    """The same host data and weights give the same output and gradients everywhere."""
    x = rng.standard_normal((3, config[0]) + config[7]).astype(np.float32)
    ref = _conv(config, "cpu", dtype="float32")
    conv = _conv(config, any_device, dtype="float32")
    y_ref = ref(x)
    y = conv(conv.backend.asarray(x))
    assert dtype_name(y.dtype) == "float32"
    grad = rng.standard_normal(y_ref.shape).astype(np.float32)
    dx_ref = ref.backward(grad)
    dx = conv.backward(conv.backend.asarray(grad))
    assert dtype_name(dx.dtype) == "float32"
    assert dtype_name(conv.weight.grad.dtype) == "float32"
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(y), tn.asnumpy(y_ref), **tol)
    np.testing.assert_allclose(tn.asnumpy(dx), tn.asnumpy(dx_ref), **tol)
    np.testing.assert_allclose(tn.asnumpy(conv.weight.grad), tn.asnumpy(ref.weight.grad), **tol)
    np.testing.assert_allclose(tn.asnumpy(conv.bias.grad), tn.asnumpy(ref.bias.grad), **tol)


GEOMETRIES = [  # x shape, kernel, stride, padding, dilation
    ((2, 3, 5, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((1, 2, 7, 7), (3, 2), (2, 3), ((0, 1), (2, 0)), (2, 1)),
    ((2, 1, 4, 4), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    # size-keeping stride-1 geometries (NumPy's flattened-plane path), edge cases included
    ((2, 2, 4, 2), (3, 2), (1, 1), ((1, 1), (0, 1)), (1, 1)),
    ((1, 2, 6, 7), (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    ((2, 1, 3, 5), (5, 3), (1, 1), ((1, 3), (2, 0)), (1, 1)),
    ((1, 2, 3, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),   # kernel wider than the image
    # kernel more than twice as tall as the image: a row shift past the whole plane
    ((2, 2, 1, 3), (5, 3), (1, 1), ((2, 2), (1, 1)), (1, 1)),
    ((3, 1, 1, 1), (3, 1), (1, 1), ((2, 2), (0, 0)), (2, 1)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_numpy_im2col_col2im_overrides_match_generic(rng, geometry):
    x_shape, kernel, stride, padding, dilation = geometry
    cpu = get_backend("cpu")
    x = rng.standard_normal(x_shape).astype(np.float32)
    cols = F.im2col(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(cols, F.im2col.generic(cpu, x, kernel, stride, padding,
                                                       dilation))
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    np.testing.assert_allclose(F.col2im(dcols, x_shape, kernel, stride, padding, dilation),
                               F.col2im.generic(cpu, dcols, x_shape, kernel, stride, padding,
                                              dilation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_layout_and_col2im_adjoint(device, rng, geometry):
    """cols[c, i, j, n, oh, ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw], and col2im is
    im2col's adjoint: <im2col(x), c> == <x, col2im(c)>."""
    x_shape, kernel, stride, padding, dilation = geometry
    backend = get_backend(device)
    x = rng.standard_normal(x_shape)
    cols = tn.asnumpy(F.im2col(backend.asarray(x), kernel, stride, padding, dilation))
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(padding))
    n, c = x_shape[:2]
    oh = (xp.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    assert cols.shape == (c, kernel[0], kernel[1], n, oh, ow)
    for ci, i, j, b, r, s in np.ndindex(cols.shape):
        assert cols[ci, i, j, b, r, s] == xp[b, ci, r * stride[0] + i * dilation[0],
                                             s * stride[1] + j * dilation[1]]
    c_host = rng.standard_normal(cols.shape)
    folded = tn.asnumpy(F.col2im(backend.asarray(c_host), x_shape, kernel, stride,
                                       padding, dilation))
    assert folded.shape == x_shape
    np.testing.assert_allclose(np.sum(cols * c_host), np.sum(x * folded), rtol=1e-12)


def test_same_padding_keeps_size_and_default_init_matches_pytorch_bounds():
    tn.manual_seed(1)
    conv = Conv2d(6, 8, (3, 4), padding="same", dilation=(1, 2), groups=2)
    x = np.zeros((2, 6, 9, 10), np.float32)
    assert conv(x).shape == (2, 8, 9, 10)
    fan_in = 3 * 3 * 4
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the bias both give this
    w, b = tn.asnumpy(conv.weight.data), tn.asnumpy(conv.bias.data)
    assert w.shape == (8, 3, 3, 4) and b.shape == (8,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= bound and w.dtype == np.float32


def test_output_and_gradients_stay_float32(device, rng):
    conv = Conv2d(2, 3, 3, padding=1, device=device)
    x = conv.backend.asarray(rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    y = conv(x)
    dx = conv.backward(y)
    for arr in (y, dx, conv.weight.grad, conv.bias.grad):
        assert dtype_name(arr.dtype) == "float32"


def test_frozen_weight_still_gives_input_gradient(rng):
    conv = Conv2d(2, 3, 3)
    conv.weight.requires_grad = False
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    dx = conv.backward(conv(x))
    assert conv.weight.grad is None and conv.bias.grad is not None
    assert dx.shape == x.shape


def test_errors_name_layer_and_expected_shape():
    conv = Conv2d(1, 8, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(1 -> 8, k=3\) got input of shape "
                                         r"\(32, 3, 28, 28\); expected \(N, 1, H, W\)"):
        conv(np.zeros((32, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 1, H, W\)"):
        conv(np.zeros((32, 28, 28), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(np.zeros((2, 1, 2, 5), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        conv(np.zeros((2, 1, 5, 5)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Conv2d(1, 2, 3).backward(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="divisible by groups"):
        Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="'same' needs stride 1"):
        Conv2d(1, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="kernel_size must be"):
        Conv2d(1, 2, 0)


def test_state_dict_and_repr():
    conv = Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    assert list(conv.state_dict()) == ["weight"]
    assert repr(conv) == "Conv2d(3, 4, kernel_size=3, stride=2, padding=1, bias=False)"
