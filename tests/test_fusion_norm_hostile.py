"""A hostile audit of Sequential's BatchNorm + ReLU fusion (tensornet/nn/fusion.py): odd
values, layouts, user-assigned parameters and module juggling, each compared bitwise with the
modules called one by one (``fusion.disabled()``)."""
import contextlib
import threading

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend, jit
from tensornet.nn import fusion
from tensornet.nn import functional as F


def _host(a):
    return None if a is None else tn.asnumpy(a)


def _outcome(fused, x, grad, setup=None, device="cpu", dtype="float32", **bn):
    """The output, input gradient (or the error either raised), the affine gradients, which
    module holds a cache and the buffers after one step of Sequential(BatchNorm, ReLU), on
    host. ``grad(y)``: the output gradient for y; ``setup(seq)``: changes before forward."""
    tn.manual_seed(0)
    kind = nn.BatchNorm2d if x.ndim == 4 else nn.BatchNorm1d
    seq = nn.Sequential(kind(x.shape[1], **bn), nn.ReLU()).to(device, dtype=dtype)
    norm = seq[0]
    if setup is not None:
        setup(seq)
    backend = get_backend(device)
    seen = []
    with contextlib.nullcontext() if fused else fusion.disabled():
        try:
            y = seq(backend.asarray(x) if device != "cpu" else x)
            seen.append(_host(y))
            seen.append(_host(seq.backward(grad(y))))
        except Exception as error:  # (the same error, at the same point, is what matters)
            seen.append(f"{type(error).__name__}: {error}")
    seen += [None if p is None else _host(p.grad) for p in (norm.weight, norm.bias)]
    seen += [np.array([m._cache is None for m in seq])]  # (what each has left cached)
    return seen + [_host(b) for b in (norm.running_mean, norm.running_var,
                                      norm.num_batches_tracked)]


def _assert_same(got, want):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
            assert a == b, k
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert a.tobytes() == b.tobytes(), k  # (signed zeros and NaN payloads too)


def _compare(x, grad, setup=None, **kwargs):
    _assert_same(_outcome(True, x, grad, setup, **kwargs),
                 _outcome(False, x, grad, setup, **kwargs))


def _x(shape=(4, 3, 5, 6), seed=0, dtype="float32"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _grad(nan_where_masked=False, seed=5, layout=None, negative=False):
    """grad(y): a random gradient like y, NaN where the ReLU masked (y == 0) if asked,
    all negative if asked, laid out by ``layout`` (a function of a C-ordered array)."""
    def make(y):
        y = _host(y)
        g = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
        if negative:
            g = -np.abs(g)
        if nan_where_masked:
            g[y == 0] = np.nan
        return g if layout is None else layout(g)
    return make


def _channels_last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)).transpose(0, 3, 1, 2)


def _channel_major(a):
    return np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)


def _dead_channel(seq):
    seq[0].bias.data[1] = -100.0  # relu(xhat * 1 - 100) = 0 everywhere: all masked


# ------------------------------------------------------------------ defects found
@pytest.mark.parametrize("x_layout, grad_layout", [
    (None, np.asfortranarray), (None, _channel_major), (_channels_last, None),
    (_channel_major, None), (_channels_last, _channel_major)],
    ids=["F-grad", "channel-major-grad", "channels-last-x", "channel-major-x", "both"])
def test_a_gradient_laid_out_unlike_the_output_is_masked_as_relus_own_backward(x_layout,
                                                                             grad_layout):
    # relu_backward's NumPy fallback (for a grad its numba kernel cannot stream in y's
    # memory order) multiplied by the mask, so a NaN where the ReLU masked stayed NaN and the
    # fused kernel gave 0; now every path gives where(y > 0, grad, 0), as PyTorch
    x = _x() if x_layout is None else x_layout(_x())
    _compare(x, _grad(nan_where_masked=True, layout=grad_layout))


@pytest.mark.parametrize("grad_layout", [np.asfortranarray, _channel_major],
                         ids=["F-order", "channel-major"])
def test_such_a_gradient_still_takes_the_fused_kernel(monkeypatch, grad_layout):
    kernels, masks = jit.kernels("norm"), []
    if kernels is None:
        pytest.skip("numba is not installed")
    real = kernels.normalize_backward
    monkeypatch.setattr(kernels, "normalize_backward", lambda *args: masks.append(
        args[4] is not None) or real(*args))
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    seq.backward(_grad(layout=grad_layout)(seq(_x())))
    assert masks and all(masks)  # (the generic steps: relu_backward, an unmasked kernel)


