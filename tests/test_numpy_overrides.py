"""NumPy-backend overrides against the generic array-API versions they replace.

Each override is called on the NumPy backend next to ``F.<kernel>.generic`` (the generic
code) run on the same backend object and the same host arrays.
"""
import numpy as np
import pytest

from tensornet.backends import get_backend
from tensornet.nn import functional as F

CPU = get_backend("cpu")
TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}


def _problem(dtype, label_dtype=np.int64, n=9, classes=7, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((n, classes))).astype(dtype)
    labels = rng.integers(0, classes, n).astype(label_dtype)
    labels[:2] = (0, classes - 1)  # both ends of the range
    return logits, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_softmax_cross_entropy_matches_generic(dtype, smoothing, scale):
    logits, labels = _problem(dtype, scale=scale)
    losses, log_probs = F.softmax_cross_entropy(logits, labels, smoothing)
    ref_losses, ref_log_probs = F.softmax_cross_entropy.generic(CPU, logits, labels, smoothing)
    assert losses.dtype == log_probs.dtype == dtype
    assert losses.shape == (len(labels),) and log_probs.shape == logits.shape
    np.testing.assert_allclose(losses, ref_losses, **TOL[dtype])
    np.testing.assert_allclose(log_probs, ref_log_probs, **TOL[dtype])

    scale_grad = 1.0 / len(labels)
    grad = F.softmax_cross_entropy_backward(log_probs, labels, scale_grad, smoothing)
    ref = F.softmax_cross_entropy_backward.generic(CPU, ref_log_probs, labels, scale_grad,
                                                 smoothing)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, ref, **TOL[dtype])


def test_softmax_cross_entropy_independent_formula():
    """float64 against an explicit loop-free formula written from the definition."""
    logits, labels = _problem(np.float64, n=6, classes=5, seed=3)
    eps, c = 0.2, logits.shape[1]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    target = np.full_like(p, eps / c)
    target[np.arange(len(labels)), labels] += 1.0 - eps
    losses, log_probs = F.softmax_cross_entropy(logits, labels, eps)
    np.testing.assert_allclose(losses, -(target * np.log(p)).sum(axis=1), rtol=1e-12)
    grad = F.softmax_cross_entropy_backward(log_probs, labels, 0.5, eps)
    np.testing.assert_allclose(grad, 0.5 * (p - target), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int8, np.int32, np.int64])
def test_any_integer_label_dtype(label_dtype):
    logits, labels = _problem(np.float32, label_dtype=label_dtype)
    losses, log_probs = F.softmax_cross_entropy(logits, labels, 0.1)
    ref_losses, _ = F.softmax_cross_entropy.generic(CPU, logits, labels, 0.1)
    np.testing.assert_allclose(losses, ref_losses, **TOL[np.float32])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_rows_behave_as_generic():
    logits = np.array([[0.0, np.inf, 1.0], [-np.inf, -np.inf, -np.inf], [np.nan, 0.0, 1.0],
                       [1.0, 2.0, 3.0]], dtype=np.float32)
    labels = np.array([0, 1, 2, 2])
    losses, log_probs = F.softmax_cross_entropy(logits, labels)
    ref_losses, ref_log_probs = F.softmax_cross_entropy.generic(CPU, logits, labels)
    # Rows with a non-finite logit: the loss is non-finite as in the generic version (so
    # the loss's finite check fires alike), and so are all their log-probabilities where
    # the generic version mixes NaN and -inf. The finite row is unaffected.
    np.testing.assert_array_equal(np.isfinite(losses), np.isfinite(ref_losses))
    assert not np.isfinite(losses[:3]).any() and not np.isfinite(ref_losses[:3]).any()
    assert not np.isfinite(log_probs[:3]).any()
    np.testing.assert_allclose(losses[3], ref_losses[3], rtol=1e-6)
    np.testing.assert_allclose(log_probs[3], ref_log_probs[3], rtol=1e-6)


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int8, np.int16, np.int32, np.int64])
def test_labels_in_range_matches_generic(label_dtype):
    signed = np.dtype(label_dtype).kind == "i"
    cases = [[0, 1, 2], [2, 0], [0, 3], [3], [1, 2, 200 if not signed else 100]]
    if signed:
        cases += [[-1, 0], [0, -128 if label_dtype == np.int8 else -5000]]
    for case in cases:
        labels = np.array(case, dtype=label_dtype)
        expected = bool(labels.min() >= 0 and labels.max() < 3)
        assert F.labels_in_range(labels, 3) is expected, case
        assert F.labels_in_range.generic(CPU, labels, 3) is expected, case
    strided = np.array([0, -1, 1, -1], dtype=label_dtype if signed else np.int64)[::2]
    assert F.labels_in_range(strided, 2)


_TRAIN_STEP = """
import sys
import numpy as np
import tensornet as tn
from tensornet import nn
tn.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
opt = tn.optim.Adam(model.parameters(), lr=0.1)
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 1, 4, 4)).astype(np.float32)
labels = rng.integers(0, 3, 4)
loss_fn = nn.CrossEntropyLoss()
loss = loss_fn(model(x), labels)
model.backward(loss_fn.backward(), input_grad=False)
opt.step()
np.save(sys.argv[1], np.concatenate([p.data.ravel() for p in model.parameters()]))
print(tn.get_backend("cpu").describe()["threads"])
"""


def test_a_numba_that_fails_to_import_falls_back_to_the_numpy_code(tmp_path):
    """numba installed but not importable (its releases pin the NumPy versions they take):
    one warning, then the pure-NumPy paths, as with TENSORNET_JIT=0; it used to raise the
    ImportError from the first layer's forward."""
    import os
    import subprocess
    import sys
    broken = tmp_path / "broken"
    (broken / "numba").mkdir(parents=True)
    (broken / "numba" / "__init__.py").write_text(
        'raise ImportError("Numba needs NumPy 2.3 or less")\n')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(out, **env):
        path = os.pathsep.join([*env.pop("extra_path", []), root])
        done = subprocess.run([sys.executable, "-c", _TRAIN_STEP, str(out)], cwd=root,
                              env={**os.environ, "PYTHONPATH": path, **env},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done
    broken_run = run(tmp_path / "broken.npy", extra_path=[str(broken)])
    run(tmp_path / "numpy.npy", TENSORNET_JIT="0")
    assert broken_run.stderr.count("numba is installed but does not import (ImportError: "
                                   "Numba needs NumPy 2.3 or less)") == 1, broken_run.stderr
    assert broken_run.stdout.strip().endswith("(NumPy only (no numba))")
    np.testing.assert_array_equal(np.load(tmp_path / "broken.npy"),
                                  np.load(tmp_path / "numpy.npy"))
