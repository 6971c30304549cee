"""The CuPy GPU path, the parts that need no GPU (GPU tests: test_gpu_kernels.py and
test_gpu_models.py).

The clear error without CuPy or a GPU, the graph machinery's host logic, the optimizer
scalars the kernels read, the generic kernels the GPU overrides and their signatures. That
every kernel compiles for sm_90 is tests/test_cuda_compile.py; that each computes the right
thing, tests/cuda_emulation/ and the emulated twins of the GPU tests.
"""
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tensornet as tn
from tensornet import backends, nn
from tensornet.backends import DeviceError, get_backend
from tensornet.nn import functional as F
from tensornet.backends.cuda_graph import GraphCaptureError, GraphInvalidatedError, HyperTable
from tensornet.backends.cupy import gpu_available

ROOT = Path(__file__).resolve().parents[1]


# ====================================================================== CPU: detection
def _fake_cupy(monkeypatch, count=None, error=None):
    def get_device_count():
        if error is not None:
            raise error
        return count
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backends, "_CACHE", {})


def test_missing_cupy_names_the_install_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    monkeypatch.setattr(backends, "_CACHE", {})
    with pytest.raises(DeviceError, match=r"CuPy is not installed.*tensornet\[cuda12\]"):
        get_backend("cuda")
    from tensornet.backends.cupy import gpu_available
    assert gpu_available() is False


@pytest.mark.parametrize("count, error, message", [
    (None, RuntimeError("cudaErrorInsufficientDriver"), "no CUDA device is usable.*"
                                                        "cudaErrorInsufficientDriver"),
    (0, None, "no CUDA device was found"),
    (1, None, r"cuda:3.*does not exist.*1 CUDA device"),
])
def test_unusable_gpu_is_one_clear_device_error(monkeypatch, count, error, message):
    _fake_cupy(monkeypatch, count, error)
    with pytest.raises(DeviceError, match=message):
        get_backend("cuda:3")


def test_gpu_modules_import_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import tensornet, tensornet.backends.cupy, tensornet.backends.cuda_graph\n"
            "import tensornet.backends.cuda_kernels\n"
            "from tensornet.backends import get_backend, DeviceError\n"
            "try:\n    get_backend('cuda')\nexcept DeviceError as e:\n    print('DeviceError', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "DeviceError" in out.stdout and "tensornet[cuda12]" in out.stdout


# ====================================================================== CPU: graph host logic
def _table_after_rehearsal(calls):
    table = HyperTable()
    for phase in ("rehearse", "capture"):
        table.begin(phase)
        table.device_table = np.zeros((len(calls), 4))
        for kind, ptrs, values in calls:
            table.record(kind, "float32", ptrs, values)
        table.end()
    return table


def test_hyper_table_replays_in_order_and_refreshes_rows():
    calls = [("sgd", (1, 2), (0.1, 0.0)), ("adagrad", (3, 4, 5), (0.1, 1e-10, 0.0))]
    table = _table_after_rehearsal(calls)
    table.begin("replay")
    table.record("sgd", "float32", (1, 2), (0.05, 0.0))
    table.record("adagrad", "float32", (3, 4, 5), (0.05, 1e-10, 0.0))
    table.end()
    host = np.full((2, 4), -1.0)
    table.fill(host)
    np.testing.assert_array_equal(host, [[0.05, 0.0, 0.0, 0.0], [0.05, 1e-10, 0.0, 0.0]])


@pytest.mark.parametrize("replayed, error", [
    ([("sgd", (1, 2)), ("adagrad", (3, 4, 99))], "does not match the captured graph"),
    ([("adagrad", (3, 4, 5))], "does not match"),
    ([("sgd", (1, 2))], "made 1 updates but the graph holds 2"),
    ([("sgd", (1, 2)), ("adagrad", (3, 4, 5)), ("sgd", (1, 2))], "does not match"),
])
def test_hyper_table_detects_changes_after_capture(replayed, error):
    table = _table_after_rehearsal([("sgd", (1, 2), (0.1, 0.0)),
                                    ("adagrad", (3, 4, 5), (0.1, 1e-10, 0.0))])
    table.begin("replay")
    with pytest.raises(GraphInvalidatedError, match=error):
        for kind, ptrs in replayed:
            table.record(kind, "float32", ptrs, (0.1,) * 2)
        table.end()


def test_hyper_table_refuses_mixed_dtypes_and_extra_updates():
    table = HyperTable()
    table.begin("rehearse")
    table.record("sgd", "float32", (1, 2), (0.1, 0.0))
    with pytest.raises(GraphCaptureError, match="one dtype"):
        table.record("sgd", "float64", (3, 4), (0.1, 0.0))
    table.device_table = np.zeros((1, 4))
    table.begin("capture")
    table.record("sgd", "float32", (1, 2), (0.1, 0.0))
    with pytest.raises(GraphInvalidatedError, match="other optimizer updates"):
        table.record("sgd", "float32", (5, 6), (0.1, 0.0))


def _group_scalars(opt):
    group = opt.param_groups[0]
    rule, decay = opt._decayed_rule(group)
    return rule, {**opt._scalars(group, {"step": 3}, False), **decay}