@pytest.mark.parametrize("grad", [
    _grad(negative=True, layout=np.asfortranarray),
    lambda y: np.broadcast_to(np.float32(-1.0), y.shape)], ids=["F-order", "broadcast"])
def test_a_dead_channel_gets_the_signed_zeros_of_the_modules_one_by_one(grad):
    _compare(_x(), grad, setup=_dead_channel)


def _assign(name, value):
    def setup(seq):
        getattr(seq[0], name).data = value() if callable(value) else value
    return setup


@pytest.mark.parametrize("numba", [True, False], ids=["numba", "no-numba"])
@pytest.mark.parametrize("setup", [
    _assign("weight", np.ones(2, np.float32)), _assign("bias", np.float32(0.5)),
    _assign("weight", np.ones(1, np.float32)),
    _assign("weight", lambda: pytest.importorskip("torch").ones(3))],
    ids=["weight(2,)", "bias-scalar", "weight(1,)", "torch-weight"])
def test_a_weight_the_affine_step_rejects_fails_after_the_statistics_as_one_by_one(numba,
                                                                                  setup):
    # One by one the running statistics (and num_batches_tracked) move before the affine
    # step raises; the fused kernel did both at once and raised before them
    with contextlib.nullcontext() if numba else jit.disabled():
        _compare(_x(), _grad(), setup=setup)


@pytest.mark.parametrize("setup", [_assign("weight", [0.5, 1.0, -2.0]),
                                   _assign("bias", [0.0, -1.0, 0.25])], ids=["weight", "bias"])
def test_a_weight_assigned_as_a_list_works_as_one_by_one(setup):
    _compare(_x(), _grad(), setup=setup)  # (the NumPy override read .shape off the list)


def test_the_fused_kernel_still_runs_for_the_parameters_a_model_holds(any_device,
                                                                       monkeypatch):
    # (the guard above must not turn the fusion off for a model's own weight and bias)
    calls = []
    real = F.normalize_affine_relu
    monkeypatch.setattr(F, "normalize_affine_relu",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    tn.manual_seed(0)
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()).to(any_device)
    seq(get_backend(any_device).asarray(_x()))
    assert calls == [1]


def test_the_fused_kernel_takes_lists_as_its_generic_version():
    x = _x()
    weight, bias = [0.5, 1.0, -2.0], [0.0, -1.0, 0.25]
    got = F.normalize_affine_relu(x, (0, 2, 3), 1e-5, weight, bias)
    want = F.normalize_affine_relu.generic(get_backend("cpu"), x, (0, 2, 3), 1e-5, weight,
                                           bias)
    _assert_same([_host(a) for a in got], [_host(a) for a in want])


# ------------------------------------------------------------------ probed, and fine
def _hostile_x(dtype="float32"):
    x = _x(dtype=dtype)
    x[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    x[:, 2] = 1.5  # a constant channel: var 0, xhat 0
    return x


def _hostile_parameters(seq):
    backend = seq[0].backend
    seq[0].weight.data = backend.asarray(np.array([np.inf, -0.0, 0.0], seq[0].dtype))
    seq[0].bias.data = backend.asarray(np.array([-0.0, np.nan, -0.0], seq[0].dtype))


def _hostile_grad(y):
    g = _grad(nan_where_masked=True)(y)
    g[1, 1, 1, :2] = [-0.0, np.inf]
    return tn.backends.backend_of(y).asarray(g)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setup", [None, _hostile_parameters], ids=["default", "hostile"])
@pytest.mark.parametrize("bn", [{}, dict(track_running_stats=False)], ids=str)
def test_nan_inf_and_signed_zeros_everywhere_are_bitwise_one_by_one(any_device, dtype, setup,
                                                                     bn):
    _compare(_hostile_x(dtype), _hostile_grad, setup, device=any_device, dtype=dtype, **bn)


@pytest.mark.parametrize("device", ["cpu", "torch"])
def test_float16_models_are_bitwise_one_by_one(device):
    _compare(_hostile_x("float16"), _hostile_grad, device=device, dtype="float16")


@pytest.mark.parametrize("shape", [(5, 3, 1, 1), (1, 3, 4, 4), (3, 600, 1, 2), (2, 2, 37, 53),
                                   (6, 7), (6, 7, 9), (6, 7, 1)], ids=str)
@pytest.mark.parametrize("x_layout", [None, _channels_last, _channel_major], ids=["nchw",
                                      "channels-last", "channel-major"])
def test_odd_shapes_and_layouts_are_bitwise_one_by_one(shape, x_layout):
    x = _x(shape)
    if x_layout is not None and x.ndim == 4:
        x = x_layout(x)
    _compare(x, _grad(negative=True, layout=np.asfortranarray), setup=None)
    _compare(x, _grad())


@pytest.mark.parametrize("setup", [
    _assign("weight", np.full((3, 1), 0.5, np.float32)),
    _assign("weight", np.linspace(-1, 1, 6, dtype=np.float32)[::2]),
    _assign("bias", np.linspace(-1, 1, 6, dtype=np.float32)[::-2]),
    _assign("weight", np.full(3, 0.5, np.float64)), _assign("bias", np.full(3, 0.5, np.float16)),
    _assign("weight", np.full(3, 0.7, np.float32).view(np.memmap)),
    lambda seq: setattr(seq[0].weight, "requires_grad", False),
    lambda seq: setattr(seq[0].bias, "requires_grad", False), lambda seq: seq.eval()],
    ids=["weight(3,1)", "strided", "reversed", "float64", "float16", "subclass",
         "frozen-weight", "frozen-bias", "eval"])
def test_user_assigned_parameters_and_modes_are_bitwise_one_by_one(setup):
    _compare(_x(), _grad(nan_where_masked=True), setup)


@pytest.mark.parametrize("bn", [{}, dict(affine=False), dict(track_running_stats=False)],
                         ids=str)
def test_a_fused_batchnorm1d_on_n_c_l_passes_a_float64_gradient_check(bn):
    tn.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 1), nn.BatchNorm1d(3, **bn), nn.ReLU())
    assert tn.gradcheck(model.to("cpu", dtype="float64"), _x((4, 2, 5), dtype="float64"))


