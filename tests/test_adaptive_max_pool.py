"""AdaptiveMaxPool2d and AdaptiveMaxPool1d as torch's: values, indices and gradients against
torch on identical inputs (bins that tile, overlap, grow and keep an axis; ties, NaN, -inf),
float64 and float32, the CPU and strict backends; gradchecks; every backend; ONNX export;
reprs and errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from onnx_reference import assert_onnxruntime_matches
from tensornet import nn

SIZES_2D = [((7, 9), (3, 4)), ((5, 5), (4, 4)), ((6, 6), 1), ((7, 5), (None, 2)),
            ((4, 4), (8, 8)), ((8, 6), (4, 3)), ((13, 11), (5, 7)), ((3, 10), (3, 1))]


def _torch_pool(torch, x, output_size, grad):
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.adaptive_max_pool2d(xt, output_size, return_indices=True)
    yt.backward(torch.tensor(grad))
    return yt.detach().numpy(), it.numpy(), xt.grad.numpy()


@pytest.mark.parametrize("spatial, output_size", SIZES_2D)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_adaptive_max_pool2d_matches_torch(spatial, output_size, dtype, device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3) + spatial).astype(dtype)
    x[0, 0, 0, :3] = x[0, 0, 0, 1]  # ties: the first maximum in row-major order
    x[1, 2] = 0.5  # a constant plane: every bin's first pixel
    backend = tn.get_backend(device)
    layer = nn.AdaptiveMaxPool2d(output_size, return_indices=True).to(device)
    y, indices = layer(backend.asarray(x))
    grad = rng.standard_normal(tuple(y.shape)).astype(dtype)
    dx = layer.backward(backend.asarray(grad))
    expected_y, expected_indices, expected_dx = _torch_pool(torch, x, output_size, grad)
    assert tn.asnumpy(y).dtype == np.dtype(dtype) and tn.asnumpy(dx).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(tn.asnumpy(y), expected_y)  # a maximum is a copy
    np.testing.assert_array_equal(tn.asnumpy(indices), expected_indices)
    assert tn.asnumpy(indices).dtype == np.int64
    np.testing.assert_allclose(tn.asnumpy(dx), expected_dx, rtol=1e-6, atol=1e-6)


def test_overlapping_bins_sharing_a_maximum_add_their_gradients(rng):
    # 5 -> 3: bins [0, 2), [1, 4), [3, 5); a maximum at 1 serves the first two bins
    torch = pytest.importorskip("torch")
    x = np.array([[[[0.0, 9.0, 1.0, 8.0, 2.0]]]])
    layer = nn.AdaptiveMaxPool2d((1, 3))
    y = layer(x)
    np.testing.assert_array_equal(y, [[[[9.0, 9.0, 8.0]]]])
    dx = layer.backward(np.array([[[[1.0, 10.0, 100.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0.0, 11.0, 0.0, 100.0, 0.0]]]])
    _, _, expected = _torch_pool(torch, x, (1, 3), np.array([[[[1.0, 10.0, 100.0]]]]))
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("plane", [
    [[1.0, np.nan, 3.0, np.nan, 2.0]], [[np.nan, 3.0], [np.nan, 0.0]],
    [[-np.inf, -np.inf, -np.inf]], [[np.inf, 1.0, np.inf]], [[2.0, np.nan], [np.inf, np.nan]]])
@pytest.mark.parametrize("output_size", [1, (1, 2)])
def test_nan_and_infinities_as_torch(plane, output_size):
    """A bin holding NaN gives NaN at its last NaN (PyTorch's CPU kernel takes a NaN as a
    new maximum); a bin of -inf gives its first pixel."""
    torch = pytest.importorskip("torch")
    x = np.array(plane)[None, None]
    y, indices = nn.AdaptiveMaxPool2d(output_size, return_indices=True)(x)
    expected_y, expected_indices = torch.nn.functional.adaptive_max_pool2d(
        torch.tensor(x), output_size, return_indices=True)
    np.testing.assert_array_equal(y, expected_y.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())


@pytest.mark.parametrize("length, output_size", [(8, 3), (7, 7), (5, 1), (4, 9), (12, 4)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_adaptive_max_pool1d_matches_torch(length, output_size, device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, length)).astype(np.float32)
    backend = tn.get_backend(device)
    layer = nn.AdaptiveMaxPool1d(output_size, return_indices=True).to(device)
    y, indices = layer(backend.asarray(x))
    grad = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    dx = layer.backward(backend.asarray(grad))
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.adaptive_max_pool1d(xt, output_size, return_indices=True)
    yt.backward(torch.tensor(grad))
    np.testing.assert_array_equal(tn.asnumpy(y), yt.detach().numpy())
    np.testing.assert_array_equal(tn.asnumpy(indices), it.numpy())
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert tuple(indices.shape) == (2, 3, output_size)


@pytest.mark.parametrize("layer, shape", [(nn.AdaptiveMaxPool2d((3, 2)), (2, 2, 7, 5)),
                                          (nn.AdaptiveMaxPool2d(1), (2, 3, 4, 4)),
                                          (nn.AdaptiveMaxPool1d(4), (2, 3, 9))])
def test_adaptive_max_pool_gradcheck(layer, shape, rng):
    # distinct values: a max pool's gradient is not smooth at ties
    x = rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0
    assert tn.gradcheck(layer.double(), [x])


@pytest.mark.parametrize("make, shape", [(lambda: nn.AdaptiveMaxPool2d((3, 4)), (2, 3, 7, 9)),
                                         (lambda: nn.AdaptiveMaxPool1d(3), (2, 3, 8))])
def test_adaptive_max_pool_agrees_across_backends(make, shape, any_device, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    ref, layer = make(), make()
    backend = tn.get_backend(any_device)
    y_ref, y = ref(x), layer(backend.asarray(x))
    grad = rng.standard_normal(tuple(y_ref.shape)).astype(np.float32)
    dx_ref, dx = ref.backward(grad), layer.backward(backend.asarray(grad))
    np.testing.assert_array_equal(tn.asnumpy(y), y_ref)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-6, atol=1e-6)
    assert tn.asnumpy(dx).dtype == np.float32


def test_indices_feed_max_unpool2d(rng):
    """The indices are per-plane ``h * W + w``, what MaxUnpool2d takes: unpooling puts each
    maximum back where it came from."""
    x = rng.standard_normal((2, 3, 6, 6))
    y, indices = nn.AdaptiveMaxPool2d(3, return_indices=True)(x)
    restored = nn.MaxUnpool2d(2)(y, indices)
    plane = restored.reshape(2, 3, -1)
    np.testing.assert_array_equal(np.take_along_axis(plane, indices.reshape(2, 3, -1), 2),
                                  y.reshape(2, 3, -1))


@pytest.mark.parametrize("layer, shape", [
    (nn.AdaptiveMaxPool2d((3, 4)), (2, 3, 7, 9)), (nn.AdaptiveMaxPool2d((4, 2)), (2, 3, 8, 8)),
    (nn.AdaptiveMaxPool2d(1), (2, 3, 5, 6)), (nn.AdaptiveMaxPool2d((None, 3)), (2, 3, 5, 7)),
    (nn.AdaptiveMaxPool2d((9, 10)), (1, 2, 7, 9)), (nn.AdaptiveMaxPool1d(3), (2, 3, 7))])
def test_adaptive_max_pool_exports_to_onnx(layer, shape, tmp_path, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    assert_onnxruntime_matches(nn.Sequential(layer), x, tmp_path / "pool.onnx", rtol=0, atol=0,
                               rng=rng)


def test_reprs_and_errors_name_the_layer():
    assert repr(nn.AdaptiveMaxPool2d((3, None))) == "AdaptiveMaxPool2d(output_size=(3, None))"
    assert repr(nn.AdaptiveMaxPool2d(2, return_indices=True)) == \
        "AdaptiveMaxPool2d(output_size=(2, 2), return_indices=True)"
    assert repr(nn.AdaptiveMaxPool1d(4, True)) == \
        "AdaptiveMaxPool1d(output_size=4, return_indices=True)"
    with pytest.raises(ValueError, match="AdaptiveMaxPool2d: output_size must be a positive int "
                                         r"or a pair of positive ints \(or None\), got 0"):
        nn.AdaptiveMaxPool2d(0)
    with pytest.raises(ValueError, match="AdaptiveMaxPool2d: output_size.*got \\(1, 2, 3\\)"):
        nn.AdaptiveMaxPool2d((1, 2, 3))
    with pytest.raises(ValueError, match="AdaptiveMaxPool1d: output_size must be an int >= 1"):
        nn.AdaptiveMaxPool1d((2, 2))
    with pytest.raises(ValueError, match="AdaptiveMaxPool2d: return_indices must be True or "
                                         "False, got 1"):
        nn.AdaptiveMaxPool2d(2, return_indices=1)
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d\(output_size=\(2, 2\)\).*"
                                         r"expected \(N, C, H, W\)"):
        nn.AdaptiveMaxPool2d(2)(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d\(output_size=\(2, 2\)\) got input "
                                         r"of shape \(1, 1, 0, 3\)"):
        nn.AdaptiveMaxPool2d(2)(np.zeros((1, 1, 0, 3), np.float32))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool1d\(output_size=2\) got input of "
                                         r"shape \(2, 3, 0\)"):
        nn.AdaptiveMaxPool1d(2)(np.zeros((2, 3, 0), np.float32))
    with pytest.raises(TypeError, match="AdaptiveMaxPool2d"):
        nn.AdaptiveMaxPool2d(2)(np.zeros((1, 1, 4, 4), np.int64))
    with pytest.raises(RuntimeError, match="AdaptiveMaxPool2d"):
        nn.AdaptiveMaxPool2d(2).backward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"ONNX export: AdaptiveMaxPool2d\(output_size=\(2, 2\), "
                                         r"return_indices=True\) cannot be exported"):
        tn.onnx.export(nn.Sequential(nn.AdaptiveMaxPool2d(2, return_indices=True)),
                       np.zeros((1, 1, 4, 4), np.float32))


@pytest.mark.parametrize("make", [lambda: nn.AdaptiveMaxPool1d(2),
                                  lambda: nn.AdaptiveMaxPool1d(2, return_indices=True),
                                  lambda: nn.MaxPool1d(2)])
def test_1d_backward_checks_and_hooks_see_the_1d_shapes(make):
    """The 1-D pools run the 2-D pool on a height-1 view; backward's checks and hooks must
    still speak of the (N, C, L) arrays the user handles (found by review: a wrong
    gradient was reported as 4-D, a list or a 2-D one crashed in the reshape)."""
    layer = make()
    seen = []
    layer.register_backward_hook(lambda m, grad_in, grad_out: seen.append(
        (tuple(grad_in.shape), tuple(grad_out.shape))))
    layer(np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"\.backward got grad_output of shape \(1, 2, 3\); "
                                         r"expected \(1, 2, 2\)"):
        layer.backward(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\.backward got grad_output of shape \(2, 2\)"):
        layer.backward(np.zeros((2, 2)))
    with pytest.raises(TypeError, match=r"\.backward expected grad_output as an array"):
        layer.backward([[0.0, 0.0]])
    assert tuple(layer.backward(np.ones((1, 2, 2))).shape) == (1, 2, 4)
    assert seen == [((1, 2, 4), (1, 2, 2))]
