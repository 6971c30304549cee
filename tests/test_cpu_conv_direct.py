"""The NumPy backend's direct 3x3 convolution (``backends/jit/direct.py``, chosen by
``backends/numpy_conv.py`` for stride 1, dilation 1, padding <= 2 and few channels):
forward, weight gradient and input gradient against the generic version on paddings 0-2,
asymmetric padding, channel counts off the kernels' tiles, a batch of one, strided and
channel-major inputs, float32 and float64; a given weight-gradient slot is filled, on
this path and on im2col's, also when no reshape can view it; the same bits on one thread
and two; the shapes it is not used for; a float64 gradient check of a Conv2d layer that
runs it.
"""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend, jit, numpy_conv
from tensornet.nn import functional as F

from test_cpu_kernels import DTYPES, _close_sums, _images, thread_count

pytest.importorskip("numba")
CPU = get_backend("cpu")


@pytest.fixture
def direct_calls(monkeypatch):
    """The direct kernels' calls by name (the numba kernels switched on)."""
    with jit.switched(True):
        direct = jit.kernels("direct")
        calls = []
        for name in ("forward", "weight_grad"):
            original = getattr(direct, name)

            def counted(*args, _name=name, _original=original):
                calls.append(_name)
                return _original(*args)
            monkeypatch.setattr(direct, name, counted)
        yield calls


GEOMETRIES = [  # (x shape, C_out, padding)
    ((4, 8, 14, 14), 16, ((1, 1), (1, 1))),   # the benchmark CNN's second conv
    ((3, 5, 7, 9), 7, ((0, 0), (0, 0))),      # no padding, odd sizes and channels
    ((2, 6, 6, 5), 3, ((2, 2), (2, 2))),      # padding 2: the input gradient pads by 0
    ((2, 5, 5, 6), 5, ((0, 2), (1, 0))),      # asymmetric padding
    ((1, 16, 3, 3), 16, ((1, 1), (1, 1))),    # a batch of one, the largest channels
    ((2, 9, 1, 1), 1, ((1, 1), (1, 1))),      # 1x1 images, one output channel
]


