"""Audit of the losses against PyTorch on hostile inputs: a mean over no samples (every
label ignored), BCELoss's weight and target checks, BCEWithLogitsLoss's pos_weight and
weight. Values and gradients in float64 against torch autograd."""
import numpy as np
import pytest

from tensornet import nn
from tensornet.backends import get_backend

from torch_reference import compare_loss, torch_or_skip


@pytest.mark.parametrize("make", [lambda: nn.CrossEntropyLoss(),
                                  lambda: nn.CrossEntropyLoss([1.0, 2.0, 3.0]),
                                  lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
                                  lambda: nn.NLLLoss()])
def test_every_label_ignored_says_so_instead_of_blaming_the_model(make, rng):
    z = rng.standard_normal((4, 3)) - 3.0
    with pytest.raises(ValueError, match=r"no samples.*ignore_index=-100") as info:
        make()(z, np.full(4, -100))
    assert "diverged" not in str(info.value)


def test_zero_summed_class_weight_says_so(rng):
    loss = nn.CrossEntropyLoss(weight=[0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"no samples.*class weight"):
        loss(rng.standard_normal((3, 3)), np.array([0, 0, 0]))


@pytest.mark.parametrize("name", ["CE", "CE-weight", "CE-smoothing", "NLL"])
def test_every_label_ignored_unchecked_matches_torch(name, device, rng):
    """Checks off (as on a GPU), with ignore_index given: torch's nan loss and its zero
    gradient (tensornet's was nan: 0 * (1 / 0)), so an all-padding batch leaves the weights
    alone."""
    torch = torch_or_skip()
    w = [1.0, 2.0, 3.0]
    tw = torch.tensor(w, dtype=torch.float64)
    ours, theirs = {
        "CE": (nn.CrossEntropyLoss(ignore_index=-1, check=False),
               torch.nn.CrossEntropyLoss(ignore_index=-1)),
        "CE-weight": (nn.CrossEntropyLoss(w, ignore_index=-1, check=False),
                      torch.nn.CrossEntropyLoss(tw, ignore_index=-1)),
        "CE-smoothing": (nn.CrossEntropyLoss(ignore_index=-1, label_smoothing=0.2,
                                             check=False),
                         torch.nn.CrossEntropyLoss(ignore_index=-1, label_smoothing=0.2)),
        "NLL": (nn.NLLLoss(ignore_index=-1, check=False), torch.nn.NLLLoss(ignore_index=-1)),
    }[name]
    z = rng.standard_normal((4, 3)) - 3.0
    with np.errstate(invalid="ignore"):
        compare_loss(ours, theirs, z, np.full(4, -1), device)


def test_bce_weight_must_broadcast_to_the_predictions():
    p, t = np.full((4, 3), 0.5), np.ones((4, 3))
    with pytest.raises(ValueError, match=r"BCELoss: weight of shape \(5,\) does not broadcast "
                                         r"to the predictions' shape \(4, 3\)"):
        nn.BCELoss(weight=np.ones(5))(p, t)
    # torch refuses a weight that would broadcast the loss to a bigger shape; here it made
    # a (2, 4, 3) gradient for (4, 3) predictions
    with pytest.raises(ValueError, match=r"weight of shape \(2, 4, 3\)"):
        nn.BCELoss(weight=np.ones((2, 4, 3)))(p, t)


def test_bce_targets_outside_0_1_are_refused_as_in_torch():
    with pytest.raises(ValueError, match=r"BCELoss expects targets in \[0, 1\], got values "
                                         r"from -1.0 to 2.0"):
        nn.BCELoss()(np.full(2, 0.5), np.array([2.0, -1.0]))


def _bce_logits_data(rng):
    x = rng.standard_normal((5, 3)) * 3
    x[0] = (1e4, -1e4, 0.0)  # huge logits stay finite
    return x, rng.uniform(size=(5, 3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [
    {"pos_weight": [0.5, 2.0, 3.0]}, {"weight": [[1.0], [2.0], [0.5], [0.0], [3.0]]},
    {"weight": [0.3, 1.0, 2.0], "pos_weight": [4.0, 1.0, 0.25]}])
def test_bce_with_logits_pos_weight_and_weight_match_torch(options, reduction, device, rng):
    torch = torch_or_skip()
    x, t = _bce_logits_data(rng)
    theirs = {k: torch.tensor(v, dtype=torch.float64) for k, v in options.items()}
    compare_loss(nn.BCEWithLogitsLoss(reduction=reduction, **options),
                 torch.nn.BCEWithLogitsLoss(reduction=reduction, **theirs), x, t, device)


def test_bce_with_logits_pos_weight_float32_and_errors(rng):
    b = get_backend("cpu")
    x = b.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    loss = nn.BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0])
    assert loss(x, x * 0.0).dtype == np.float32 and loss.backward().dtype == np.float32
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: pos_weight of shape \(2,\) does "
                                         r"not broadcast to the predictions' shape \(4, 3\)"):
        nn.BCEWithLogitsLoss(pos_weight=[1.0, 2.0])(x, x)
    with pytest.raises(ValueError, match="BCEWithLogitsLoss: pos_weight must be an array of "
                                         "finite numbers"):
        nn.BCEWithLogitsLoss(pos_weight=[1.0, np.inf])


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_unchecked_labels_out_of_range_give_nan_rows_not_stray_memory(device, compiled,
                                                                       smoothing, rng):
    """Checks off (as on a GPU): labels outside [0, C) give their rows a NaN loss and NaN
    gradients on every backend (the CUDA kernel's rule); the compiled kernel had read (and
    written) outside the row, returning a loss of ~1e-263 for -100. The default
    ignore_index -100 is no such label: its row is 0 (loss and gradient), as in PyTorch.
    The other rows keep their values."""
    from tensornet.backends import jit
    z = rng.standard_normal((5, 4))
    labels = np.array([-100, 1, 4, 3, -1])
    loss = nn.CrossEntropyLoss(reduction="none", label_smoothing=smoothing, check=False)
    good = nn.CrossEntropyLoss(reduction="none", label_smoothing=smoothing)
    backend = get_backend(device)
    with jit.switched(compiled):
        losses = np.asarray(backend.to_numpy(loss(backend.asarray(z), backend.asarray(labels))))
        grad = np.asarray(backend.to_numpy(loss.backward(backend.asarray(np.ones(5)))))
        rows = [1, 3]
        expected = np.asarray(good(z[rows], labels[rows]))
        expected_grad = np.asarray(good.backward(np.ones(2)))
    assert np.isnan(losses[[2, 4]]).all() and np.isnan(grad[[2, 4]]).all()
    assert losses[0] == 0.0 and not grad[0].any()
    np.testing.assert_allclose(losses[rows], expected, rtol=1e-12)
    np.testing.assert_allclose(grad[rows], expected_grad, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_gradient_keeps_the_sigmoid_tail(device, dtype):
    """The gradient sigmoid(x) - t keeps every digit for x << 0 (0.5 * (1 + tanh(x / 2))
    gave exactly 0 below about -17 in float32), as torch's."""
    torch = torch_or_skip()
    x = np.array([-80.0, -30.0, -17.5, -5.0, 0.0, 5.0, 30.0], dtype=dtype)
    t = np.array([0.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0], dtype=dtype)
    backend = get_backend(device)
    loss = nn.BCEWithLogitsLoss(reduction="sum")
    loss(backend.asarray(x), backend.asarray(t))
    ours = np.asarray(backend.to_numpy(loss.backward()))
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.tensor(t),
                                                         reduction="sum").backward()
    np.testing.assert_allclose(ours, tx.grad.numpy(), rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=0)


