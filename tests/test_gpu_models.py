"""The CuPy GPU path on whole models (``@pytest.mark.gpu``; skipped without a device).

NumPy vs CuPy for every layer, the cross-entropy loss and every optimizer on identical
host data (float32, rtol 1e-4); GPU RNG, memory and TF32 switches; CUDA-graph steps
against eager steps; and a short training run whose accuracy must match the CPU run.
"""
import os
import types

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

from test_backend_equivalence import LAYERS as EQUIVALENCE_LAYERS

gpu = pytest.mark.gpu


@pytest.fixture
def cuda():
    return get_backend("cuda")


# ====================================================================== GPU: NumPy vs CuPy
LAYERS = EQUIVALENCE_LAYERS  # every layer of the float64 strict/torch equivalence tests


def _layer_run(name, device, x):
    tn.manual_seed(3)
    build, _ = LAYERS[name]
    layer = build(device, "float32")
    b = get_backend(device)
    y = layer(b.asarray(x))
    dy = np.random.default_rng(7).standard_normal(tuple(y.shape)).astype(np.float32)
    dx = layer.backward(b.asarray(dy))
    state = {k: tn.asnumpy(v) for k, v in layer.state_dict().items()}
    grads = {f"grad.{k}": tn.asnumpy(p.grad) for k, p in layer.named_parameters()}
    return tn.asnumpy(y), tn.asnumpy(dx), {**state, **grads}


@gpu
@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_agree_numpy_vs_cupy(rng, name):
    x = rng.standard_normal(LAYERS[name][1]).astype(np.float32)
    ref_y, ref_dx, ref_state = _layer_run(name, "cpu", x)
    y, dx, state = _layer_run(name, "cuda", x)
    np.testing.assert_allclose(y, ref_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-5)
    assert state.keys() == ref_state.keys()
    for key, want in ref_state.items():
        np.testing.assert_allclose(state[key], want, rtol=1e-4, atol=1e-5, err_msg=key)
    assert y.dtype == np.float32


@gpu
@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_agree_numpy_vs_cupy_with_the_graph_gemm(rng, monkeypatch, cuda, name):
    """Every layer with its matmuls on the GEMM that CUDA-graph steps use (the rehearsal's
    kernels, no capture needed): AdaptiveAvgPool2d and Upsample multiply (OH, H) by
    (N, C, H, W), which graph steps refused (a 2-D/3-D-only GEMM)."""
    x = rng.standard_normal(LAYERS[name][1]).astype(np.float32)
    ref_y, ref_dx, _ = _layer_run(name, "cpu", x)
    monkeypatch.setattr(cuda, "_capture", types.SimpleNamespace(phase="rehearse"))
    y, dx, _ = _layer_run(name, "cuda", x)
    np.testing.assert_allclose(y, ref_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-5)


@gpu
@pytest.mark.parametrize("reduction, eps, label_dtype, classes", [
    ("mean", 0.0, "int64", 10), ("sum", 0.1, "int32", 10), ("mean", 0.0, "int64", 700)])
def test_cross_entropy_loss_agrees_numpy_vs_cupy(rng, reduction, eps, label_dtype, classes):
    logits = (rng.standard_normal((33, classes)) * 5).astype(np.float32)
    labels = rng.integers(0, classes, 33).astype(label_dtype)
    results = []
    for device in ("cpu", "cuda"):
        b = get_backend(device)
        loss_fn = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=eps)
        loss = float(loss_fn(b.asarray(logits), b.asarray(labels)))
        results.append((loss, tn.asnumpy(loss_fn.backward())))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)


OPTIMIZERS = {
    "sgd": lambda p: tn.optim.SGD(p, lr=0.1),
    "sgd_momentum": lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1,
                                           weight_decay=1e-2),
    "nesterov": lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: tn.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda p: tn.optim.AdamW(p, lr=1e-2),
    "rmsprop": lambda p: tn.optim.RMSprop(p, lr=1e-2),
    "rmsprop_momentum": lambda p: tn.optim.RMSprop(p, lr=1e-2, momentum=0.9, weight_decay=1e-3),
    "adagrad": lambda p: tn.optim.Adagrad(p, lr=0.1, lr_decay=0.01, weight_decay=1e-3),
}


@gpu
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizers_agree_numpy_vs_cupy(rng, name):
    grads = [rng.standard_normal((7, 5)).astype(np.float32) for _ in range(5)]
    finals = []
    for device in ("cpu", "cuda"):
        tn.manual_seed(1)
        layer = nn.Linear(5, 7, bias=False, device=device)
        opt = OPTIMIZERS[name](layer.parameters())
        for grad in grads:
            layer.weight.grad = get_backend(device).asarray(grad)
            opt.step()
        finals.append(tn.asnumpy(layer.weight.data))
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-4, atol=1e-6)