def test_optimizer_scalars_match_the_formulas():
    """What the fused kernels read: each rule's scalars, computed on the host in double."""
    p = [nn.Parameter(np.zeros(3, np.float32))]
    rule, s = _group_scalars(tn.optim.Adam(p, lr=1e-3, weight_decay=0.1))
    assert rule.name == "adam_l2" and set(s) == set(rule.scalars)
    assert s["step_size"] == pytest.approx(1e-3 / (1 - 0.9 ** 3), rel=1e-15)
    assert s["sqrt_bc2"] == pytest.approx(math.sqrt(1 - 0.999 ** 3), rel=1e-15)
    assert s["weight_decay"] == 0.1 and "decay_scale" not in s
    rule, s = _group_scalars(tn.optim.AdamW(p, lr=1e-3, weight_decay=0.1))
    assert rule.name == "adam_decoupled" and s["decay_scale"] == pytest.approx(1 - 1e-4)
    rule, s = _group_scalars(tn.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))
    assert rule.name == "sgd_momentum" and set(s) == set(rule.scalars)
    assert s == dict(lr=0.1, momentum=0.9, one_minus_dampening=1.0, nesterov=1.0,
                     first_step=0.0)
    for rule in tn.optim.fused_updates():
        assert len(set(rule.scalars)) == len(rule.scalars), rule.name
        assert not {"grad", "param", "hyper"} & set(rule.scalars + rule.states), rule.name


# ====================================================================== CPU: generic hooks
def _reference_cross_entropy(logits, labels, eps):
    z = logits.astype(np.float64)
    log_probs = z - z.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    target = np.full(z.shape, eps / z.shape[1])
    target[np.arange(len(labels)), labels] += 1.0 - eps
    return -(target * log_probs).sum(1), np.exp(log_probs) - target


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_generic_softmax_cross_entropy_hooks(device, rng, eps):
    b = get_backend(device)
    logits = (rng.standard_normal((6, 5)) * 10).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    losses, log_probs = F.softmax_cross_entropy(b.asarray(logits), b.asarray(labels), eps)
    grad = F.softmax_cross_entropy_backward(log_probs, b.asarray(labels), 0.5, eps)
    ref_losses, ref_grad = _reference_cross_entropy(logits, labels, eps)
    np.testing.assert_allclose(tn.asnumpy(losses), ref_losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(grad), 0.5 * ref_grad, rtol=1e-5, atol=1e-6)
    assert tn.asnumpy(losses).dtype == np.float32


def test_make_train_step_is_one_training_step(device, rng):
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    results = []
    for use_step in (False, True):
        tn.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 6, device=device), nn.ReLU(), nn.Linear(6, 3, device=device))
        opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        b = get_backend(device)
        xb, yb = b.asarray(x), b.asarray(y)
        if use_step:
            step = tn.make_train_step(model, loss_fn, opt)
            for _ in range(2):
                loss, out = step(xb, yb)
            assert tuple(out.shape) == (8, 3)
        else:
            for _ in range(2):
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                model.backward(loss_fn.backward(), input_grad=False)
                opt.step()
        results.append((float(loss), [tn.asnumpy(p.data) for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b_ in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b_)
    with pytest.raises(ValueError, match="cuda_graph=True needs a model on device='cuda'"):
        tn.make_train_step(model, nn.CrossEntropyLoss(), opt, cuda_graph=True)


def test_cpu_memory_hooks():
    cpu = get_backend("cpu")
    assert cpu.memory_info() == {}
    err = cpu.out_of_memory_error(MemoryError("boom"), batch_size=512, where="epoch 2")
    assert isinstance(err, MemoryError) and "below 512" in str(err) and "epoch 2" in str(err)


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
def test_gpu_benchmark_exits_clearly_without_a_gpu():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs an NVIDIA GPU" in out.stderr


def test_cupy_overrides_keep_the_generic_signatures():
    import inspect
    from tensornet.backends.cupy import CupyBackend
    overridden = CupyBackend.kernels
    assert {"im2col", "col2im", "max_pool2d", "max_pool2d_backward", "softmax_cross_entropy",
            "softmax_cross_entropy_backward", "relu", "relu_backward", "matmul",
            "scatter_add"} <= set(overridden)

    def params(function):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(inspect.unwrap(function)).parameters.values()]
    for name, override in overridden.items():
        assert params(override) == params(getattr(F, name).generic), name


def test_window_kernel_arguments_follow_the_declared_order():
    from tensornet.backends.geometry import window_output_size
    from tensornet.backends.cuda_window_kernels import WINDOW_PARAMS
    from tensornet.backends.cupy_ops import _window_geometry
    shape, kernel, stride, padding, dilation = (2, 3, 7, 6), (3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2)
    values, out = _window_geometry(shape, kernel, stride, padding, dilation)
    names = [decl.split()[1] for decl in WINDOW_PARAMS.split(",")]
    assert all(type(v) is np.int32 for v in values)
    assert out == window_output_size(shape, kernel, stride, padding, dilation)
    assert dict(zip(names, map(int, values))) == dict(
        batch=2, channels=3, height=7, width=6, out_h=out[0], out_w=out[1], k_h=3, k_w=2,
        s_h=2, s_w=1, pad_t=1, pad_l=2, d_h=1, d_w=2)


def test_graph_steps_notice_changed_layer_settings():
    """A captured graph freezes host settings such as Dropout.p (bug 6 of issue 15): the
    snapshot each replay compares against sees a change (GraphInvalidatedError then)."""
    from tensornet.backends.cuda_graph import _host_settings
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    captured = _host_settings(model)
    model[1].p = 0.2
    assert _host_settings(model) != captured
    model[1].p = 0.5
    assert _host_settings(model) == captured
    model.eval()
    assert _host_settings(model) != captured