def test_a_batch_of_one_value_per_channel_gets_the_same_error():
    fused = _outcome(True, _x((1, 3, 1, 1)), _grad())
    _assert_same(fused, _outcome(False, _x((1, 3, 1, 1)), _grad()))
    assert "needs more than one value per channel" in fused[0]


def _pair():
    return nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())


def _swap_the_modules(out):
    seq, relu, norm = _pair(), nn.ReLU(), nn.BatchNorm2d(3)
    y = seq(_x())
    relu(_x(seed=1) - 0.3)  # a pending cache of its own, of the same shape
    seq[1] = relu
    out += [seq.backward(_grad()(y), retain_graph=True), seq[0].weight.grad]
    norm(_x(seed=2))
    seq[0] = norm
    out += [seq.backward(_grad()(y)), norm.weight.grad, norm.bias.grad]


def _toggle_the_mode(out):
    seq = _pair()
    y = seq(_x())
    seq.eval()  # the backward is the training forward's
    out += [seq.backward(_grad()(y)), seq[0].weight.grad]
    y = seq(_x(seed=1))
    seq.train()
    out += [y, seq.backward(_grad()(y)), seq[0].weight.grad]


def _change_the_weights_in_place(out):
    seq = _pair()
    y = seq(_x())
    seq[0].weight.data[:] = np.array([2.0, -1.0, 0.0], np.float32)
    seq[0].bias.data[:] = 5.0  # (the mask is the forward's: ReLU's cached output)
    out += [seq.backward(_grad()(y)), seq[0].weight.grad, seq[0].bias.grad]


def _share_the_batchnorm(out):
    norm = nn.BatchNorm2d(3)
    seq = nn.Sequential(norm, nn.ReLU(), norm, nn.ReLU())
    y = seq(_x())
    out += [y, seq.backward(_grad()(y), retain_graph=True), norm.weight.grad, norm.running_var]
    out += [seq.backward(_grad(seed=6)(y)), norm.weight.grad]
    seq.backward(_grad()(y))  # the second ReLU's cache is gone: its error


def _share_the_relu_between_two_sequentials(out):
    norm, relu = nn.BatchNorm2d(3), nn.ReLU()
    first, second = nn.Sequential(norm, relu), nn.Sequential(norm, relu)
    y, y2 = first(_x()), second(_x(seed=1))
    out += [second.backward(_grad()(y2)), norm.weight.grad]
    first.backward(_grad()(y))


def _split_by_slices(out):
    seq = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))
    y = seq(_x())
    grad = seq[2:].backward(_grad()(y))
    out += [y, grad, seq[:2].backward(grad), seq[1].weight.grad]
    y = seq[2:](seq[:2](_x(seed=1)))
    out += [y, seq.backward(_grad()(y), input_grad=False), seq[1].weight.grad]
    seq = nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), nn.ReLU(),
                        nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()))  # nested
    y = seq(_x())
    out += [y, seq.backward(_grad()(y)), seq[0][1].weight.grad, seq[2][0].weight.grad]


