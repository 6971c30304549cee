"""MaxPool2d, AvgPool2d, GlobalAvgPool2d: naive references, tie routing, gradchecks."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import dtype_name
from tensornet.nn import AvgPool2d, GlobalAvgPool2d, MaxPool2d

# kernel, stride, padding, dilation, input (H, W); covers the 2x2 tiling fast path, other
# tilings, gaps (stride > kernel), overlapping windows (scatter_add path) and odd sizes.
MAX_GRID = [
    (2, None, 0, 1, (6, 8)),        # 2x2 tiling: the fast path
    (3, None, 0, 1, (6, 9)),        # 3x3 tiling
    (2, None, 0, 1, (7, 5)),        # odd sizes: the last row/column is dropped
    (2, 3, 0, 1, (8, 7)),           # gaps between windows
    (3, 2, 1, 1, (7, 7)),           # overlapping, padded
    (3, 1, 1, 1, (5, 6)),           # heavily overlapping
    ((3, 2), (1, 2), (1, 0), 1, (6, 6)),
    (2, 1, 0, 2, (6, 5)),           # dilated
]
AVG_GRID = [
    (2, None, 0, (6, 8)),
    (3, 2, 1, (7, 7)),
    ((2, 3), (1, 2), (1, 1), (5, 7)),
    (3, 1, 0, (5, 5)),
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def naive_pool(x, kernel, stride, padding, dilation=1, mode="max", count_include_pad=True):
    """Reference pooling, one window at a time; max returns (y, index of the first max in
    the flattened padded plane, or of the last NaN: a NaN is the maximum, as in PyTorch) so
    routing can be checked too."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel), _pair(padding), _pair(dilation)
    sh, sw = _pair(stride if stride is not None else kernel)
    n, c, h, w = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    real = np.pad(np.ones((h, w)), ((ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, c, oh, ow))
    first = np.zeros((n, c, oh, ow), dtype=np.int64)
    for b, ch, r, s in np.ndindex(n, c, oh, ow):
        rows = [r * sh + i * dh for i in range(kh)]
        cols = [s * sw + j * dw for j in range(kw)]
        window = [(xp[b, ch, i, j], i * xp.shape[3] + j) for i in rows for j in cols]
        if mode == "max":
            nans = [pos for v, pos in window if np.isnan(v)]
            best = np.nan if nans else max(v for v, _ in window)
            y[b, ch, r, s] = best
            first[b, ch, r, s] = nans[-1] if nans else next(pos for v, pos in window
                                                            if v == best)
        else:
            divisor = kh * kw if count_include_pad else sum(real[i, j] for i in rows for j in cols)
            y[b, ch, r, s] = sum(v for v, _ in window) / divisor
    return y, first


@pytest.mark.parametrize("config", MAX_GRID)
def test_maxpool_forward_and_routing_match_reference(device, rng, config):
    # few distinct values: many ties, which must go to the first maximum (as PyTorch)
    x = rng.integers(0, 3, (2, 3) + config[4]).astype(np.float64)
    _check_maxpool_against_naive(device, rng, config, x)


@pytest.mark.parametrize("config", MAX_GRID)
def test_maxpool_routes_the_gradient_to_the_last_nan(any_device, rng, config):
    """The generic code, NumPy's 2x2 override and the CUDA kernel agree with PyTorch: the
    output is NaN and the whole gradient goes to the window's last NaN."""
    x = rng.integers(0, 3, (2, 3) + config[4]).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = np.nan
    _check_maxpool_against_naive(any_device, rng, config, x)


def _check_maxpool_against_naive(device, rng, config, x):
    kernel, stride, padding, dilation, hw = config
    pool = MaxPool2d(kernel, stride, padding, dilation)
    backend = tn.get_backend(device)
    y = pool(backend.asarray(x))
    want, first = naive_pool(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(tn.asnumpy(y), want.astype(x.dtype))
    grad = rng.standard_normal(want.shape).astype(x.dtype)
    dx = tn.asnumpy(pool.backward(backend.asarray(grad)))
    (ph, pw) = _pair(padding)
    hp, wp = hw[0] + 2 * ph, hw[1] + 2 * pw
    expected = np.zeros((2, 3, hp * wp))
    for b, c in np.ndindex(2, 3):
        np.add.at(expected[b, c], first[b, c].ravel(), grad[b, c].ravel())
    expected = expected.reshape(2, 3, hp, wp)[:, :, ph:ph + hw[0], pw:pw + hw[1]]
    tol = 1e-12 if x.dtype == np.float64 else 1e-6
    np.testing.assert_allclose(dx, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("config", MAX_GRID)
def test_maxpool_gradcheck(device, rng, config):
    kernel, stride, padding, dilation, hw = config
    x = rng.permutation(2 * 2 * hw[0] * hw[1]).reshape((2, 2) + hw) * 0.1  # no ties
    assert tn.gradcheck(MaxPool2d(kernel, stride, padding, dilation), x)


def test_overlapping_maxpool_accumulates_on_a_shared_maximum(device):
    # One big value in the middle is the maximum of all 9 overlapping 3x3 windows.
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 10.0
    backend = tn.get_backend(device)
    pool = MaxPool2d(3, stride=1)
    y = pool(backend.asarray(x))
    assert tn.asnumpy(y).shape == (1, 1, 3, 3)
    dx = tn.asnumpy(pool.backward(backend.asarray(np.arange(1.0, 10.0).reshape(1, 1, 3, 3))))
    assert dx[0, 0, 2, 2] == 45.0 and dx.sum() == 45.0


def test_maxpool_propagates_nan(device):
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 3, 2] = np.nan
    for pool in (MaxPool2d(2), MaxPool2d(3, stride=1, padding=1)):
        y = tn.asnumpy(pool(tn.get_backend(device).asarray(x)))
        assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 0, -1, -1])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("config", AVG_GRID)