# ====================================================================== GPU: RNG, memory, TF32
@gpu
def test_permutation_on_the_gpu(cuda):
    cuda.seed(11)
    p = cuda.permutation(1000)
    cuda.seed(11)
    q = cuda.permutation(1000)
    assert cuda.owns(p) and p.dtype == cuda.xp.int64
    np.testing.assert_array_equal(np.sort(tn.asnumpy(p)), np.arange(1000))
    np.testing.assert_array_equal(tn.asnumpy(p), tn.asnumpy(q))
    assert (tn.asnumpy(p) != np.arange(1000)).any()


@gpu
def test_memory_info_and_out_of_memory_error(cuda):
    keep = cuda.zeros((1024, 1024))
    info = cuda.memory_info(reset_peak=True)
    assert info["used"] >= keep.nbytes and info["peak_used"] >= info["used"]
    assert 0 < info["device_free"] <= info["device_total"]
    with pytest.raises(MemoryError) as caught:
        cuda.xp.empty(info["device_total"] * 4, dtype=cuda.xp.uint8)
    err = cuda.out_of_memory_error(caught.value, batch_size=4096)
    assert isinstance(err, MemoryError)
    assert "below 4096" in str(err) and "released" in str(err)


@gpu
def test_tf32_is_off_by_default_and_opt_in(cuda):
    from cupy._core import _routines_linalg as linalg
    get = cuda.xp._core.get_compute_type
    assert cuda.tf32 is False or os.environ.get("CUPY_TF32") == "1"
    cuda.set_tf32(False)
    assert get(cuda.xp.float32) == linalg.COMPUTE_TYPE_DEFAULT
    try:
        cuda.set_tf32(True)
        if int(cuda.xp.cuda.Device().compute_capability) >= 80:
            assert get(cuda.xp.float32) == linalg.COMPUTE_TYPE_TF32
    finally:
        cuda.set_tf32(False)


# ====================================================================== GPU: CUDA-graph steps
def _mlp(device, dropout=0.0):
    tn.manual_seed(4)
    layers = [nn.Linear(20, 32, device=device), nn.ReLU(), nn.Linear(32, 16, device=device),
              nn.ReLU(), nn.Linear(16, 4, device=device)]
    if dropout:
        layers.insert(2, nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _toy_data(n=100):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 20)).astype(np.float32)
    return x, x[:, :4].argmax(1).astype(np.int64)


def _run_steps(step, optimizer, x, y, batch=32, epochs=3, scheduler=None):
    b = get_backend("cuda")
    losses = []
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            optimizer.zero_grad()  # as fit() does; the graph step must not mind
            loss, out = step(b.asarray(x[i:i + batch]), b.asarray(y[i:i + batch]))
            assert tuple(out.shape) == (len(x[i:i + batch]), 4)
            losses.append(float(loss))
        if scheduler is not None:
            scheduler.step()
    return losses


# The graph's GEMM sums in another order than cuBLAS, so gradients differ in the last
# bits; eps=1e-3 keeps the adaptive methods from turning a near-zero gradient's rounding
# noise into a full step of either sign (which would make the comparison flaky, not wrong).
GRAPH_OPTIMIZERS = {
    "sgd_nesterov": (lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                            weight_decay=1e-3), None),
    "adam_steplr": (lambda p: tn.optim.Adam(p, lr=1e-2, eps=1e-3),
                    lambda opt: tn.optim.StepLR(opt, step_size=1, gamma=0.5)),
    "rmsprop_momentum": (lambda p: tn.optim.RMSprop(p, lr=1e-3, eps=1e-3, momentum=0.9), None),
    "adagrad": (lambda p: tn.optim.Adagrad(p, lr=0.05, lr_decay=0.01, eps=1e-3), None),
}


@gpu
@pytest.mark.parametrize("name", list(GRAPH_OPTIMIZERS))
def test_graph_step_matches_eager_step(name):
    make_opt, make_sched = GRAPH_OPTIMIZERS[name]
    x, y = _toy_data()
    runs = []
    for graph in (False, True):
        model = _mlp("cuda")
        opt = make_opt(model.parameters())
        sched = make_sched(opt) if make_sched else None
        step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=graph)
        losses = _run_steps(step, opt, x, y, scheduler=sched)
        runs.append((losses, [tn.asnumpy(p.data) for p in model.parameters()], step))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-4, atol=1e-5)
    for got, want in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # 100 samples = 3 x 32 + 4: per epoch 3 full batches and 1 ragged (eager); the very
    # first full batch rehearses eagerly, the second is captured and launched.
    assert (runs[1][2].replays, runs[1][2].eager_steps) == (8, 4)


@gpu
def test_graph_step_draws_fresh_dropout_masks():
    model = _mlp("cuda", dropout=0.5)
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=True)
    x, y = _toy_data(32)
    b = get_backend("cuda")
    masks = []
    for _ in range(4):  # rehearsal, capture + launch, two replays
        step(b.asarray(x), b.asarray(y))
        masks.append(tn.asnumpy(model[2]._mask))
    assert step.replays == 3
    for mask in masks:
        assert set(np.unique(mask)) <= {0.0, 2.0} and 0.4 < (mask > 0).mean() < 0.6
    assert not np.array_equal(masks[1], masks[2]) and not np.array_equal(masks[2], masks[3])


