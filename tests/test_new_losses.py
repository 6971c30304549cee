"""The losses of issue 16 and the new options of CrossEntropyLoss/NLLLoss: every reduction
('none' with a per-element backward, 'batchmean'), float64 gradchecks on every CPU backend,
values and gradients against PyTorch on identical host inputs, and the errors."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

from torch_reference import compare_loss, torch_or_skip

N, C = 6, 4
WEIGHT = [0.5, 2.0, 1.0, 0.25]


def _data(rng):
    labels = rng.integers(0, C, N)
    labels[:2] = (1, 3)
    ignored = labels.copy()
    ignored[1] = -100
    logits = rng.standard_normal((N, C))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    probs = rng.dirichlet(np.ones(C), N)
    return {"logits": logits, "log_probs": log_probs, "labels": labels, "ignored": ignored,
            "in_class": np.where(np.arange(N) % 3 == 0, 2, labels), "probs": probs,
            "onehot": np.eye(C)[labels], "pred": rng.standard_normal((N, C)),
            "target": rng.standard_normal((N, C)), "p01": rng.uniform(0.02, 0.98, (N, C)),
            "t01": rng.uniform(size=(N, C)), "log_target": np.log(probs)}


def _w(torch):
    return torch.tensor(WEIGHT, dtype=torch.float64)


# name -> (tensornet loss(reduction), torch loss(torch, reduction), pred key, target key)
CASES = {
    "CE": (lambda r: nn.CrossEntropyLoss(reduction=r),
           lambda t, r: t.nn.CrossEntropyLoss(reduction=r), "logits", "labels"),
    "CE-ignore-default": (lambda r: nn.CrossEntropyLoss(reduction=r),
                          lambda t, r: t.nn.CrossEntropyLoss(reduction=r), "logits", "ignored"),
    "CE-weight-smoothing": (
        lambda r: nn.CrossEntropyLoss(WEIGHT, reduction=r, label_smoothing=0.2),
        lambda t, r: t.nn.CrossEntropyLoss(_w(t), reduction=r, label_smoothing=0.2),
        "logits", "ignored"),
    "CE-ignore-class": (
        lambda r: nn.CrossEntropyLoss(WEIGHT, ignore_index=2, reduction=r),
        lambda t, r: t.nn.CrossEntropyLoss(_w(t), ignore_index=2, reduction=r),
        "logits", "in_class"),
    "CE-probabilities": (
        lambda r: nn.CrossEntropyLoss(WEIGHT, reduction=r, label_smoothing=0.1),
        lambda t, r: t.nn.CrossEntropyLoss(_w(t), reduction=r, label_smoothing=0.1),
        "logits", "probs"),
    "CE-one-hot": (lambda r: nn.CrossEntropyLoss(reduction=r),
                   lambda t, r: t.nn.CrossEntropyLoss(reduction=r), "logits", "onehot"),
    "NLL-weight": (lambda r: nn.NLLLoss(WEIGHT, reduction=r),
                   lambda t, r: t.nn.NLLLoss(_w(t), reduction=r), "log_probs", "ignored"),
    "NLL-ignore-class": (lambda r: nn.NLLLoss(ignore_index=2, reduction=r),
                         lambda t, r: t.nn.NLLLoss(ignore_index=2, reduction=r),
                         "log_probs", "in_class"),
    "L1": (lambda r: nn.L1Loss(r), lambda t, r: t.nn.L1Loss(reduction=r), "pred", "target"),
    "SmoothL1": (lambda r: nn.SmoothL1Loss(r, beta=0.7),
                 lambda t, r: t.nn.SmoothL1Loss(reduction=r, beta=0.7), "pred", "target"),
    "SmoothL1-beta0": (lambda r: nn.SmoothL1Loss(r, beta=0.0),
                       lambda t, r: t.nn.SmoothL1Loss(reduction=r, beta=0.0), "pred", "target"),
    "Huber": (lambda r: nn.HuberLoss(r, delta=0.6),
              lambda t, r: t.nn.HuberLoss(reduction=r, delta=0.6), "pred", "target"),
    "MSE": (lambda r: nn.MSELoss(r), lambda t, r: t.nn.MSELoss(reduction=r), "pred", "target"),
    "BCE": (lambda r: nn.BCELoss(reduction=r), lambda t, r: t.nn.BCELoss(reduction=r),
            "p01", "t01"),
    "BCE-weight": (lambda r: nn.BCELoss(WEIGHT, reduction=r),
                   lambda t, r: t.nn.BCELoss(_w(t), reduction=r), "p01", "t01"),
    "BCEWithLogits": (lambda r: nn.BCEWithLogitsLoss(r),
                      lambda t, r: t.nn.BCEWithLogitsLoss(reduction=r), "pred", "t01"),
    "KLDiv": (lambda r: nn.KLDivLoss(r), lambda t, r: t.nn.KLDivLoss(reduction=r),
              "log_probs", "probs"),
    "KLDiv-log-target": (lambda r: nn.KLDivLoss(r, log_target=True),
                         lambda t, r: t.nn.KLDivLoss(reduction=r, log_target=True),
                         "log_probs", "log_target"),
    "MultiMargin": (lambda r: nn.MultiMarginLoss(reduction=r),
                    lambda t, r: t.nn.MultiMarginLoss(reduction=r), "logits", "labels"),
    "MultiMargin-p2-weight": (
        lambda r: nn.MultiMarginLoss(p=2, margin=0.7, weight=WEIGHT, reduction=r),
        lambda t, r: t.nn.MultiMarginLoss(p=2, margin=0.7, weight=_w(t), reduction=r),
        "logits", "labels"),
}


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_pytorch(name, reduction, device, rng):
    torch = torch_or_skip()
    make, make_torch, pred, target = CASES[name]
    data = _data(rng)
    compare_loss(make(reduction), make_torch(torch, reduction), data[pred], data[target],
                 device)


@pytest.mark.parametrize("reduction", ["mean", "none", "batchmean"])
@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name, reduction, device, rng):
    make, _, pred, target = CASES[name]
    data = _data(rng)
    if name.startswith("BCE"):  # keep probabilities away from 0 and 1 under the steps
        data["p01"] = np.clip(data["p01"], 0.05, 0.95)
    b = get_backend(device)
    assert tn.gradcheck(make(reduction), (b.asarray(data[pred]), b.asarray(data[target])))


def test_kl_batchmean_default_and_batchmean_everywhere(rng):
    torch = torch_or_skip()
    data = _data(rng)
    assert nn.KLDivLoss().reduction == "batchmean"
    compare_loss(nn.KLDivLoss(), torch.nn.KLDivLoss(reduction="batchmean"), data["log_probs"],
                 data["probs"], "cpu")
    # "sum per sample, mean over batch": the autoencoder's reconstruction loss
    x, y = data["pred"], data["target"]
    per_sample = ((x - y) ** 2).sum(axis=1)
    loss = nn.MSELoss(reduction="batchmean")
    assert float(loss(x, y)) == pytest.approx(per_sample.mean(), rel=1e-14)
    np.testing.assert_allclose(loss.backward(), 2 * (x - y) / N, rtol=1e-14)


def test_reduction_none_backward_needs_the_per_element_gradient(rng):
    loss = nn.L1Loss(reduction="none")
    out = loss(rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))
    assert out.shape == (3, 2)
    with pytest.raises(ValueError, match=r"needs grad_output of the per-element loss shape "
                                         r"\(3, 2\), got None"):
        loss.backward()
    with pytest.raises(ValueError, match=r"grad_output of shape \(3,\)"):
        loss.backward(np.ones(3))
    ce = nn.CrossEntropyLoss(reduction="none")
    assert ce(rng.standard_normal((5, 3)), np.array([0, 1, 2, 0, 1])).shape == (5,)
    assert ce.backward(np.ones(5)).shape == (5, 3)


def test_ignored_labels_leave_the_mean(device, rng):
    b = get_backend(device)
    z = rng.standard_normal((4, 3))
    labels = np.array([0, -100, 2, -100])
    got = float(nn.CrossEntropyLoss()(b.asarray(z), b.asarray(labels)))
    kept = nn.CrossEntropyLoss()(b.asarray(z[[0, 2]]), b.asarray(labels[[0, 2]]))
    assert got == pytest.approx(float(kept), rel=1e-12)


def test_float32_stays_float32(device, rng):
    b = get_backend(device)
    z = b.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    p = b.asarray(rng.uniform(0.1, 0.9, (4, 3)).astype(np.float32))
    labels = b.asarray(np.array([0, 2, 1, -100]))
    for loss, pred, target in [(nn.CrossEntropyLoss(WEIGHT[:3]), z, labels),
                               (nn.CrossEntropyLoss(), z, p), (nn.HuberLoss(), z, p),
                               (nn.BCELoss(), p, p), (nn.KLDivLoss(), z, p),
                               (nn.MultiMarginLoss(weight=WEIGHT[:3]), z,
                                b.asarray(np.array([0, 2, 1, 1])))]:
        assert tn.asnumpy(loss(pred, target)).dtype == np.float32, loss
        assert tn.asnumpy(loss.backward()).dtype == np.float32, loss


def test_bce_clamps_the_log_and_rejects_non_probabilities():
    loss = nn.BCELoss(reduction="sum")
    assert float(loss(np.array([0.0, 1.0]), np.array([1.0, 0.0]))) == 200.0
    with pytest.raises(ValueError, match=r"BCELoss expects probabilities in \[0, 1\].*"
                                         r"BCEWithLogitsLoss"):
        loss(np.array([0.5, 1.5]), np.array([1.0, 0.0]))


def test_errors_name_the_loss_and_what_was_expected(rng):
    z = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\] for 4 classes "
                                         r"\(or ignore_index=-100\); got labels from -1 to 2"):
        nn.CrossEntropyLoss()(z, np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="weight has 3 entries for predictions with 4 classes"):
        nn.CrossEntropyLoss(weight=[1, 2, 3])(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"got target of shape \(3, 3\) for predictions of "
                                         r"shape \(3, 4\)"):
        nn.CrossEntropyLoss()(z, np.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.HuberLoss(reduction="avg")
    with pytest.raises(ValueError, match="delta must be > 0"):
        nn.HuberLoss(delta=0)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        nn.MultiMarginLoss(p=3)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        nn.NLLLoss(ignore_index=1.5)
    with pytest.raises(nn.NonFiniteError, match="L1Loss: some per-element losses are not "
                                                "finite"):
        nn.L1Loss(reduction="none")(np.array([np.nan, 1.0]), np.zeros(2))
