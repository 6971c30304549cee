"""The NumPy backend's one-pass optimizer update: the numba kernel generated from each
rule's ``apply`` and the chunked NumPy path give exactly ``apply``'s result, for every
optimizer configuration the optimizer tests use (weight decay composed in), every branch
(SGD's first step, Nesterov, RAdam's rectification), float32 and float64; a rule the
tracer cannot follow keeps running ``apply``."""

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import FusedUpdate, get_backend, jit
from tensornet.backends import numpy as numpy_backend
from tensornet.nn import Parameter
from tensornet.optim.optimizer import COUNT, SCALAR

from optim_reference import CONFIGS
from test_cpu_kernels import PATHS, thread_count

CPU = get_backend("cpu")
EXTRA = {  # branches and optimizers beyond CONFIGS
    "sgd-momentum": (tn.optim.SGD, None, dict(lr=0.05, momentum=0.9)),
    "sgd-nesterov": (tn.optim.SGD, None, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adamax-wd": (tn.optim.Adamax, None, dict(lr=0.01, weight_decay=0.1)),
    # PyTorch's options (tests/test_optim_options.py checks them against torch.optim)
    "sgd-nesterov-wd-maximize": (tn.optim.SGD, None, dict(lr=0.05, momentum=0.9, nesterov=True,
                                                          weight_decay=0.1, maximize=True)),
    "adam-amsgrad": (tn.optim.Adam, None, dict(lr=0.01, amsgrad=True)),
    "adamw-amsgrad-maximize": (tn.optim.AdamW, None, dict(lr=0.01, amsgrad=True,
                                                          maximize=True)),
    "rmsprop-centered-wd": (tn.optim.RMSprop, None, dict(lr=0.01, centered=True,
                                                         weight_decay=0.1)),
    "rmsprop-centered-momentum-maximize": (tn.optim.RMSprop, None, dict(
        lr=0.01, momentum=0.5, centered=True, maximize=True)),
    "nadamw-maximize": (tn.optim.NAdam, None, dict(lr=0.01, weight_decay=0.1,
                                                  decoupled_weight_decay=True, maximize=True)),
    "radam-l2-maximize": (tn.optim.RAdam, None, dict(lr=0.01, weight_decay=0.1,
                                                     maximize=True)),
    "adadelta-maximize": (tn.optim.Adadelta, None, dict(lr=0.5, maximize=True)),
    "rprop-maximize": (tn.optim.Rprop, None, dict(lr=0.01, maximize=True)),
}
ALL = {**CONFIGS, **EXTRA}


def _rule_and_scalars(name, fresh):
    cls, _, kwargs = ALL[name]
    opt = cls([Parameter(np.zeros(3, np.float32))], **kwargs)
    group = opt.param_groups[0]
    rule, decay = opt._decayed_rule(group)
    state = {key: 3 if kind == COUNT else 0.25 for key, kind in opt.state_kinds.items()
             if kind in (COUNT, SCALAR)}
    return rule, {**opt._scalars(group, state, fresh), **decay}


def _arrays(rule, dtype, size=1001, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2, 2, size).astype(dtype), rng.uniform(-2, 2, size).astype(dtype)]
    states = {name: rng.uniform(0, 2, size) for name in rule.states}
    if "grad_avg" in states:  # a running mean under its running square: s - a^2 >= 0
        states["grad_avg"] = rng.uniform(-0.9, 0.9, size) * np.sqrt(states["square_avg"])
    return arrays + [states[name].astype(dtype) for name in rule.states]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    """'numba': the generated kernel; 'numpy': apply over small chunks on the threads."""
    if request.param == "numpy":
        monkeypatch.setattr(numpy_backend, "_UPDATE_CHUNK", 64)
        monkeypatch.setattr(jit, "CHUNK_MIN", 200)
    with jit.switched(request.param == "numba"):
        yield request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("name", sorted(ALL))
def test_update_equals_apply_bit_for_bit(path, name, fresh, dtype):
    rule, scalars = _rule_and_scalars(name, fresh)
    ours, reference = _arrays(rule, dtype), _arrays(rule, dtype)
    for threads in (1, 2):
        with thread_count(threads):
            CPU.fused_update(rule, ours[0], ours[1], ours[2:], scalars)
        rule.apply(np, reference[0], reference[1], *reference[2:], **scalars)
        for got, want in zip(ours, reference):
            np.testing.assert_array_equal(got, want)
    if path == "numba":  # the kernel ran (the comparison above would hold for apply too)
        from tensornet.backends.jit import update
        assert any(key[0] == rule and module is not None
                   for key, module in update._KERNELS.items()), rule.name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_radam_update_equals_apply_on_both_sides_of_its_switch(path, dtype):
    """The configurations above meet RAdam at step 3 only (rho_t <= 5): step 10 too."""
    opt = tn.optim.RAdam([Parameter(np.zeros(3, np.float32))], lr=0.01, weight_decay=0.1)
    group = opt.param_groups[0]
    rule, decay = opt._decayed_rule(group)
    for step, rectified in [(3, 0.0), (10, 1.0)]:
        scalars = {**opt._scalars(group, {"step": step}, False), **decay}
        assert scalars["rectified"] == rectified
        ours, reference = _arrays(rule, dtype), _arrays(rule, dtype)
        CPU.fused_update(rule, ours[0], ours[1], ours[2:], scalars)
        rule.apply(np, reference[0], reference[1], *reference[2:], **scalars)
        for got, want in zip(ours, reference):
            np.testing.assert_array_equal(got, want)


