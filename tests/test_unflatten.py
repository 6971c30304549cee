"""Unflatten, PixelShuffle and PixelUnshuffle as torch's: shapes (Unflatten's -1), the
inverses of Flatten and of each other, backward, every backend, ONNX export, errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn


@pytest.mark.parametrize("dim, sizes, shape", [(1, (2, 3, 4), (5, 24)), (-1, (4, -1), (2, 3, 8)),
                                               (0, (2, 3), (6, 4)), (2, (1, 5), (2, 3, 5))])
def test_unflatten_matches_torch_and_backward_restores_the_shape(dim, sizes, shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape)
    layer = nn.Unflatten(dim, sizes)
    y = layer(x)
    expected = torch.nn.Unflatten(dim, sizes)(torch.tensor(x)).numpy()
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y, expected)
    grad = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(grad), grad.reshape(shape))
    assert tn.gradcheck(nn.Unflatten(dim, sizes).double(), [x])


def test_unflatten_undoes_flatten_on_every_backend(any_device, rng):
    backend = tn.get_backend(any_device)
    x = backend.asarray(rng.standard_normal((3, 2, 4, 5)).astype(np.float32))
    model = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (2, 4, 5)))
    y = model(x)
    np.testing.assert_array_equal(tn.asnumpy(y), tn.asnumpy(x))
    assert tn.asnumpy(model.backward(y)).shape == (3, 2, 4, 5)


def test_unflatten_exports_to_onnx(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = nn.Sequential(nn.Linear(6, 12), nn.Unflatten(1, (3, -1)), nn.ReLU())
    x = rng.standard_normal((2, 6)).astype(np.float32)
    tn.onnx.export(model, x, tmp_path / "u.onnx")
    session = ort.InferenceSession(str(tmp_path / "u.onnx"), providers=["CPUExecutionProvider"])
    for batch in (x, rng.standard_normal((5, 6)).astype(np.float32)):
        np.testing.assert_allclose(session.run(None, {"input": batch})[0], model(batch),
                                   rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="Unflatten.*splits the batch axis"):
        tn.onnx.export(nn.Sequential(nn.Unflatten(0, (1, -1))), x, tmp_path / "v.onnx")


def test_unflatten_errors_name_the_layer():
    assert repr(nn.Unflatten(1, (2, 3))) == "Unflatten(dim=1, unflattened_size=(2, 3))"
    with pytest.raises(ValueError, match=r"Unflatten\(dim=1, unflattened_size=\(2, 4\)\) got "
                                         r"input of shape \(3, 6\): axis 1 has 6 values, which "
                                         r"do not split into \(2, 4\)"):
        nn.Unflatten(1, (2, 4))(np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="has no axis 2"):
        nn.Unflatten(2, (2, 3))(np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="do not split"):
        nn.Unflatten(1, (4, -1))(np.zeros((3, 6), np.float32))
    for bad in ((2, -1, -1), (0, 3), (), 6, (2.0, 3)):
        with pytest.raises(ValueError, match="unflattened_size must be a tuple of positive"):
            nn.Unflatten(1, bad)
    with pytest.raises(TypeError, match="dim must be an int"):
        nn.Unflatten(1.0, (2, 3))


# ---------------------------------------------------------------------- PixelShuffle
@pytest.mark.parametrize("r, shape", [(2, (2, 12, 3, 4)), (3, (1, 9, 2, 2)), (1, (2, 3, 4, 4))])
def test_pixel_shuffle_and_unshuffle_match_torch_and_invert_each_other(r, shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape)
    shuffle, unshuffle = nn.PixelShuffle(r), nn.PixelUnshuffle(r)
    y = shuffle(x)
    np.testing.assert_array_equal(y, torch.nn.PixelShuffle(r)(torch.tensor(x)).numpy())
    np.testing.assert_array_equal(unshuffle(y), x)
    np.testing.assert_array_equal(
        unshuffle(y), torch.nn.PixelUnshuffle(r)(torch.tensor(y)).numpy())
    grad = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(shuffle.backward(grad), unshuffle(grad))
    assert tn.gradcheck(nn.PixelShuffle(r).double(), [x])
    assert tn.gradcheck(nn.PixelUnshuffle(r).double(), [y])


def test_pixel_shuffle_on_every_backend_and_in_onnx(any_device, tmp_path, rng):
    backend = tn.get_backend(any_device)
    x = rng.standard_normal((2, 8, 3, 5)).astype(np.float32)
    layer = nn.PixelShuffle(2)
    np.testing.assert_array_equal(tn.asnumpy(layer(backend.asarray(x))), nn.PixelShuffle(2)(x))
    if any_device != "cpu":
        return
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = nn.Sequential(nn.Conv2d(8, 12, 1), nn.PixelShuffle(2), nn.PixelUnshuffle(3))
    x = rng.standard_normal((2, 8, 3, 6)).astype(np.float32)
    tn.onnx.export(model, x, tmp_path / "ps.onnx")
    session = ort.InferenceSession(str(tmp_path / "ps.onnx"), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):
        np.testing.assert_allclose(session.run(None, {"input": batch})[0], model(batch),
                                   rtol=1e-6, atol=1e-6)


def test_pixel_shuffle_errors_name_the_layer():
    assert repr(nn.PixelShuffle(2)) == "PixelShuffle(upscale_factor=2)"
    with pytest.raises(ValueError, match=r"PixelShuffle\(upscale_factor=2\) got input of shape "
                                         r"\(1, 6, 2, 2\): its 6 channels are not a multiple"):
        nn.PixelShuffle(2)(np.zeros((1, 6, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"PixelUnshuffle\(downscale_factor=2\).*H and W must "
                                         r"be multiples"):
        nn.PixelUnshuffle(2)(np.zeros((1, 1, 3, 4), np.float32))
    with pytest.raises(ValueError, match="upscale_factor must be a positive int"):
        nn.PixelShuffle(0)
    with pytest.raises(ValueError, match=r"expected \(N, C \* r\^2, H, W\)"):
        nn.PixelShuffle(2)(np.zeros((4, 2, 2), np.float32))