def _no_grad_in_between(out):
    seq = _pair()
    y = seq(_x())
    with tn.no_grad():
        out.append(seq(_x(seed=1)))  # training mode: moves the running statistics
        seq.eval()
        out.append(seq(_x(seed=2)))
    seq.train()
    out += [seq.backward(_grad()(y)), seq[0].running_mean, seq[0].num_batches_tracked,
            seq[0].weight.grad]


def _wrong_grad_dtype(out):
    seq = _pair()
    seq.backward(_grad()(seq(_x())).astype(np.float64))


def _summary_and_export_in_between(out):
    seq = _pair()
    y = seq(_x())
    out.append(np.array(tn.summary(seq, (3, 5, 6), print_fn=None).encode()))
    pytest.importorskip("onnx")
    proto = tn.onnx.export(seq, _x(seed=1))
    out += [np.frombuffer(proto.SerializeToString(), np.uint8), seq.backward(_grad()(y))]


def _data_parallel(out):
    from tensornet.distributed import DataParallel
    model = DataParallel(_pair())
    y = model(_x())
    out += [y, model.backward(_grad()(y)), model.module[0].weight.grad]


@pytest.mark.parametrize("scenario", [
    _swap_the_modules, _toggle_the_mode, _change_the_weights_in_place, _share_the_batchnorm,
    _share_the_relu_between_two_sequentials, _split_by_slices, _no_grad_in_between,
    _wrong_grad_dtype, _summary_and_export_in_between, _data_parallel],
    ids=lambda f: f.__name__.strip("_"))
def test_module_juggling_is_bitwise_one_by_one(scenario):
    results = []
    for fused in (True, False):
        out = []
        tn.manual_seed(0)
        with contextlib.nullcontext() if fused else fusion.disabled():
            try:
                scenario(out)
            except (RuntimeError, TypeError, ValueError) as error:  # the same, by name
                out.append(f"{type(error).__name__}: {error}")
        results.append([a if isinstance(a, str) else _host(a) for a in out])
    _assert_same(*results)


def test_one_and_two_threads_give_the_same_bits(monkeypatch):
    from tensornet.backends import threads
    monkeypatch.setattr(jit, "CHUNK_MIN", 1)  # every channel range its own task
    x, results = _x((6, 8, 7, 9)), []
    for count in (1, 2):
        threads.set_num_threads(count)
        try:
            for fused in (True, False):
                results.append(_outcome(fused, x, _grad(nan_where_masked=True)))
        finally:
            threads.reset_num_threads()
    for other in results[1:]:
        _assert_same(other, results[0])


def test_the_switch_of_one_thread_leaves_another_fused():
    seen, start = {}, threading.Barrier(2)

    def work(fused):
        with contextlib.nullcontext() if fused else fusion.disabled():
            start.wait()  # both threads inside their blocks at once
            seen[fused] = [_outcome(True, _x(), _grad()) for _ in range(3)]  # (as they are)
            seen[fused, "switch"] = fusion._SWITCH.on
    workers = [threading.Thread(target=work, args=(fused,)) for fused in (True, False)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert seen[True, "switch"] and not seen[False, "switch"]
    for got, want in zip(seen[True], seen[False]):
        _assert_same(got, want)


def test_fused_batchnorm_relu_trains_as_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    ours = nn.Sequential(nn.BatchNorm2d(4, momentum=0.3), nn.ReLU())
    theirs = torch.nn.Sequential(torch.nn.BatchNorm2d(4, momentum=0.3), torch.nn.ReLU())
    weight, bias = rng.standard_normal((2, 4)).astype(np.float32)
    ours[0].weight.data, ours[0].bias.data = weight.copy(), bias.copy()
    theirs[0].weight.data, theirs[0].bias.data = torch.tensor(weight), torch.tensor(bias)
    for step in range(3):
        if step == 2:
            ours.eval(), theirs.eval()
        x = rng.standard_normal((6, 4, 5, 3)).astype(np.float32) * 3 + 1
        g = rng.standard_normal(x.shape).astype(np.float32)
        ours.zero_grad(), theirs.zero_grad()
        xt = torch.from_numpy(x).requires_grad_()
        yt = theirs(xt)
        yt.backward(torch.from_numpy(g))
        y, dx = ours(x), ours.backward(g)
        for a, b in ((y, yt), (dx, xt.grad), (ours[0].weight.grad, theirs[0].weight.grad),
                     (ours[0].bias.grad, theirs[0].bias.grad),
                     (ours[0].running_mean, theirs[0].running_mean),
                     (ours[0].running_var, theirs[0].running_var)):
            np.testing.assert_allclose(a, b.detach().numpy(), rtol=2e-5, atol=2e-5)
    assert int(ours[0].num_batches_tracked) == int(theirs[0].num_batches_tracked) == 2
