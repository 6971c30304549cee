"""Optimizer.step re-validates a parameter group only when it changed, and follows a
parameter's state only when the parameter moved: these tests pin that whatever changes
between steps is still checked or followed."""
import numpy as np
import pytest

import tensornet as tn

from optim_reference import host, host_problem, make_params, ref_sgd, run


@pytest.mark.parametrize("key, value, match", [
    ("lr", -1.0, "lr must be >= 0"),
    ("momentum", float("nan"), "momentum must be a finite real number"),
    ("nesterov", True, "nesterov=True needs momentum > 0"),
    ("dampening", 2.0, r"dampening must be in \[0.0, 1.0\]"),
])
def test_a_bad_value_set_between_steps_raises_at_every_step(key, value, match):
    values, grads = host_problem(np.float32, seed=5, steps=3)
    params = make_params("cpu", values[:1])
    opt = tn.optim.SGD(params, lr=0.1, momentum=0.0, dampening=0.5)
    run(opt, params, grads, [0])
    good = opt.param_groups[0][key]
    opt.param_groups[0][key] = value
    for _ in range(2):  # a rejected group is not remembered as checked
        with pytest.raises(ValueError, match=match):
            run(opt, params, grads, [1])
    opt.param_groups[0][key] = good
    run(opt, params, grads, [2])


def test_new_keys_and_replaced_groups_are_checked():
    values, grads = host_problem(np.float32, seed=6, steps=2)
    params = make_params("cpu", values[:1])
    opt = tn.optim.Adam(params, lr=0.01)
    run(opt, params, grads, [0])
    opt.param_groups[0]["betas"] = [0.9, 1.5]  # a new object under an existing key
    with pytest.raises(ValueError, match=r"betas\[1\] must be in"):
        run(opt, params, grads, [1])
    opt.param_groups[0] = dict(opt.param_groups[0], betas=(0.9, 0.999), eps=-1.0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        run(opt, params, grads, [1])


def test_state_follows_a_cast_after_steps():
    values, grads = host_problem(np.float64, seed=8, steps=3)
    params = make_params("cpu", values[:1])
    opt = tn.optim.SGD(params, lr=0.1, momentum=0.9)
    run(opt, params, grads, [0, 1])
    params[0].data = params[0].data.astype(np.float32)
    params[0].grad = None
    run(opt, params, [[g.astype(np.float32) for g in grads[0]]], [2])
    assert opt.state[params[0]]["momentum_buffer"].dtype == np.float32
    assert host(params[0].data).dtype == np.float32
    expected = ref_sgd(values[0], grads[0][:3], lr=0.1, momentum=0.9)  # the buffer carried on
    np.testing.assert_allclose(host(params[0].data), expected, rtol=1e-5, atol=1e-6)