def _conv(geometry, dtype, layout, weight_grad_out=True, input_grad=True, seed=0):
    shape, c_out, padding = geometry
    rng = np.random.default_rng(seed + 7)
    x = _images(shape, dtype, layout, seed)
    weight = rng.standard_normal((c_out, shape[1], 3, 3)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    y, cache = F.conv2d(x, weight, bias, (1, 1), padding, (1, 1), 1)
    grad = _images(y.shape, dtype, "channel_major", seed + 1)  # as BatchNorm gives it
    slot = np.full(weight.shape, np.nan, dtype) if weight_grad_out else None
    dx, dw = F.conv2d_backward(grad, cache, weight, (1, 1), padding, (1, 1), 1,
                               weight_grad_out=slot, input_grad=input_grad)
    assert slot is None or dw is slot
    ref_y, ref_cache = F.conv2d.generic(CPU, x, weight, bias, (1, 1), padding, (1, 1), 1)
    ref_dx, ref_dw = F.conv2d_backward.generic(CPU, grad, ref_cache, weight, (1, 1),
                                               padding, (1, 1), 1)
    return (y, dx, dw), (ref_y, ref_dx, ref_dw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("layout", ["contiguous", "channel_major", "strided"])
def test_direct_conv_runs_and_matches_generic(direct_calls, dtype, geometry, layout):
    (y, dx, dw), (ref_y, ref_dx, ref_dw) = _conv(geometry, dtype, layout)
    assert direct_calls.count("forward") >= 2   # forward, and the input gradient
    assert "weight_grad" in direct_calls
    for got, want in ((y, ref_y), (dx, ref_dx), (dw, ref_dw)):
        assert got.shape == want.shape and got.dtype == dtype
        _close_sums(got, want, dtype)


@pytest.mark.parametrize("weight_grad_out, input_grad", [(False, False), (True, False),
                                                        (False, True)])
def test_direct_conv_computes_only_what_is_asked(direct_calls, weight_grad_out, input_grad):
    (y, dx, dw), (ref_y, ref_dx, ref_dw) = _conv(GEOMETRIES[0], np.float64, "contiguous",
                                                 weight_grad_out, input_grad)
    assert (dx is None) != input_grad
    _close_sums(dw, ref_dw, np.float64)
    if input_grad:
        _close_sums(dx, ref_dx, np.float64)


@pytest.mark.parametrize("c_in, stride, direct", [
    (5, (1, 1), True),    # the direct kernels
    (2, (2, 2), False),   # im2col blocks, the few-rows kernel (18 rows)
    (6, (2, 2), False),   # im2col blocks, BLAS parts (54 rows)
])
def test_conv2d_fills_a_weight_grad_slot_no_reshape_can_view(direct_calls, c_in, stride,
                                                            direct):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, c_in, 7, 9))
    weight = rng.standard_normal((7, c_in, 3, 3))
    padding = ((0, 0), (0, 0))
    y, cache = F.conv2d(x, weight, None, stride, padding, (1, 1), 1)
    grad = rng.standard_normal(y.shape)
    wide = np.full((7, c_in, 3, 6), np.nan)
    slot = wide[..., :3]   # rows 6 apart, 3 long: reshaping it to (7, -1) copies
    dx, dw = F.conv2d_backward(grad, cache, weight, stride, padding, (1, 1), 1,
                               weight_grad_out=slot)
    assert dw is slot and ("weight_grad" in direct_calls) == direct
    _, ref_cache = F.conv2d.generic(CPU, x, weight, None, stride, padding, (1, 1), 1)
    ref_dw = F.conv2d_backward.generic(CPU, grad, ref_cache, weight, stride, padding,
                                       (1, 1), 1)[1]
    _close_sums(slot, ref_dw, np.float64)
    assert np.isnan(wide[..., 3:]).all()   # nothing written beside the view


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[3]])
def test_direct_conv_is_the_same_on_one_thread_and_two(direct_calls, geometry, monkeypatch):
    monkeypatch.setattr(jit, "CHUNK_MIN", 1)   # every kernel split over the threads
    with thread_count(1):
        one = _conv(geometry, np.float32, "contiguous")[0]
        again = _conv(geometry, np.float32, "contiguous")[0]
    with thread_count(2):
        two = _conv(geometry, np.float32, "contiguous")[0]
    assert direct_calls
    for a, b, c in zip(one, again, two):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("c_in, c_out, kernel, stride, padding, dilation", [
    (8, 17, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),   # too many output channels
    (17, 8, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),   # too many input channels
    (8, 8, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),    # stride 2
    (8, 8, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),    # dilation 2
    (8, 8, (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),    # 5x5
    (8, 8, (3, 3), (1, 1), ((3, 3), (3, 3)), (1, 1)),    # padding 3
])
def test_direct_conv_is_not_used_beyond_its_shapes(direct_calls, c_in, c_out, kernel,
                                                   stride, padding, dilation):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, c_in, 9, 9))
    weight = rng.standard_normal((c_out, c_in) + kernel)
    y, cache = F.conv2d(x, weight, None, stride, padding, dilation, 1)
    F.conv2d_backward(rng.standard_normal(y.shape), cache, weight, stride, padding,
                      dilation, 1)
    assert not direct_calls


def test_direct_conv_leaves_small_parts_to_the_other_kernels(direct_calls):
    """One input channel: the forward runs direct; the weight gradient (9 rows) takes the
    few-rows kernel and the input gradient im2col's path, which measured faster there."""
    (y, dx, dw), (ref_y, ref_dx, ref_dw) = _conv(((3, 1, 10, 10), 8, ((1, 1), (1, 1))),
                                                 np.float64, "contiguous")
    assert direct_calls == ["forward"]
    for got, want in ((y, ref_y), (dx, ref_dx), (dw, ref_dw)):
        _close_sums(got, want, np.float64)


def test_conv2d_layer_on_the_direct_kernels_passes_gradcheck(direct_calls):
    layer = tn.nn.Conv2d(5, 6, 3, padding=1, dtype="float64")
    x = np.random.default_rng(5).standard_normal((2, 5, 6, 7))
    assert tn.gradcheck(layer, x)
    assert "forward" in direct_calls and "weight_grad" in direct_calls
