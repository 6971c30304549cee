"""Every layer, loss and optimizer in float64 on the strict and PyTorch backends against
NumPy on identical host inputs and weights (rtol 1e-10): the proof that the generic code
and each backend's overrides are the same math.
"""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

from conftest import TORCH_SKIP_REASON
from optim_reference import CONFIGS, host_problem, make_params, run

OTHERS = ["strict", pytest.param("torch", marks=pytest.mark.skipif(
    TORCH_SKIP_REASON is not None, reason=str(TORCH_SKIP_REASON)))]
TOL = dict(rtol=1e-10, atol=1e-12)

LAYERS = {  # name: (builder(device, dtype), input shape); tests/test_gpu_models.py uses it too
    "linear": (lambda d, t: nn.Linear(12, 7, device=d, dtype=t), (5, 12)),
    "linear_no_bias": (lambda d, t: nn.Linear(12, 7, bias=False, device=d, dtype=t),
                       (5, 12)),
    "conv": (lambda d, t: nn.Conv2d(3, 4, 3, stride=2, padding=1, device=d, dtype=t),
             (2, 3, 9, 9)),
    "conv_same": (lambda d, t: nn.Conv2d(2, 3, 3, padding="same", device=d, dtype=t),
                  (2, 2, 6, 7)),
    "conv_groups": (lambda d, t: nn.Conv2d(4, 6, 3, groups=2, dilation=2, device=d,
                                        dtype=t), (2, 4, 9, 9)),
    "maxpool": (lambda d, t: nn.MaxPool2d(2), (2, 3, 8, 8)),
    "maxpool_overlap": (lambda d, t: nn.MaxPool2d(3, stride=1, padding=1), (2, 3, 6, 6)),
    "avgpool": (lambda d, t: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                (2, 3, 7, 7)),
    "global_avgpool": (lambda d, t: nn.GlobalAvgPool2d(), (2, 3, 5, 5)),
    "batchnorm1d": (lambda d, t: nn.BatchNorm1d(6, device=d, dtype=t), (8, 6)),
    "batchnorm2d": (lambda d, t: nn.BatchNorm2d(3, device=d, dtype=t), (4, 3, 5, 5)),
    "batchnorm2d_eval": (lambda d, t: nn.BatchNorm2d(3, device=d, dtype=t).eval(),
                         (4, 3, 5, 5)),
    "layernorm": (lambda d, t: nn.LayerNorm((2, 3), device=d, dtype=t), (5, 2, 3)),
    "flatten": (lambda d, t: nn.Flatten(), (2, 3, 4, 4)),
    "activations": (lambda d, t: nn.Sequential(nn.ReLU(), nn.LeakyReLU(0.1), nn.ELU(), nn.Tanh(),
                                            nn.Sigmoid(), nn.SoftPlus()), (5, 9)),
    "softmax": (lambda d, t: nn.Softmax(1), (5, 9)),
    "log_softmax": (lambda d, t: nn.LogSoftmax(1), (5, 9)),
    "dropout_eval": (lambda d, t: nn.Dropout(0.5).eval(), (5, 9)),
    "dropconnect_eval": (lambda d, t: nn.DropConnect(12, 7, device=d, dtype=t).eval(),
                         (5, 12)),
    "residual": (lambda d, t: nn.Residual(nn.Sequential(
        nn.Linear(12, 12, device=d, dtype=t), nn.ReLU())), (5, 12)),
    "identity": (lambda d, t: nn.Identity(), (3, 4)),
    "conv1d": (lambda d, t: nn.Conv1d(3, 4, 3, stride=2, padding=1, device=d, dtype=t),
               (2, 3, 11)),
    "conv_transpose": (lambda d, t: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                    output_padding=1, device=d,
                                                    dtype=t), (2, 3, 4, 5)),
    "conv_transpose_groups": (lambda d, t: nn.ConvTranspose2d(4, 6, 2, stride=1, groups=2,
                                                           dilation=2, device=d,
                                                           dtype=t), (2, 4, 4, 4)),
    "adaptive_avgpool": (lambda d, t: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "upsample": (lambda d, t: nn.Upsample(scale_factor=2), (2, 3, 3, 4)),
    "dropout2d_eval": (lambda d, t: nn.Dropout2d(0.5).eval(), (2, 3, 4, 4)),
    "new_activations": (lambda d, t: nn.Sequential(nn.GELU(), nn.GELU(approximate="tanh"),
                                                nn.SiLU(), nn.Hardtanh(-0.5, 0.7)), (5, 9)),
    "prelu": (lambda d, t: nn.PReLU(3, init=0.2, device=d, dtype=t), (4, 3, 2)),
}


