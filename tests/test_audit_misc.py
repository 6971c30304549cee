"""The smaller public APIs under hostile or PyTorch/Keras/scikit-learn-minded use: model
builders, toy datasets, predict, the LR range test, summary, regularizers, kfold. Each misuse
fails at once with one error naming what was expected, never a silent wrong result."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import models, nn


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("sizes", ["784", 784, [4.7, 3], [4, True, 3], [4, "8", 3], [4, None]])
def test_mlp_and_autoencoder_refuse_sizes_that_are_not_positive_integers(sizes):
    # "784" used to build Linear(7 -> 8) -> Linear(8 -> 4), [4.7, 3] a Linear(4 -> 3)
    for builder in (models.mlp, models.autoencoder):
        with pytest.raises((TypeError, ValueError), match="sizes"):
            builder(sizes=sizes)


def test_build_names_bad_specs():
    with pytest.raises(ValueError, match="unknown model"):
        models.build({"name": ["mlp"]})
    with pytest.raises(TypeError, match="kwargs"):
        models.build({"name": "mlp", "kwargs": [1]})
    with pytest.raises(ValueError, match="unknown activation"):
        models.mlp((4, 3, 2), activation=["relu"])
    with pytest.raises(ValueError, match="image_size"):
        models.cnn(image_size=3)
    assert models.build({"name": "mlp", "kwargs": {"sizes": [4.0, 3]}})[1].in_features == 4


# ---------------------------------------------------------------------- toy datasets
@pytest.mark.parametrize("make, kwargs, match", [
    (tn.data.toy_spirals, {"noise": float("nan")}, "noise"),   # was 3000 NaN coordinates
    (tn.data.toy_spirals, {"noise": -1.0}, "noise"),           # was NumPy's "scale < 0"
    (tn.data.toy_spirals, {"turns": float("inf")}, "turns"),
    (tn.data.toy_spirals, {"n": 10.5}, "n"),
    (tn.data.toy_blobs, {"std": float("nan")}, "std"),
    (tn.data.toy_blobs, {"std": -1.0}, "std"),
    (tn.data.toy_blobs, {"radius": float("nan")}, "radius"),
    (tn.data.toy_blobs, {"n": "10"}, "n"),
    (tn.data.toy_blobs, {"centers": 1}, "centers"),
])
def test_toy_datasets_refuse_bad_arguments(make, kwargs, match):
    with pytest.raises(ValueError, match=rf"{make.__name__}: .*\b{match}\b"):
        make(seed=0, **kwargs)


def test_toy_datasets_agree_with_their_docstrings():
    x, y = tn.data.toy_blobs(n=10, centers=3, seed=1)
    assert x.shape == (10, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [4, 3, 3]
    again = tn.data.toy_blobs(n=10, centers=3, seed=1)
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])
    assert np.isfinite(tn.data.toy_spirals(n=30, noise=0.0, seed=0)[0]).all()


# ---------------------------------------------------------------------- predict
@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True, "32", None])
def test_predict_refuses_a_batch_size_that_is_not_a_positive_integer(batch_size):
    # -1 used to report "predict: no input samples" for 10 samples; 0 range()'s error
    model = nn.Sequential(nn.Linear(4, 3))
    x = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match="predict: batch_size must be a positive integer"):
        tn.predict(model, x, batch_size=batch_size)


def test_predict_batches_in_eval_mode_and_restores_the_mode():
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    model.train()
    out = tn.predict(model, x, batch_size=3)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    np.testing.assert_allclose(out, model(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tn.predict(model, x, batch_size=np.int64(4)), out, atol=1e-6)


# ---------------------------------------------------------------------- lr_find
def _lr_setup():
    tn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ rng.standard_normal((3, 1))).astype(np.float32)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 16, shuffle=True, seed=0)
    return model, tn.optim.SGD(model.parameters(), lr=0.05), loader, x


@pytest.mark.parametrize("kwargs, match", [
    ({"diverge_factor": 0.5}, "diverge_factor"),   # was "the loss was non-finite"
    ({"diverge_factor": 1.0}, "diverge_factor"),
    ({"diverge_factor": float("nan")}, "diverge_factor"),
    ({"end_lr": float("inf")}, "end_lr"),          # was SGD's "lr must be finite" mid-run
    ({"num_steps": 20.5}, "num_steps"),            # was range()'s TypeError
    ({"num_steps": True}, "num_steps"),
])
def test_lr_find_refuses_bad_settings(kwargs, match):
    model, opt, loader, _ = _lr_setup()
    with pytest.raises(ValueError, match=f"lr_find: {match}"):
        tn.diagnostics.lr_find(model, nn.MSELoss(), opt, loader, **kwargs)


def test_lr_find_names_a_loader_of_bare_inputs():
    model, opt, _, x = _lr_setup()
    before = model[0].weight.data.copy()
    with pytest.raises(TypeError, match=r"lr_find: batch 1 .* \(x, y\) pairs"):
        tn.diagnostics.lr_find(model, nn.MSELoss(), opt, [x, x], num_steps=10)
    assert np.array_equal(model[0].weight.data, before)


def test_lr_find_sweeps_exponentially_and_smooths_as_documented():
    model, opt, loader, _ = _lr_setup()
    result = tn.diagnostics.lr_find(model, nn.MSELoss(), opt, loader, start_lr=1e-5,
                                    end_lr=1.0, num_steps=11, smoothing=0.5)
    np.testing.assert_allclose(result.lrs, np.logspace(-5, 0, 11)[:len(result.lrs)], rtol=1e-12)
    average, expected = 0.0, []
    for i, loss in enumerate(result.losses):
        average = 0.5 * average + 0.5 * loss
        expected.append(average / (1 - 0.5 ** (i + 1)))
    np.testing.assert_allclose(result.smoothed, expected, rtol=1e-12)
    assert result.suggested_lr == result.lr_min / 10
    assert opt.param_groups[0]["lr"] == 0.05


# ---------------------------------------------------------------------- summary
@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": -1}, "batch_size"),      # was NumPy's "negative dimensions"
    ({"batch_size": 0}, "batch_size"),       # was Conv2d's "empty batch"
    ({"batch_size": 1.5}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"input_shape": None}, "input_shape"),  # was "'NoneType' object is not iterable"
    ({"input_shape": (True, 28, 28)}, "input_shape"),
])
def test_summary_refuses_bad_shapes_and_batch_sizes(kwargs, match):
    model = models.cnn()
    kwargs = {"input_shape": (1, 28, 28), **kwargs}
    with pytest.raises(ValueError, match=f"summary: {match}"):
        tn.summary(model, print_fn=None, **kwargs)


def test_summary_of_a_failing_forward_says_what_it_ran():
    model = models.mlp()
    model.train()
    with pytest.raises(ValueError, match=r"Linear\(784 -> 256\)") as info:
        tn.summary(model, (1, 27, 28), print_fn=None)
    notes = getattr(info.value, "__notes__", [])
    assert not hasattr(info.value, "add_note") or any(
        "tn.summary" in note and "(2, 1, 27, 28)" in note for note in notes)
    assert model.training and not any(m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------------- regularizers
@pytest.mark.parametrize("make, value", [
    (tn.regularizers.L2, float("inf")),   # was accepted: an inf penalty and gradient
    (tn.regularizers.L1, float("inf")),
    (tn.regularizers.L2, "a"),            # was float()'s "could not convert string"
    (tn.regularizers.L1, None),           # was float()'s TypeError
    (tn.regularizers.L2, np.array([1.0, 2.0])),
])
def test_regularizer_factors_must_be_finite_non_negative_numbers(make, value):
    with pytest.raises(ValueError, match=f"{make.__name__}: l[12] must be >= 0 and finite"):
        make(value)


@pytest.mark.parametrize("function", ["detach", "attached", "apply", "penalty"])
def test_regularizer_functions_name_a_target_that_is_no_module(function):
    # each raised AttributeError "'int' object has no attribute 'modules'"
    with pytest.raises(TypeError, match=f"{function} expected a Module"):
        getattr(tn.regularizers, function)(3)


def test_regularizer_penalties_are_keras_formulas():
    w = np.array([[1.0, -2.0], [0.0, 3.0]])
    assert float(tn.regularizers.L1(0.1)(w)) == pytest.approx(0.1 * 6)
    assert float(tn.regularizers.L2(0.1)(w)) == pytest.approx(0.1 * 14)   # no 1/2
    assert float(tn.regularizers.L1L2(0.1, 0.2)(w)) == pytest.approx(0.6 + 0.2 * 14)
    assert tn.regularizers.L2(np.float32(0.5)).l2 == 0.5


# ---------------------------------------------------------------------- kfold
def _dataset(n=10):
    return tn.data.ArrayDataset(np.arange(n, dtype=np.float32).reshape(n, 1), np.arange(n))


def test_kfold_refuses_bad_arguments_when_called_not_when_iterated():
    # the checks used to wait for the first next(): kfold(data, k=30) returned a generator
    with pytest.raises(ValueError, match=r"k must be an integer in \[2, 10\]"):
        tn.data.kfold(_dataset(), k=30)
    with pytest.raises(ValueError, match="kfold: the dataset is empty"):
        tn.data.kfold(_dataset(0), k=2)      # was "k must be an integer in [2, 0]"
    with pytest.raises(TypeError, match="kfold expected a dataset"):
        tn.data.kfold(5, k=2)                # was "object of type 'int' has no len()"
    for seed in (-1, 1.5, "a"):              # were NumPy's SeedSequence errors
        with pytest.raises(ValueError, match="kfold: seed must be a non-negative integer"):
            tn.data.kfold(_dataset(), k=3, seed=seed)


def test_kfold_matches_scikit_learn_fold_semantics():
    # KFold(3).split(range(10)): test folds [0..3], [4..6], [7..9] without shuffling
    folds = [(t.indices.tolist(), v.indices.tolist())
             for t, v in tn.data.kfold(_dataset(), k=3, shuffle=False)]
    assert [v for _, v in folds] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert all(sorted(t + v) == list(range(10)) for t, v in folds)
    shuffled = [v.indices.tolist() for _, v in tn.data.kfold(_dataset(), k=3, seed=4)]
    assert sorted(sum(shuffled, [])) == list(range(10))
    assert [len(v) for v in shuffled] == [4, 3, 3]
    assert shuffled == [v.indices.tolist() for _, v in tn.data.kfold(_dataset(), k=3, seed=4)]


# ---------------------------------------------------------------------- NonFiniteWatch
@pytest.mark.parametrize("every", [1.5, "a", True, 0])
def test_nonfinite_watch_every_must_be_a_positive_integer(every):
    # 1.5 was silently truncated to 1, "a" raised int()'s "invalid literal"
    with pytest.raises(ValueError, match="NonFiniteWatch: every must be an integer >= 1"):
        tn.diagnostics.NonFiniteWatch(nn.Linear(2, 2), every=every)


def test_nonfinite_watch_names_a_model_that_is_no_module():
    with pytest.raises(TypeError, match="NonFiniteWatch expected a tensornet Module"):
        tn.diagnostics.watch_nonfinite(3).attach()   # was "'int' has no attribute 'named_modules'"


def test_predict_names_a_model_that_is_no_module_and_a_0d_input():
    x = np.ones((4, 2), np.float32)
    with pytest.raises(TypeError, match="predict: model must be a tensornet module"):
        tn.predict(3, x)                      # was "'int' object has no attribute 'parameters'"
    with pytest.raises(ValueError, match=r"predict: data must have a batch axis"):
        tn.predict(nn.Linear(2, 2), np.float32(1.0))   # was IndexError "tuple index out of range"


def test_summary_between_a_forward_and_its_backward_changes_nothing():
    """summary ran its zero batch with the caches on and then cleared them: a backward
    after it failed. It now runs under no_grad, and every module keeps its own mode."""
    import tensornet as tn
    from tensornet import nn

    def step(with_summary):
        tn.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        model[1].eval()  # a frozen BatchNorm inside a training model
        x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
        out = model(x)
        if with_summary:
            tn.summary(model, (4,), print_fn=None)
        model.backward(np.ones_like(out))
        return [np.asarray(p.grad) for p in model.parameters()], \
            [m.training for m in model.modules()]

    grads, modes = step(True)
    ref_grads, ref_modes = step(False)
    assert modes == ref_modes == [True, True, False, True, True]
    for g, r in zip(grads, ref_grads):
        np.testing.assert_array_equal(g, r)


def test_kfold_refuses_a_seed_it_would_ignore():
    """shuffle=False with a seed: the seed changed nothing, silently (scikit-learn's KFold
    raises)."""
    import tensornet as tn
    data = tn.data.ArrayDataset(np.zeros((10, 2), np.float32), np.zeros(10, np.int64))
    with pytest.raises(ValueError, match=r"seed=0 has no effect with shuffle=False"):
        tn.data.kfold(data, k=2, seed=0, shuffle=False)
    assert len(list(tn.data.kfold(data, k=2, shuffle=False))) == 2