def test_avgpool_matches_reference_and_gradchecks(device, rng, config, count_include_pad):
    kernel, stride, padding, hw = config
    x = rng.standard_normal((2, 2) + hw)
    pool = AvgPool2d(kernel, stride, padding, count_include_pad=count_include_pad)
    y = pool(tn.get_backend(device).asarray(x))
    want, _ = naive_pool(x, kernel, stride, padding, mode="avg",
                         count_include_pad=count_include_pad)
    np.testing.assert_allclose(tn.asnumpy(y), want, rtol=1e-12, atol=1e-12)
    assert tn.gradcheck(pool, x)


def test_global_avg_pool(device, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    backend = tn.get_backend(device)
    pool = GlobalAvgPool2d()
    np.testing.assert_allclose(tn.asnumpy(pool(backend.asarray(x))), x.mean(axis=(2, 3)),
                               rtol=1e-12)
    assert tn.gradcheck(pool, x)
    kept = GlobalAvgPool2d(keepdims=True)
    assert tn.asnumpy(kept(backend.asarray(x))).shape == (2, 3, 1, 1)
    assert tn.gradcheck(kept, x)


@pytest.mark.parametrize("make", [lambda: MaxPool2d(2), lambda: MaxPool2d(3, 2, 1),
                                  lambda: AvgPool2d(2), lambda: GlobalAvgPool2d()])
def test_backends_agree_float32(any_device, rng, make):
    x = rng.standard_normal((3, 4, 8, 6)).astype(np.float32)
    ref, pool = make(), make()
    backend = tn.get_backend(any_device)
    y_ref, y = ref(x), pool(backend.asarray(x))
    assert dtype_name(y.dtype) == "float32"
    grad = rng.standard_normal(y_ref.shape).astype(np.float32)
    dx_ref, dx = ref.backward(grad), pool.backward(backend.asarray(grad))
    assert dtype_name(dx.dtype) == "float32"
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-6, atol=1e-6)


def test_pool_follows_the_input_device_and_errors_are_clear():
    pool = MaxPool2d(2)
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2\) got input of shape "
                                         r"\(2, 8, 8\); expected \(N, C, H, W\)"):
        pool(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="at most half the kernel"):
        MaxPool2d(2, padding=2)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        AvgPool2d(2).backward(np.zeros((1, 1, 2, 2), np.float32))
    x = tn.get_backend("strict").asarray(np.zeros((1, 1, 4, 4), np.float32))
    assert tn.asnumpy(pool(x)).shape == (1, 1, 2, 2)
    assert repr(MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