def test_large_updates_run_in_parallel_and_agree(monkeypatch):
    monkeypatch.setattr(jit, "CHUNK_MIN", 1)
    rule, scalars = _rule_and_scalars("adamw-wd", False)
    ours, reference = _arrays(rule, np.float32, 5000), _arrays(rule, np.float32, 5000)
    with thread_count(2):
        CPU.fused_update(rule, ours[0], ours[1], ours[2:], scalars)
    rule.apply(np, reference[0], reference[1], *reference[2:], **scalars)
    for got, want in zip(ours, reference):
        np.testing.assert_array_equal(got, want)


def test_a_rule_the_tracer_cannot_follow_runs_apply():
    def clipped(xp, param, grad, *, lr):
        param -= lr * xp.clip(grad, -1.0, 1.0)   # xp.clip: not an elementwise tracer op

    rule = FusedUpdate("clipped_test_rule", (), ("lr",), clipped)
    param, grad = np.zeros(50, np.float32), np.linspace(-3, 3, 50, dtype=np.float32)
    CPU.fused_update(rule, param, grad, [], {"lr": 0.5})
    np.testing.assert_array_equal(param, -0.5 * np.clip(grad, -1, 1))


def test_non_contiguous_parameters_fall_back_to_apply():
    rule, scalars = _rule_and_scalars("sgd-momentum", False)
    base = [a.copy() for a in _arrays(rule, np.float32, 40)]
    views = [a[::2] for a in base]
    reference = [a[::2].copy() for a in base]
    CPU.fused_update(rule, views[0], views[1], views[2:], scalars)
    rule.apply(np, reference[0], reference[1], *reference[2:], **scalars)
    for got, want in zip(views, reference):
        np.testing.assert_array_equal(got, want)


def test_training_with_and_without_numba_reaches_the_same_weights():
    """The update kernel and the NumPy path agree over real steps of a model (the other
    kernels of this model, Linear and MSE, have no compiled form)."""
    def train():
        tn.manual_seed(4)
        model = tn.nn.Sequential(tn.nn.Linear(7, 5), tn.nn.Linear(5, 3))
        opt = tn.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
        rng = np.random.default_rng(0)
        for _ in range(4):
            x = rng.standard_normal((6, 7)).astype(np.float32)
            tn.train_step(model, tn.nn.MSELoss(), opt, x, np.zeros((6, 3), np.float32))
        return [np.array(p.data) for p in model.parameters()]

    compiled = train()
    with jit.disabled():
        plain = train()
    for a, b in zip(compiled, plain):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not jit.available(), reason="numba kernels not in use")
@pytest.mark.parametrize("size, pieces", [(240_000, 1), (400_000, 1), (600_000, 2),
                                          (1_100_000, 2)])
def test_update_is_split_on_the_spin_pool_only_from_512k_parameters(monkeypatch, size,
                                                                     pieces):
    """The update streams its arrays once: split over two spin-pool threads only from
    ``2 * UPDATE_CHUNK_MIN`` elements (other kernels from ``2 * SPIN_CHUNK_MIN``), and the
    split gives the one-thread bits."""
    calls = []

    def recording(function, chunks, threads=None):
        calls.append(len(chunks))
        for chunk in chunks:
            function(chunk)

    monkeypatch.setattr(jit, "spinning", lambda: True)
    monkeypatch.setattr(jit, "num_threads", lambda: 2)
    monkeypatch.setattr(jit, "run_chunks", recording)
    rule, scalars = _rule_and_scalars("sgd-momentum", False)
    arrays = _arrays(rule, np.float32, size)
    expected = [a.copy() for a in arrays]
    rule.apply(np, expected[0], expected[1], *expected[2:], **scalars)
    CPU.fused_update(rule, arrays[0], arrays[1], arrays[2:], scalars)
    assert calls == ([] if pieces == 1 else [pieces])
    for got, want in zip(arrays, expected):
        np.testing.assert_array_equal(got, want)
