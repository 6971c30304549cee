"""Unflatten as torch.nn.Unflatten: shapes (with -1), the inverse of Flatten, backward,
every backend, ONNX export, errors."""
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