class _Noise(nn.Module):
    """Adds Gaussian noise: a draw graph steps refuse (it would repeat every replay)."""

    def forward(self, x):
        return x + self.backend.normal(tuple(x.shape))

    def backward(self, grad_output):
        return grad_output


@gpu
def test_graph_step_refuses_other_random_draws():
    model = nn.Sequential(_Noise().to("cuda"), nn.Linear(20, 4, device="cuda"))
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=True)
    x, y = _toy_data(32)
    b = get_backend("cuda")
    with pytest.raises(NotImplementedError, match="only bernoulli"):
        step(b.asarray(x), b.asarray(y))


class _RawCublasLinear(nn.Module):
    """Calls cupy.matmul directly (not F.matmul), which CuPy 14 refuses in capture."""

    def __init__(self):
        super().__init__(device="cuda")
        self.weight = self.new_parameter(np.eye(20, 4))

    def forward(self, x):
        self._x = x
        return self.backend.xp.matmul(x, self.weight.data)

    def backward(self, grad_output):
        self.weight.accumulate_grad(self.backend.xp.matmul(self._x.T, grad_output))
        return self.backend.xp.matmul(grad_output, self.weight.data.T)


@gpu
def test_graph_capture_failure_is_explained():
    model = _RawCublasLinear()
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=True)
    x, y = _toy_data(32)
    b = get_backend("cuda")
    step(b.asarray(x), b.asarray(y))  # rehearsal: eager, cuBLAS is fine
    from tensornet.backends.cuda_graph import GraphCaptureError
    with pytest.raises(GraphCaptureError, match="functional.matmul"):
        step(b.asarray(x), b.asarray(y))
    eager = tn.make_train_step(model, nn.CrossEntropyLoss(), opt)
    assert np.isfinite(float(eager(b.asarray(x), b.asarray(y))[0]))  # the stream still works


@gpu
def test_graph_step_notices_replaced_parameters():
    from tensornet.backends.cuda_graph import GraphInvalidatedError
    model = _mlp("cuda")
    opt = tn.optim.Adam(model.parameters())
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=True)
    x, y = _toy_data(32)
    b = get_backend("cuda")
    for _ in range(3):
        step(b.asarray(x), b.asarray(y))
    model[0].weight.data = model[0].weight.data.copy()  # a new array with the same values
    with pytest.raises(GraphInvalidatedError, match="replaced"):
        step(b.asarray(x), b.asarray(y))


@gpu
def test_graph_step_follows_load_state_dict_in_place():
    """load_state_dict copies into the live arrays, so a captured step keeps working and
    trains from the loaded values."""
    model = _mlp("cuda")
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=True)
    x, y = _toy_data(32)
    b = get_backend("cuda")
    saved = {k: tn.asnumpy(v).copy() for k, v in model.state_dict().items()}
    for _ in range(3):
        step(b.asarray(x), b.asarray(y))
    model.load_state_dict(saved)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(tn.asnumpy(value), saved[key])
    step(b.asarray(x), b.asarray(y))
    assert step.replays == 2


# ====================================================================== GPU: a training run
def _classification_data():
    """Fashion-MNIST (8000 train / 2000 test) when it is on disk, else a synthetic task."""
    try:
        x, y = tn.data.fashion_mnist("train", download=False)
        xt, yt = tn.data.fashion_mnist("test", download=False)
        return (x[:8000].reshape(8000, -1), y[:8000], xt[:2000].reshape(2000, -1), yt[:2000],
                0.75)
    except (tn.data.DatasetError, tn.data.DatasetNotFoundError, OSError):
        rng = np.random.default_rng(0)
        centers = rng.standard_normal((10, 784)).astype(np.float32)
        labels = rng.integers(0, 10, 10000)
        x = centers[labels] + 2.0 * rng.standard_normal((10000, 784)).astype(np.float32)
        return x[:8000], labels[:8000], x[8000:], labels[8000:], 0.9


@gpu
def test_short_training_run_matches_cpu_accuracy():
    x, y, xt, yt, floor = _classification_data()
    order = np.random.default_rng(1).permutation(len(x))
    accuracy = {}
    for device, graph in (("cpu", False), ("cuda", False), ("cuda", True)):
        tn.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 128, device=device), nn.ReLU(),
                              nn.Linear(128, 10, device=device))
        opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        b = get_backend(device)
        step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=graph)
        for _ in range(3):
            for i in range(0, len(x), 128):
                idx = order[i:i + 128]
                step(b.asarray(x[idx]), b.asarray(y[idx]))
        model.eval()
        pred = tn.asnumpy(model(b.asarray(xt))).argmax(1)
        accuracy[(device, graph)] = float((pred == yt).mean())
    cpu = accuracy[("cpu", False)]
    assert cpu > floor, accuracy
    assert abs(accuracy[("cuda", False)] - cpu) < 0.02, accuracy
    assert abs(accuracy[("cuda", True)] - cpu) < 0.02, accuracy
