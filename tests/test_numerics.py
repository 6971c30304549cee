"""Softmax and friends at large magnitudes, NLLLoss with -inf, loss targets of another dtype,
and the warnings for probabilities fed to CrossEntropyLoss / NLLLoss."""
import math
import warnings

import numpy as np
import pytest

import tensornet as tn
import tensornet.nn.functional as F
from tensornet import nn
from tensornet.backends import get_backend


def _row(device, value, n=5, dtype=np.float32):
    return get_backend(device).asarray(np.full((2, n), value, dtype))


@pytest.mark.parametrize("value", [-1e4, 1e4, -1e7])
def test_softmax_of_a_uniform_row_is_exact_at_any_magnitude(any_device, value):
    y = tn.asnumpy(nn.Softmax()(_row(any_device, value)))
    assert np.all(y == np.float32(0.2))  # PyTorch: exactly 0.2
    assert np.all(y.sum(axis=1) == np.float32(1.0))
    log_y = tn.asnumpy(nn.LogSoftmax()(_row(any_device, value)))
    np.testing.assert_array_equal(log_y, np.float32(-math.log(5)))  # -1.609438, not -1.609375
    np.testing.assert_array_equal(tn.asnumpy(F.log_softmax(_row(any_device, value))), log_y)


def test_softmax_rows_sum_to_one_far_from_zero(any_device, rng):
    x = (rng.standard_normal((8, 10)) * 3 - 1e7).astype(np.float32)
    y = tn.asnumpy(nn.Softmax()(get_backend(any_device).asarray(x)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    ref = np.exp(x.astype(np.float64) - x.max(1, keepdims=True).astype(np.float64))
    np.testing.assert_allclose(y, ref / ref.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("value", [-1e4, -1e30])
def test_cross_entropy_of_a_uniform_row_is_log_c(any_device, value):
    b = get_backend(any_device)
    logits = _row(any_device, value, n=3)
    labels = b.asarray(np.array([0, 2]))
    loss_fn = nn.CrossEntropyLoss(check=True)
    assert float(loss_fn(logits, labels)) == pytest.approx(math.log(3), rel=1e-6)
    losses, log_probs = F.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(tn.asnumpy(losses), math.log(3), rtol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(log_probs), -math.log(3), rtol=1e-6)


@pytest.mark.gpu
def test_the_cuda_cross_entropy_kernel_keeps_log_c_at_minus_1e30():
    logits = tn.to_device(np.full((4, 3), -1e30, np.float32), "cuda")
    labels = tn.to_device(np.array([0, 1, 2, 0]), "cuda")
    losses, _ = F.softmax_cross_entropy(logits, labels)  # the fused kernel (cuda_kernels.py)
    np.testing.assert_allclose(tn.asnumpy(losses), math.log(3), rtol=1e-6)


def test_logsumexp_keeps_its_digits(device):
    x = get_backend(device).asarray(np.array([[-1e4, -1e4], [0.0, 0.0]], np.float64))
    np.testing.assert_allclose(tn.asnumpy(F.logsumexp(x, axis=1)),
                               [-1e4 + math.log(2), math.log(2)], rtol=1e-15)


def test_nll_loss_with_minus_inf_at_other_classes_is_finite(device):
    b = get_backend(device)
    log_probs = np.full((3, 4), -np.inf, np.float32)
    log_probs[np.arange(3), [1, 0, 3]] = np.log([0.5, 1.0, 0.25])
    loss_fn = nn.NLLLoss()
    loss = float(loss_fn(b.asarray(log_probs), b.asarray(np.array([1, 0, 3]))))
    assert loss == pytest.approx(-np.mean(np.log([0.5, 1.0, 0.25])), rel=1e-6)
    grad = tn.asnumpy(loss_fn.backward())
    assert np.all(np.isfinite(grad)) and grad[0, 1] == pytest.approx(-1 / 3)


@pytest.mark.parametrize("loss_type", [nn.MSELoss, nn.BCEWithLogitsLoss])
@pytest.mark.parametrize("target_dtype", ["float64", "float16", "int64", "bool"])
def test_a_target_of_another_real_dtype_is_cast_to_the_predictions(device, loss_type,
                                                                     target_dtype, rng):
    if device == "strict" and target_dtype == "float16":
        pytest.skip("array-api-strict has no float16")
    b = get_backend(device)
    pred = rng.standard_normal((4, 3)).astype(np.float32)
    target = (rng.uniform(size=(4, 3)) > 0.5).astype(target_dtype)
    loss_fn = loss_type()
    loss = loss_fn(b.asarray(pred), b.asarray(target))
    grad = loss_fn.backward()
    assert tn.asnumpy(loss).dtype == np.float32 and tn.asnumpy(grad).dtype == np.float32
    ref = loss_type()
    expected = float(ref(pred, target.astype(np.float32)))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_fit_trains_a_float32_model_on_float64_targets():
    x = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]])  # float64, as NumPy makes it
    tn.manual_seed(0)
    model = nn.Linear(3, 1)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 16)
    history = tn.fit(model, nn.MSELoss(), tn.optim.SGD(model.parameters(), lr=0.1), loader,
                     epochs=3, verbose=0)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert model.weight.dtype == "float32"


@pytest.mark.parametrize("loss_type", [nn.MSELoss, nn.BCEWithLogitsLoss])
@pytest.mark.parametrize("target", [np.ones((2, 2), np.complex64),
                                    np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object),
                                    np.array([["a", "b"], ["c", "d"]])],
                         ids=["complex", "object", "string"])
def test_complex_object_and_string_targets_are_refused_naming_the_loss(loss_type, target):
    with pytest.raises(TypeError, match=rf"{loss_type.__name__} expected a real-valued target"):
        loss_type()(np.ones((2, 2), np.float32), target)


def test_probabilities_into_cross_entropy_warn_once_naming_the_fix(rng):
    probs = tn.asnumpy(nn.Softmax()(rng.standard_normal((8, 4)).astype(np.float32)))
    labels = rng.integers(0, 4, 8)
    loss_fn = nn.CrossEntropyLoss()
    with pytest.warns(UserWarning, match="looks like probabilities.*Remove the Softmax"):
        loss_fn(probs, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_fn(probs, labels)  # once per loss
        nn.CrossEntropyLoss()(rng.standard_normal((8, 4)).astype(np.float32), labels)
        nn.CrossEntropyLoss(check=False)(probs, labels)  # checks off (the GPU default)


def test_probabilities_into_nll_loss_warn_naming_log_softmax(rng):
    z = rng.standard_normal((8, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    with pytest.warns(UserWarning, match="NLLLoss takes log-probabilities.*use LogSoftmax"):
        nn.NLLLoss()(tn.asnumpy(nn.Softmax()(z)), labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.NLLLoss()(tn.asnumpy(nn.LogSoftmax()(z)), labels)


def test_the_probability_check_reads_the_device_only_where_checks_are_on(monkeypatch, rng):
    """On a device whose reads stall it (a GPU), the look happens only with check=True."""
    from tensornet.backends import SyncPolicy
    backend = get_backend("strict")
    monkeypatch.setattr(type(backend), "sync_policy", SyncPolicy.PER_EPOCH)
    probs = backend.asarray(tn.asnumpy(nn.Softmax()(rng.standard_normal((8, 4)).astype(
        np.float32))))
    labels = backend.asarray(rng.integers(0, 4, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.CrossEntropyLoss()(probs, labels)
    with pytest.warns(UserWarning, match="looks like probabilities"):
        nn.CrossEntropyLoss(check=True)(probs, labels)
