"""Dropout1d and AlphaDropout as torch's: the mask's structure and scale, AlphaDropout's
two output values against torch's (it maps zeros to exactly them), its mean and variance,
eval mode, p = 0 and p = 1, backward through the cached mask, gradchecks, ONNX export (the
identity), errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tensornet as tn
from onnx_reference import assert_onnxruntime_matches
from tensornet import nn
from torch_reference import torch_or_skip

ALPHA = 1.7580993408473766


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_dropout1d_drops_whole_channels(device, rng):
    backend = tn.get_backend(device)
    layer = nn.Dropout1d(0.4)
    x = rng.standard_normal((64, 8, 5)).astype(np.float32) + 3.0  # no zero by chance
    tn.manual_seed(0)
    y = tn.asnumpy(layer(backend.asarray(x)))
    assert y.dtype == np.float32
    ratio = y / x
    np.testing.assert_allclose(ratio, ratio[:, :, :1].repeat(5, axis=2), rtol=1e-6)
    values = np.unique(np.round(ratio[:, :, 0], 5))
    np.testing.assert_allclose(values, [0.0, 1 / 0.6], rtol=1e-5)
    assert 0.3 < np.mean(ratio[:, :, 0] == 0) < 0.5
    grad = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(tn.asnumpy(layer.backward(backend.asarray(grad))), grad * ratio,
                               rtol=1e-5, atol=1e-6)
    layer.eval()
    np.testing.assert_array_equal(tn.asnumpy(layer(backend.asarray(x))), x)


def test_dropout1d_takes_one_unbatched_sample_as_torch(rng):
    """torch.nn.Dropout1d takes (C, L) too: each channel dropped whole."""
    x = rng.standard_normal((40, 6)) + 5.0
    layer = nn.Dropout1d(0.5).double()
    y = layer(x)
    ratio = y / x
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(6, axis=1), rtol=1e-12)
    assert set(np.round(ratio[:, 0], 12)) == {0.0, 2.0}
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), ratio, rtol=1e-12)


def test_alpha_dropout_values_are_torchs():
    """On zeros, torch's AlphaDropout gives exactly two values: b (kept) and b - a * alpha'
    (dropped); tensornet's are the same, and a kept x becomes a * x + b."""
    torch = torch_or_skip()
    p = 0.3
    torch.manual_seed(0)
    expected = np.unique(torch.nn.AlphaDropout(p)(torch.zeros(4000, dtype=torch.float64)).numpy())
    x = np.random.default_rng(0).standard_normal(4000)
    layer = nn.AlphaDropout(p).double()
    y = layer(np.zeros(4000))
    np.testing.assert_allclose(np.unique(y), expected, rtol=1e-15)
    a = 1 / math.sqrt((ALPHA ** 2 * p + 1) * (1 - p))
    y = layer(x)
    kept = np.asarray(layer._mask) > 0
    np.testing.assert_allclose(y[kept], a * x[kept] + ALPHA * a * p, rtol=1e-14)
    np.testing.assert_allclose(y[~kept], ALPHA * a * (p - 1), rtol=1e-14)
    grad = np.random.default_rng(1).standard_normal(4000)
    np.testing.assert_allclose(layer.backward(grad), grad * a * kept, rtol=1e-15)


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_alpha_dropout_keeps_a_selu_activations_mean_and_variance(device):
    torch = torch_or_skip()
    x = np.random.default_rng(0).standard_normal((400, 500)).astype(np.float32)
    tn.manual_seed(3)
    y = tn.asnumpy(nn.AlphaDropout(0.2)(tn.get_backend(device).asarray(x)))
    assert y.dtype == np.float32
    torch.manual_seed(3)
    reference = torch.nn.AlphaDropout(0.2)(torch.tensor(x)).numpy()
    assert abs(y.mean() - reference.mean()) < 0.01 and abs(y.std() - reference.std()) < 0.01
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1.0) < 0.01


def test_alpha_dropout_edges_and_eval(rng):
    x = rng.standard_normal((3, 4))
    for p in (0.0, 0.5):
        layer = nn.AlphaDropout(p).double().eval()
        np.testing.assert_array_equal(layer(x), x)
        np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.ones_like(x))
    np.testing.assert_array_equal(nn.AlphaDropout(0.0).double()(x), x)
    zeroed = nn.AlphaDropout(1.0).double()
    np.testing.assert_array_equal(zeroed(x), np.zeros_like(x))  # as PyTorch at p = 1
    np.testing.assert_array_equal(zeroed.backward(np.ones_like(x)), np.zeros_like(x))


@pytest.mark.parametrize("layer, shape", [(nn.Dropout1d(0.3), (4, 3, 5)),
                                          (nn.AlphaDropout(0.3), (4, 6))])
def test_gradcheck_through_the_mask(layer, shape, rng):
    assert tn.gradcheck(layer.double(), [rng.standard_normal(shape)])


def test_reprs_and_errors():
    assert repr(nn.Dropout1d(0.3)) == "Dropout1d(p=0.3)"
    assert repr(nn.AlphaDropout(0.1)) == "AlphaDropout(p=0.1)"
    with pytest.raises(ValueError, match=r"Dropout1d\(p=0.5\) got input of shape \(2, 3, 4, "
                                         r"5\); expected \(N, C, L\) or \(C, L\)"):
        nn.Dropout1d()(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"AlphaDropout: p must be a probability in \[0, 1\]"):
        nn.AlphaDropout(1.5)
    for p in (None, "0.5", True):  # float() took the string and True; None raised its own
        with pytest.raises(ValueError, match=rf"AlphaDropout: p must be a number, got {p!r}"):
            nn.AlphaDropout(p)
        with pytest.raises(ValueError, match=rf"Dropout1d: p must be a number, got {p!r}"):
            nn.Dropout1d(p)
    with pytest.raises(TypeError, match="AlphaDropout"):
        nn.AlphaDropout(0.2)(np.zeros((2, 3), np.int64))


def test_the_new_dropouts_export_as_the_identity(tmp_path, rng):
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Dropout1d(0.3), nn.Flatten(), nn.SELU(),
                          nn.AlphaDropout(0.2), nn.Linear(3 * 6, 4))
    x = rng.standard_normal((3, 2, 8)).astype(np.float32)
    assert_onnxruntime_matches(model, x, tmp_path / "dropouts.onnx", rng=rng)
