"""Optimizer.step is all or nothing: whatever makes it fail (a gradient, a hyper-parameter
of a later group, a parameter whose array was replaced under its state), it fails before
any parameter or state changes."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.nn.parameter import Parameter


def _setup(device, optimizer="adam"):
    b = get_backend(device)
    rng = np.random.default_rng(0)
    params = [Parameter(b.asarray(rng.standard_normal(shape).astype(np.float32)))
              for shape in ((3,), (2, 2), (4,), (5,))]
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.05}]
    if optimizer == "adam":
        opt = tn.optim.Adam(groups, lr=0.1, weight_decay=1e-2)
    else:
        opt = tn.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-2)
    _fill_grads(b, params, rng)
    opt.step()  # a first step: states exist, step counters are at 1
    _fill_grads(b, params, rng)
    return b, params, opt


def _fill_grads(b, params, rng):
    for p in params:
        p.grad = b.asarray(rng.standard_normal(p.shape).astype(np.float32))


def _snapshot(params, opt):
    values = [tn.asnumpy(p.data).copy() for p in params]
    state = [{k: (tn.asnumpy(v).copy() if hasattr(v, "shape") else v)
              for k, v in opt.state[p].items()} for p in params]
    return values, state


def _assert_unchanged(before, params, opt):
    values, state = before
    for value, p in zip(values, params):
        assert np.array_equal(tn.asnumpy(p.data), value)
    for saved, p in zip(state, params):
        for key, value in saved.items():
            now = opt.state[p][key]
            assert np.array_equal(tn.asnumpy(now) if hasattr(now, "shape") else now, value), key


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_bad_gradient_in_a_later_group_changes_nothing(device, optimizer):
    b, params, opt = _setup(device, optimizer)
    params[3].grad = b.asarray(np.ones(4, np.float32))  # parameter 1 of group 1: wrong shape
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"parameter 1 of group 1 .* has a grad of shape \(4,\)"):
        opt.step()
    _assert_unchanged(before, params, opt)
    if optimizer == "adam":
        assert [opt.state[p]["step"] for p in params] == [1, 1, 1, 1]


def test_a_bad_hyper_parameter_in_a_later_group_changes_nothing(device):
    b, params, opt = _setup(device)
    opt.param_groups[1]["betas"] = (0.9, 1.5)
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in"):
        opt.step()
    _assert_unchanged(before, params, opt)
    opt.param_groups[1]["betas"] = (0.9, 0.999)
    opt.step()
    assert [opt.state[p]["step"] for p in params] == [2, 2, 2, 2]


def test_a_parameter_replaced_under_its_state_changes_nothing(device):
    b, params, opt = _setup(device)
    params[3].data = b.asarray(np.zeros(6, np.float32))  # a new shape; its state is (5,)
    params[3].grad = b.asarray(np.ones(6, np.float32))
    before = _snapshot(params[:3], opt)
    with pytest.raises(ValueError, match=r"parameter 1 of group 1 Parameter\(shape=\(6,\).*has "
                                         r"'exp_avg' state of shape \(5,\).*nothing was updated"):
        opt.step()
    _assert_unchanged(before, params[:3], opt)
    assert opt.state[params[3]]["step"] == 1
    opt.state.pop(params[3])  # the reset the message suggests
    opt.step()
    assert [opt.state[p]["step"] for p in params] == [2, 2, 2, 1]