def _k_dim_cases(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    labels = rng.integers(0, 4, (3, 5, 2))
    labels[0, 0, 0] = -100
    soft = rng.random((3, 4, 5, 2))
    soft /= soft.sum(axis=1, keepdims=True)
    log_probs = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    w = [1.0, 2.0, 0.5, 3.0]
    return {
        "ce-4d": (lambda r, t: (nn.CrossEntropyLoss(reduction=r),
                                t.nn.CrossEntropyLoss(reduction=r)), x, labels),
        "ce-4d-weight-smoothing": (
            lambda r, t: (nn.CrossEntropyLoss(weight=w, label_smoothing=0.1, reduction=r),
                          t.nn.CrossEntropyLoss(weight=t.tensor(w, dtype=t.float64),
                                                label_smoothing=0.1, reduction=r)),
            x, labels),
        "ce-4d-probabilities": (lambda r, t: (nn.CrossEntropyLoss(reduction=r,
                                                                  label_smoothing=0.05),
                                              t.nn.CrossEntropyLoss(reduction=r,
                                                                    label_smoothing=0.05)),
                                x, soft),
        "ce-3d": (lambda r, t: (nn.CrossEntropyLoss(reduction=r),
                                t.nn.CrossEntropyLoss(reduction=r)),
                  x[:, :, :, 0], labels[:, :, 1] % 4),
        "ce-unbatched": (lambda r, t: (nn.CrossEntropyLoss(reduction=r),
                                       t.nn.CrossEntropyLoss(reduction=r)),
                         x[0, :, 0, 0], np.array(2)),
        "nll-4d-weight": (lambda r, t: (nn.NLLLoss(weight=w, reduction=r),
                                        t.nn.NLLLoss(weight=t.tensor(w, dtype=t.float64),
                                                     reduction=r)),
                          log_probs, labels),
    }


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", ["ce-4d", "ce-4d-weight-smoothing", "ce-4d-probabilities",
                                  "ce-3d", "ce-unbatched", "nll-4d-weight"])
def test_class_losses_take_pytorchs_other_layouts(case, reduction, device, rng):
    """(N, C, d1, ...) scores with (N, d1, ...) labels (per-pixel classes) and one
    unbatched (C,) sample, as torch: value and gradient in float64 (these were refused:
    'expected logits of shape (N, C)')."""
    torch = torch_or_skip()
    make, pred, target = _k_dim_cases(rng)[case]
    ours, theirs = make(reduction, torch)
    compare_loss(ours, theirs, pred, target, device)


@pytest.mark.parametrize("case", ["ce-4d", "ce-4d-probabilities", "ce-unbatched",
                                  "nll-4d-weight"])
def test_class_losses_other_layouts_gradcheck(case, device, rng):
    import tensornet as tn
    _, pred, target = _k_dim_cases(rng)[case]
    b = get_backend(device)
    loss = {"ce-4d": nn.CrossEntropyLoss(), "ce-4d-probabilities": nn.CrossEntropyLoss(),
            "ce-unbatched": nn.CrossEntropyLoss(),
            "nll-4d-weight": nn.NLLLoss(weight=[1.0, 2.0, 0.5, 3.0])}[case]
    assert tn.gradcheck(loss, (b.asarray(pred), b.asarray(target)))


def test_class_losses_other_layouts_name_the_expected_labels(rng):
    x = rng.standard_normal((3, 4, 5))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\) for predictions of shape "
                                         r"\(3, 4, 5\); expected \(3, 5\)"):
        nn.CrossEntropyLoss()(x, np.zeros(3, dtype=np.int64))
    loss = nn.CrossEntropyLoss(reduction="none")
    loss(x, np.zeros((3, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"got grad_output of shape \(15,\); expected \(3, 5\)"):
        loss.backward(np.ones(15))
