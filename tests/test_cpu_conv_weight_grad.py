"""The NumPy backend's compiled Conv2d weight gradient for few column rows
(``backends/jit/conv.py``, used by ``backends/numpy_conv.py``): against a float64 product
and the generic version, on tile edges, several chunks and blocks, every geometry; the
same bits on one thread and two, and run to run; BLAS for the shapes it is not used for.
"""
import numpy as np
import pytest

from tensornet.backends import get_backend, jit, numpy_conv
from tensornet.nn import functional as F

from test_cpu_kernels import DTYPES, TOL, _close_sums, _images, thread_count

pytest.importorskip("numba")
CPU = get_backend("cpu")


@pytest.fixture
def calls(monkeypatch):
    """The kernel's calls, counted (the numba kernels switched on)."""
    with jit.switched(True):
        conv = jit.kernels("conv")
        count = []
        original = conv.add_weight_grad

        def counted(*args):
            count.append(args[0].shape)
            return original(*args)
        monkeypatch.setattr(conv, "add_weight_grad", counted)
        yield count


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, c_out, size", [
    (1, 1, 1), (3, 5, 7), (9, 8, 4096), (13, 6, 4097), (9, 8, 10001), (36, 64, 5000),
    (4, 4, 12288), (5, 3, 300)])
def test_add_weight_grad_matches_a_float64_product(dtype, rows, c_out, size):
    conv = jit.kernels("conv")
    rng = np.random.default_rng(rows * 100 + c_out)
    cols = rng.standard_normal((rows, size)).astype(dtype)
    first = 3
    g = rng.standard_normal((c_out, first + size + 2)).astype(dtype)
    start = rng.standard_normal((c_out, rows)).astype(dtype)
    out = start.copy()
    conv.add_weight_grad(cols, g, first, out)   # adds to what is there
    want = start.astype(np.float64) + g[:, first:first + size].astype(np.float64) \
        @ cols.T.astype(np.float64)
    _close_sums(out, want, dtype)
    again = start.copy()
    conv.add_weight_grad(cols, g, first, again)
    np.testing.assert_array_equal(out, again)


GEOMETRIES = [  # (x shape, C_out, kernel, stride, padding, dilation): rows <= 36
    ((5, 1, 28, 28), 8, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),   # the benchmark's conv 1
    ((3, 3, 11, 9), 5, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),    # stride 2, odd sizes
    ((2, 2, 13, 12), 9, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),   # dilation 2
    ((1, 3, 9, 10), 16, (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),   # a batch of 1, no padding
    ((4, 2, 8, 7), 3, (3, 2), (1, 2), ((1, 0), (0, 1)), (1, 1)),     # asymmetric padding
    ((2, 1, 7, 7), 64, (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),    # rows 25, 64 channels
    ((3, 4, 6, 6), 1, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),     # rows 36, 1 channel
]


def _backward(geometry, dtype, weight_grad_out=True, input_grad=True):
    shape, c_out, kernel, stride, padding, dilation = geometry
    rng = np.random.default_rng(3)
    x = _images(shape, dtype, "channel_major")
    weight = rng.standard_normal((c_out, shape[1]) + kernel).astype(dtype)
    y, cache = F.conv2d(x, weight, None, stride, padding, dilation, 1)
    grad = rng.standard_normal(y.shape).astype(dtype)
    slot = np.full(weight.shape, np.nan, dtype) if weight_grad_out else None
    dx, dw = F.conv2d_backward(grad, cache, weight, stride, padding, dilation, 1,
                               weight_grad_out=slot, input_grad=input_grad)
    assert slot is None or dw is slot
    _, ref_cache = F.conv2d.generic(CPU, x, weight, None, stride, padding, dilation, 1)
    ref_dx, ref_dw = F.conv2d_backward.generic(CPU, grad, ref_cache, weight, stride,
                                               padding, dilation, 1)
    return dx, dw, ref_dx, ref_dw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("block", [1 << 19, 300])   # one block, and several
def test_conv2d_weight_grad_takes_the_kernel_and_matches_generic(calls, dtype, geometry,
                                                                 block, monkeypatch):
    monkeypatch.setattr(numpy_conv, "_BLOCK", block)
    for weight_grad_out, input_grad in [(True, True), (False, False)]:
        calls.clear()
        dx, dw, ref_dx, ref_dw = _backward(geometry, dtype, weight_grad_out, input_grad)
        assert calls, "the weight gradient did not use the kernel"
        assert dw.shape == ref_dw.shape and dw.dtype == dtype
        _close_sums(dw, ref_dw, dtype)
        if input_grad:
            _close_sums(dx, ref_dx, dtype)
        else:
            assert dx is None


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[1], GEOMETRIES[2]])
def test_conv2d_weight_grad_is_the_same_on_one_thread_and_two(calls, geometry, monkeypatch):
    monkeypatch.setattr(jit, "CHUNK_MIN", 1)   # im2col split over the threads too
    monkeypatch.setattr(numpy_conv, "_BLOCK", 1000)
    with thread_count(1):
        one = _backward(geometry, np.float32)[1]
        again = _backward(geometry, np.float32)[1]
    with thread_count(2):
        two = _backward(geometry, np.float32)[1]
    assert calls
    np.testing.assert_array_equal(one, again)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("c_in, c_out", [(5, 8), (1, 65)])   # rows 45; 65 channels
def test_conv2d_weight_grad_uses_blas_beyond_few_rows(calls, c_in, c_out, monkeypatch):
    monkeypatch.setattr(numpy_conv, "_DIRECT_IN", 0)   # (5, 8) would run the direct kernels
    geometry = ((2, c_in, 6, 5), c_out, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    dx, dw, ref_dx, ref_dw = _backward(geometry, np.float64)
    assert not calls
    np.testing.assert_allclose(dw, ref_dw, **TOL[np.float64])
