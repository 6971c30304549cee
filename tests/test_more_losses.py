"""SoftMarginLoss, MultiLabelSoftMarginLoss, HingeEmbeddingLoss, PoissonNLLLoss and
MultiLabelMarginLoss as torch's: value and gradient against torch on identical host inputs
(huge scores, zeros, the kinks of the hinges, targets at the edges) in float64 and
float32, on the CPU and strict backends, every reduction ("batchmean" as torch's sum over
N); float64 gradchecks away from the kinks; the target checks; where they differ from
torch (SoftMarginLoss stays finite, -1/1 targets are checked)."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

from torch_reference import compare_loss, torch_or_skip

N, C = 6, 4
WEIGHT = [0.5, 2.0, 1.0, 0.25]


def _data(rng):
    """Host inputs, float64. Row 0 of the scores is hostile (1e4, -1e4, 0, 1); row 1 puts
    x at both hinge margins (0.7 and 1) with y = -1; row 2 holds a MultiLabelMarginLoss
    kink (1 - x[0] + x[1] = 0 exactly, the target being class 0); row 3 has a target
    listed twice."""
    x = rng.standard_normal((N, C)) * 2.0
    x[0] = (1e4, -1e4, 0.0, 1.0)
    x[1] = (0.7, 1.0, -0.0, 0.5)
    x[2] = (1.5, 0.5, 0.25, -2.0)
    x[3] = (0.2, 0.4, -0.3, 0.1)  # the repeated target class 1 has hinges > 0
    signs = np.where(rng.random((N, C)) < 0.5, -1.0, 1.0)
    signs[0] = (1.0, -1.0, 1.0, -1.0)  # -y x = -1e4: torch's log1p(exp(-y x)) is finite
    signs[1] = (-1.0, -1.0, 1.0, -1.0)
    binary = (rng.random((N, C)) < 0.5).astype(np.float64)
    binary[0] = (1.0, 1.0, 0.0, 0.0)  # each huge logit with a right and a wrong label
    binary[3] = rng.uniform(size=C)  # soft labels
    lists = np.array([[0, -1, 3, 1],  # one target; what follows the -1 does not count
                      [3, 0, -1, 1],
                      [0, 3, -1, -1],
                      [1, 1, 2, -1],  # a repeated index counts twice, as in torch
                      [0, 1, 2, 3],  # every class a target: no pair
                      [-1, 0, 1, 2]])  # no target
    counts = rng.poisson(2.0, (N, C)).astype(np.float64)
    counts[0] = (0.0, 1.0, 2.0, 1.5)  # full: Stirling's term for y > 1 only
    log_rates = np.clip(x, -1e4, 20.0)  # exp(1e4) is inf: tested on its own
    rates = np.abs(x)
    rates[0] = (0.0, 1e4, 1e-9, 3.0)  # x = 0: the eps
    return {"scores": x, "signs": signs, "binary": binary, "lists": lists,
            "counts": counts, "log_rates": log_rates, "rates": rates}


def _t(torch, values):
    return torch.tensor(values, dtype=torch.float64)


# name -> (tensornet loss(reduction), torch loss(torch, reduction), pred key, target key)
CASES = {
    "SoftMargin": (lambda r: nn.SoftMarginLoss(r),
                   lambda t, r: t.nn.SoftMarginLoss(reduction=r), "scores", "signs"),
    "MultiLabelSoftMargin": (lambda r: nn.MultiLabelSoftMarginLoss(reduction=r),
                             lambda t, r: t.nn.MultiLabelSoftMarginLoss(reduction=r),
                             "scores", "binary"),
    "MultiLabelSoftMargin-weight": (
        lambda r: nn.MultiLabelSoftMarginLoss(WEIGHT, reduction=r),
        lambda t, r: t.nn.MultiLabelSoftMarginLoss(_t(t, WEIGHT), reduction=r),
        "scores", "binary"),
    "MultiLabelSoftMargin-sample-weight": (
        lambda r: nn.MultiLabelSoftMarginLoss(np.arange(1.0, N + 1)[:, None], reduction=r),
        lambda t, r: t.nn.MultiLabelSoftMarginLoss(_t(t, np.arange(1.0, N + 1)[:, None]),
                                                   reduction=r),
        "scores", "binary"),
    "HingeEmbedding": (lambda r: nn.HingeEmbeddingLoss(reduction=r),
                       lambda t, r: t.nn.HingeEmbeddingLoss(reduction=r), "scores", "signs"),
    "HingeEmbedding-0.7": (lambda r: nn.HingeEmbeddingLoss(0.7, reduction=r),
                           lambda t, r: t.nn.HingeEmbeddingLoss(0.7, reduction=r),
                           "scores", "signs"),
    "PoissonNLL": (lambda r: nn.PoissonNLLLoss(reduction=r),
                   lambda t, r: t.nn.PoissonNLLLoss(reduction=r), "log_rates", "counts"),
    "PoissonNLL-full": (lambda r: nn.PoissonNLLLoss(full=True, reduction=r),
                        lambda t, r: t.nn.PoissonNLLLoss(full=True, reduction=r),
                        "log_rates", "counts"),
    "PoissonNLL-rates-full": (
        lambda r: nn.PoissonNLLLoss(log_input=False, full=True, eps=1e-6, reduction=r),
        lambda t, r: t.nn.PoissonNLLLoss(log_input=False, full=True, eps=1e-6, reduction=r),
        "rates", "counts"),
    "PoissonNLL-rates": (lambda r: nn.PoissonNLLLoss(False, reduction=r),
                         lambda t, r: t.nn.PoissonNLLLoss(False, reduction=r),
                         "rates", "counts"),
    "MultiLabelMargin": (lambda r: nn.MultiLabelMarginLoss(r),
                         lambda t, r: t.nn.MultiLabelMarginLoss(reduction=r), "scores", "lists"),
}


def _torch_loss(torch, name, reduction):
    """torch's loss; "batchmean" (tensornet's, for every loss) as its sum over N."""
    make_torch = CASES[name][1]
    if reduction != "batchmean":
        return make_torch(torch, reduction)
    summed = make_torch(torch, "sum")
    return lambda pred, target: summed(pred, target) / pred.shape[0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("dtype, rtol, atol", [("float64", 1e-12, 1e-300),
                                               ("float32", 1e-5, 1e-6)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, device, dtype, rtol, atol, reduction, rng):
    """Value and d loss / d pred against torch's autograd, each in the prediction's dtype
    (the targets too; MultiLabelMarginLoss's stay int64). The float32 atol covers the
    sums' rounding (a mean over terms of 1e4). PoissonNLLLoss on rates: the gradient
    ``1 - y / (x + eps)`` cancels where the rate meets the count, and torch subtracts
    after scaling by the output gradient, here before: the last bits of terms of about 1
    differ (an atol of 1e-15)."""
    torch = torch_or_skip()
    if CASES[name][2] == "rates" and dtype == "float64":
        atol = 1e-15
    data = _data(rng)
    pred, target = (data[key] for key in CASES[name][2:])
    pred = pred.astype(dtype)
    if target.dtype.kind == "f":
        target = target.astype(dtype)
    loss = CASES[name][0](reduction)
    compare_loss(loss, _torch_loss(torch, name, reduction), pred, target, device,
                 rtol=rtol, atol=atol)
    backend = get_backend(device)
    out = loss(backend.asarray(pred), backend.asarray(target))
    grad = loss.backward(backend.asarray(np.ones(tuple(out.shape), dtype))
                         if reduction == "none" else None)
    assert tn.asnumpy(out).dtype == tn.asnumpy(grad).dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][3] != "lists"])
@pytest.mark.parametrize("target_dtype", ["float64", "int64"])
def test_float32_predictions_with_float64_or_integer_targets(name, target_dtype, rng):
    """As the other losses (and torch): the target is cast to the predictions' dtype, so a
    float64 or integer target leaks no float64 into a float32 model."""
    data = _data(rng)
    pred, target = (data[key] for key in CASES[name][2:])
    target = np.round(target).astype(target_dtype)
    loss = CASES[name][0]("mean")
    value = loss(pred.astype(np.float32), target)
    assert value.dtype == np.float32 and loss.backward().dtype == np.float32
    reference = CASES[name][0]("mean")
    assert float(value) == pytest.approx(float(reference(pred.astype(np.float32),
                                                         target.astype(np.float32))), rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "none", "batchmean"])
@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name, reduction, device, rng):
    """float64 central differences, on inputs a step away from every kink (the hostile
    rows of ``_data`` sit on them)."""
    data = _data(rng)
    pred, target = (data[key] for key in CASES[name][2:])
    pred = rng.standard_normal(pred.shape) * 1.5
    if CASES[name][2] == "rates":
        pred = np.abs(pred) + 0.1
    kinks = np.concatenate([[0.7, 1.0, -0.7, -1.0], (pred[:, :, None] - pred[:, None, :]
                                                     + 1.0).reshape(-1)])
    assert np.min(np.abs(pred.reshape(-1)[:, None] - kinks[:4])) > 1e-3
    assert np.min(np.abs(kinks[4:])) > 1e-3  # MultiLabelMarginLoss's 1 - x_j + x_i
    b = get_backend(device)
    assert tn.gradcheck(CASES[name][0](reduction), (b.asarray(pred), b.asarray(target)))


def test_multi_label_margin_takes_one_unbatched_sample_as_torch(device, rng):
    torch = torch_or_skip()
    x = rng.standard_normal(5)
    target = np.array([4, 0, -1, 2, 1])  # classes 4 and 0; 2 and 1 follow the -1
    for reduction in ("mean", "sum", "none"):
        compare_loss(nn.MultiLabelMarginLoss(reduction), torch.nn.MultiLabelMarginLoss(
            reduction=reduction), x, target, device, rtol=1e-12, atol=1e-300)


def test_multi_label_soft_margin_takes_a_class_axis_last_as_torch(device, rng):
    torch = torch_or_skip()
    x, y = rng.standard_normal((3, 2, C)), (rng.random((3, 2, C)) < 0.5) * 1.0
    for reduction in ("mean", "none"):
        compare_loss(nn.MultiLabelSoftMarginLoss(WEIGHT, reduction=reduction),
                     torch.nn.MultiLabelSoftMarginLoss(_t(torch, WEIGHT), reduction=reduction),
                     x, y, device, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("make, pred, target", [
    (lambda: nn.SoftMarginLoss("none"), np.array(0.3), np.array(-1.0)),
    (lambda: nn.HingeEmbeddingLoss(reduction="none"), np.array(0.3), np.array(-1.0)),
    (lambda: nn.PoissonNLLLoss(reduction="none"), np.array(0.3), np.array(2.0)),
    (lambda: nn.MultiLabelMarginLoss("none"), np.array([0.3, 0.5, -0.2]), np.array([1, -1, 0])),
    (lambda: nn.MultiLabelSoftMarginLoss(reduction="none"), np.array([0.3, -2.0]),
     np.array([1.0, 0.0])),
    (lambda: nn.CrossEntropyLoss(reduction="none"), np.array([0.3, -2.0]), np.array(1)),
    (lambda: nn.NLLLoss(reduction="none"), np.array([-0.3, -2.0]), np.array(1))])
@pytest.mark.parametrize("upstream", [2.5, np.float64(2.5), np.float32(2.5)])
def test_a_0d_loss_takes_any_number_as_grad_output_in_the_predictions_dtype(
        make, pred, target, upstream):
    """reduction='none' of one unbatched sample: a Python or NumPy number scales the
    gradient; a NumPy float64 scalar leaks no float64 into a float32 model (NumPy's scalars
    promote where Python's do not)."""
    pred = pred.astype(np.float32)
    loss = make()
    loss(pred, target)
    unit = loss.backward()
    loss(pred, target)
    grad = loss.backward(upstream)
    assert grad.dtype == np.float32 and grad.shape == pred.shape
    np.testing.assert_allclose(grad, 2.5 * unit, rtol=1e-6)


HUGE = [1e30, -1e30, 1e4, -1e4, 800.0, -800.0, 100.0, -100.0, 30.0, -30.0, 0.5, 0.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_soft_margin_stays_finite_where_torch_overflows(device, dtype):
    """torch computes log1p(exp(-y x)): inf beyond -y x of 88.7 in float32 (709.8 in
    float64), and a NaN gradient. Here softplus(-y x) keeps the value -y x and the gradient
    -y, without a NumPy warning. The reference is NumPy's logaddexp(0, -y x) in float64
    and the gradient -y exp(-logaddexp(0, y x)) (torch's stable binary cross-entropy on
    logits is no reference: it rounds log(1 + 9e-14) to 9.24e-14, and to 0 in float32);
    where torch's own SoftMarginLoss is finite it agrees too."""
    torch = torch_or_skip()
    x = np.array(HUGE + HUGE, dtype=dtype)
    y = np.array([1.0] * len(HUGE) + [-1.0] * len(HUGE), dtype=dtype)
    backend = get_backend(device)
    loss = nn.SoftMarginLoss(reduction="none")
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = tn.asnumpy(loss(backend.asarray(x), backend.asarray(y)))
        grad = tn.asnumpy(loss.backward(backend.asarray(np.ones_like(x))))
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    tol = dict(rtol=2e-6 if dtype == "float32" else 1e-13, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(value, np.logaddexp(0.0, -y64 * x64), **tol)
    np.testing.assert_allclose(grad, -y64 * np.exp(-np.logaddexp(0.0, y64 * x64)), **tol)
    xt = torch.tensor(x, requires_grad=True)
    theirs = torch.nn.SoftMarginLoss(reduction="none")(xt, torch.tensor(y))
    theirs.backward(torch.ones_like(theirs))
    finite = np.isfinite(theirs.detach().numpy())
    assert not finite.all()  # the overflow this test is about
    np.testing.assert_allclose(value[finite], theirs.detach().numpy()[finite], **tol)
    np.testing.assert_allclose(grad[finite], xt.grad.numpy()[finite], **tol)


def test_unchecked_targets_follow_torchs_formula(device):
    """With checks off (as on a GPU) targets other than -1 and 1 are computed with, as
    torch does: SoftMarginLoss's log(1 + exp(-y x)), both of HingeEmbeddingLoss's terms
    (x, and max(0, margin - x)) for a target that is neither."""
    torch = torch_or_skip()
    x = np.array([0.3, -1.2, 2.0, 0.0, 1.0])
    y = np.array([0.0, 2.0, 0.5, -3.0, 0.0])
    for ours, theirs in [(nn.SoftMarginLoss("none", check=False),
                          torch.nn.SoftMarginLoss(reduction="none")),
                         (nn.HingeEmbeddingLoss(reduction="none", check=False),
                          torch.nn.HingeEmbeddingLoss(reduction="none"))]:
        compare_loss(ours, theirs, x, y, device, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("make", [nn.SoftMarginLoss, nn.HingeEmbeddingLoss])
def test_checked_targets_must_be_minus_one_or_one(make):
    """torch computes on with 0/1 targets (SoftMarginLoss then learns nothing from the
    zeros: log 2 and a zero gradient); with checks on they are refused, naming the fix."""
    name = make.__name__
    with pytest.raises(ValueError, match=rf"{name} expects targets of -1 or 1, got 2 other "
                                         r"values \(from 0.0 to 0.0\); for 0/1 targets pass "
                                         r"2 \* t - 1"):
        make()(np.zeros(3), np.array([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"got 1 other values \(from 2.0 to 2.0\)"):
        make()(np.zeros(2), np.array([2, -1]))


def test_multi_label_margin_target_checks_as_torch(rng):
    x = rng.standard_normal((2, 3))
    loss = nn.MultiLabelMarginLoss()
    for bad in ([[0, 5, -1], [0, -1, -1]], [[0, -1, -2], [1, -1, -1]]):
        # torch: "argument #2 'target' is out of range", after the first -1 too
        with pytest.raises(ValueError, match=r"MultiLabelMarginLoss: targets must be class "
                                             r"indices in \[0, 2\] or -1 \(padding\) for 3 "
                                             r"classes; got values from -?\d+ to \d+"):
            loss(x, np.array(bad))
    with pytest.raises(TypeError, match=r"MultiLabelMarginLoss expected integer class labels "
                                        r"of shape \(2, 3\), got float64; convert with "
                                        r"astype\('int64'\)"):
        loss(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"MultiLabelMarginLoss got labels of shape \(2, 2\) "
                                         r"for predictions of shape \(2, 3\); expected "
                                         r"\(2, 3\)"):
        loss(x, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected scores of shape \(N, C\) or \(C,\)"):
        loss(rng.standard_normal((2, 3, 4)), np.zeros((2, 3, 4), dtype=np.int64))
    # int32 (and uint8) labels are taken (torch asks for int64)
    assert float(loss(x, np.array([[0, -1, 1], [2, 1, -1]], dtype=np.int32))) == \
        pytest.approx(float(loss(x, np.array([[0, -1, 1], [2, 1, -1]]))), rel=1e-15)


def test_unchecked_multi_label_margin_gives_stray_rows_nan(device, rng):
    """Checks off: a row with an index outside [-1, C) gets a NaN loss and gradient (as
    CrossEntropyLoss's stray labels), never a row that silently adds nothing."""
    x = rng.standard_normal((3, 3))
    b = get_backend(device)
    loss = nn.MultiLabelMarginLoss("none", check=False)
    value = tn.asnumpy(loss(b.asarray(x), b.asarray(np.array([[0, -1, 1], [7, -1, -1],
                                                                [2, -1, -5]]))))
    grad = tn.asnumpy(loss.backward(b.asarray(np.ones(3))))
    assert np.isnan(value[1:]).all() and np.isnan(grad[1:]).all()
    good = nn.MultiLabelMarginLoss("none")
    np.testing.assert_allclose(value[0], good(x[:1], np.array([[0, -1, 1]]))[0], rtol=1e-15)
    np.testing.assert_allclose(grad[0], good.backward(np.ones(1))[0], rtol=1e-15)


def test_shape_and_weight_errors_name_the_loss(rng):
    x = rng.standard_normal((3, 4))
    for make in (nn.SoftMarginLoss, nn.HingeEmbeddingLoss, nn.MultiLabelSoftMarginLoss,
                 nn.PoissonNLLLoss):
        # torch broadcasts a (4,) target here (HingeEmbeddingLoss) or fails in the kernel
        with pytest.raises(ValueError, match=rf"{make.__name__} got target of shape \(4,\) "
                                             r"for predictions of shape \(3, 4\); they must "
                                             r"match"):
            make()(x, np.ones(4))
        with pytest.raises(TypeError, match=rf"{make.__name__} expected a real-valued "
                                            r"target, got complex128"):
            make()(x, np.ones((3, 4), dtype=np.complex128))
        with pytest.raises(TypeError, match=rf"{make.__name__}\(.*\) expects floating-point "
                                            r"input, got int64"):
            make()(np.ones((3, 4), dtype=np.int64), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"MultiLabelSoftMarginLoss: weight of shape \(3,\) "
                                         r"does not broadcast to the predictions' shape "
                                         r"\(3, 4\)"):
        nn.MultiLabelSoftMarginLoss([1.0, 2.0, 3.0])(x, x * 0.0)
    with pytest.raises(ValueError, match=r"MultiLabelSoftMarginLoss: weight must be an array "
                                         r"of finite numbers"):
        nn.MultiLabelSoftMarginLoss([1.0, np.nan, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"MultiLabelSoftMarginLoss\(.*\) got input of shape "
                                         r"\(\); expected logits of shape \(N, C\)"):
        nn.MultiLabelSoftMarginLoss()(np.array(1.0), np.array(1.0))


@pytest.mark.parametrize("make, target", [
    (nn.MultiLabelMarginLoss, np.zeros((3, 0), np.int64)),
    (nn.MultiLabelSoftMarginLoss, np.zeros((3, 0)))])
@pytest.mark.parametrize("check", [True, False])
def test_no_classes_is_refused_naming_the_loss(make, target, check):
    """Scores (N, 0): torch refuses them for MultiLabelMarginLoss and gives NaN (0 / 0)
    for MultiLabelSoftMarginLoss; here both say what is wrong (it was a bare
    ZeroDivisionError)."""
    with pytest.raises(ValueError, match=rf"{make.__name__}\(.*\) got input of shape "
                                         r"\(3, 0\); expected at least one class"):
        make(check=check)(np.zeros((3, 0)), target)


@pytest.mark.parametrize("make, pred, target", [
    (lambda: nn.PoissonNLLLoss(), np.array([100.0, 1.0], np.float32), np.ones(2, np.float32)),
    (lambda: nn.PoissonNLLLoss(log_input=False), np.array([-1.0, 1.0]), np.ones(2)),
    (lambda: nn.SoftMarginLoss(), np.array([np.nan, 1.0]), np.ones(2)),
    (lambda: nn.HingeEmbeddingLoss(reduction="none"), np.array([np.inf, 1.0]), np.ones(2)),
    (lambda: nn.MultiLabelSoftMarginLoss(), np.array([[np.nan, 1.0]]), np.ones((1, 2))),
    (lambda: nn.MultiLabelMarginLoss(), np.array([[np.inf, 1.0]]), np.array([[1, -1]]))])
def test_non_finite_losses_raise(make, pred, target):
    """An overflowing Poisson rate (exp(100) in float32), a log of a negative rate, NaN and
    inf predictions: NonFiniteError naming the loss (torch returns inf or NaN)."""
    loss = make()
    with np.errstate(all="ignore"), pytest.raises(nn.NonFiniteError,
                                                  match=type(loss).__name__):
        loss(pred, target)


@pytest.mark.parametrize("make, match", [
    (lambda: nn.HingeEmbeddingLoss(None), "HingeEmbeddingLoss: margin must be a number, got None"),
    (lambda: nn.HingeEmbeddingLoss("1"), "HingeEmbeddingLoss: margin must be a number, got '1'"),
    (lambda: nn.PoissonNLLLoss(eps=None), "PoissonNLLLoss: eps must be a number, got None"),
    (lambda: nn.PoissonNLLLoss("False"),
     "PoissonNLLLoss: log_input must be True or False, got 'False'"),
    (lambda: nn.PoissonNLLLoss(full="no"), "PoissonNLLLoss: full must be True or False"),
    (lambda: nn.GaussianNLLLoss(full="no"), "GaussianNLLLoss: full must be True or False")])
def test_bad_options_are_refused_naming_the_loss(make, match):
    """float() raised its own TypeError for None (naming no loss) and took '1'; bool()
    made the string 'False' True."""
    with pytest.raises(ValueError, match=match):
        make()


def test_reprs():
    assert repr(nn.SoftMarginLoss()) == "SoftMarginLoss(reduction='mean')"
    assert repr(nn.HingeEmbeddingLoss(0.5)) == "HingeEmbeddingLoss(reduction='mean', margin=0.5)"
    assert repr(nn.PoissonNLLLoss(full=True)) == \
        "PoissonNLLLoss(reduction='mean', log_input=True, full=True, eps=1e-08)"
    assert repr(nn.MultiLabelSoftMarginLoss([1, 2], reduction="sum")) == \
        "MultiLabelSoftMarginLoss(reduction='sum', weight=[1.0, 2.0])"
    assert repr(nn.MultiLabelMarginLoss("none")) == "MultiLabelMarginLoss(reduction='none')"