def _layer_run(name, device, x, dy):
    tn.manual_seed(3)
    build, _ = LAYERS[name]
    layer = build(device, "float64")
    b = get_backend(device)
    y = layer(b.asarray(x))
    dx = layer.backward(b.asarray(dy))
    state = {k: tn.asnumpy(v) for k, v in layer.state_dict().items()}
    grads = {f"grad.{k}": tn.asnumpy(p.grad) for k, p in layer.named_parameters()}
    return tn.asnumpy(y), tn.asnumpy(dx), {**state, **grads}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("device", OTHERS)
def test_layers_match_numpy_in_float64(name, device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(LAYERS[name][1])
    dy = rng.standard_normal(tuple(LAYERS[name][0]("cpu", "float64")(x).shape))  # like y
    ref = _layer_run(name, "cpu", x, dy)
    got = _layer_run(name, device, x, dy)
    np.testing.assert_allclose(got[0], ref[0], **TOL)
    np.testing.assert_allclose(got[1], ref[1], **TOL)
    assert set(got[2]) == set(ref[2])
    for key in ref[2]:
        np.testing.assert_allclose(got[2][key], ref[2][key], err_msg=key, **TOL)
    assert got[0].dtype == np.float64


LOSSES = {
    "cross_entropy": (lambda: nn.CrossEntropyLoss(), "labels"),
    "cross_entropy_smoothed": (lambda: nn.CrossEntropyLoss(label_smoothing=0.2), "labels"),
    "cross_entropy_sum": (lambda: nn.CrossEntropyLoss(reduction="sum"), "labels"),
    "nll": (lambda: nn.NLLLoss(), "labels"),
    "mse": (lambda: nn.MSELoss(), "values"),
    "bce_with_logits": (lambda: nn.BCEWithLogitsLoss(), "probs"),
    "cross_entropy_weighted_ignore": (lambda: nn.CrossEntropyLoss(
        weight=np.array([0.5, 1.0, 2.0, 1.5]), ignore_index=2), "labels"),
    "cross_entropy_probabilities": (lambda: nn.CrossEntropyLoss(label_smoothing=0.1), "probs"),
    "nll_weighted": (lambda: nn.NLLLoss(weight=np.array([1.0, 2.0, 0.5, 1.0])), "labels"),
    "l1": (lambda: nn.L1Loss(), "values"),
    "smooth_l1": (lambda: nn.SmoothL1Loss(beta=0.5), "values"),
    "huber": (lambda: nn.HuberLoss(delta=0.7), "values"),
    "bce": (lambda: nn.BCELoss(), "probs"),
    "kl_div": (lambda: nn.KLDivLoss(reduction="batchmean"), "probs"),
    "multi_margin": (lambda: nn.MultiMarginLoss(), "labels"),
    "mse_batchmean": (lambda: nn.MSELoss(reduction="batchmean"), "values"),
    "soft_margin": (lambda: nn.SoftMarginLoss(), "signs"),
    "multilabel_soft_margin": (lambda: nn.MultiLabelSoftMarginLoss(
        weight=np.array([0.5, 1.0, 2.0, 1.5])), "binary"),
    "hinge_embedding": (lambda: nn.HingeEmbeddingLoss(margin=0.5), "signs"),
    "poisson_nll": (lambda: nn.PoissonNLLLoss(full=True), "counts"),
    "poisson_nll_rates": (lambda: nn.PoissonNLLLoss(log_input=False), "counts"),
    "multilabel_margin": (lambda: nn.MultiLabelMarginLoss(), "label_lists"),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("device", OTHERS)
def test_losses_match_numpy_in_float64(name, device):
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((7, 4)) * 3.0
    if name.startswith(("nll", "kl_div")):  # log-probabilities
        pred = pred - np.log(np.exp(pred).sum(1, keepdims=True))
    if name == "bce":  # probabilities
        pred = 1.0 / (1.0 + np.exp(-pred))
    if name == "poisson_nll_rates":  # rates
        pred = np.abs(pred)
    target = {"labels": rng.integers(0, 4, 7), "values": rng.standard_normal((7, 4)),
              "probs": rng.uniform(size=(7, 4)), "signs": np.sign(rng.uniform(-1, 1, (7, 4))),
              "binary": rng.integers(0, 2, (7, 4)) * 1.0,
              "counts": rng.poisson(2.0, (7, 4)) * 1.0,
              "label_lists": rng.permuted(np.tile([0, 1, 2, 3, -1, -1], (7, 1)), axis=1)[:, :4],
              }[LOSSES[name][1]]
    results = []
    for dev in ("cpu", device):
        loss = LOSSES[name][0]()
        b = get_backend(dev)
        value = float(loss(b.asarray(pred), b.asarray(target)))
        results.append((value, tn.asnumpy(loss.backward(0.5))))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-10)
    np.testing.assert_allclose(results[1][1], results[0][1], **TOL)


@pytest.mark.parametrize("make", [nn.MSELoss, nn.L1Loss, nn.BCEWithLogitsLoss,
                                  lambda reduction: nn.CrossEntropyLoss(reduction=reduction)])
@pytest.mark.parametrize("device", OTHERS)
def test_unreduced_losses_match_numpy_in_float64(make, device):
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((6, 3))
    labels = rng.integers(0, 3, 6)
    target = labels if make not in (nn.MSELoss, nn.L1Loss, nn.BCEWithLogitsLoss) else \
        rng.uniform(size=(6, 3))
    results = []
    for dev in ("cpu", device):
        loss = make(reduction="none")
        b = get_backend(dev)
        value = loss(b.asarray(pred), b.asarray(target))
        upstream = rng.standard_normal(tuple(value.shape)) if not results else results[0][2]
        results.append((tn.asnumpy(value), tn.asnumpy(loss.backward(b.asarray(upstream))),
                        upstream))
    np.testing.assert_allclose(results[1][0], results[0][0], **TOL)
    np.testing.assert_allclose(results[1][1], results[0][1], **TOL)


@pytest.mark.parametrize("device", OTHERS)
def test_embedding_matches_numpy_in_float64(device):
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 9, (4, 5))
    indices[0, :2] = 1  # repeated indices accumulate
    runs = []
    for dev in ("cpu", device):
        tn.manual_seed(4)
        layer = nn.Embedding(9, 3, padding_idx=0, device=dev, dtype="float64")
        b = get_backend(dev)
        y = layer(b.asarray(indices))
        layer.backward(b.asarray(np.ones(tuple(y.shape))))
        runs.append((tn.asnumpy(y), tn.asnumpy(layer.weight.grad)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], **TOL)
    np.testing.assert_allclose(runs[1][1], runs[0][1], **TOL)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("device", OTHERS)
def test_twenty_optimizer_steps_match_numpy_in_float64(name, device):
    cls, _, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float64, seed=21, steps=20)
    finals = []
    for dev in ("cpu", device):
        params = make_params(dev, values)
        opt = cls(params, **kwargs)
        run(opt, params, grads, range(20))
        finals.append([tn.asnumpy(p.data) for p in params]
                      + [tn.asnumpy(v) for s in opt.state.values() for v in s.values()
                         if hasattr(v, "shape")])
    assert len(finals[0]) == len(finals[1])
    for got, want in zip(finals[1], finals[0]):
        np.testing.assert_allclose(got, want, **TOL)


def test_generic_backends_draw_the_same_masks_from_one_seed():
    """strict and torch share the host generator's stream: one seed, the same dropout."""
    pytest.importorskip("torch")
    masks = []
    for device in ("strict", "torch"):
        backend = get_backend(device)
        backend.seed(11)
        masks.append(tn.asnumpy(backend.bernoulli((50, 7), 0.3)))
    np.testing.assert_array_equal(masks[0], masks[1])
