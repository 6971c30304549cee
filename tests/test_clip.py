"""Gradient clipping against NumPy norms."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.nn import Parameter

from optim_reference import host, host_problem, make_params


# ---------------------------------------------------------------------- clipping
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm_matches_numpy(any_device, norm_type):
    values, grads = host_problem(np.float32, seed=13, steps=1)
    params = make_params(any_device, values) + make_params(any_device, values[:1])
    backend = get_backend(any_device)
    for p, g in zip(params[:2], grads):
        p.grad = backend.asarray(g[0].copy())
    flat = np.concatenate([g[0].astype(np.float64).ravel() for g in grads])
    expected = np.linalg.norm(flat, ord=norm_type)

    total = tn.optim.clip_grad_norm_(params, expected / 3.0, norm_type=norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(expected, rel=1e-5)
    coef = (expected / 3.0) / (total + 1e-6)
    for p, g in zip(params[:2], grads):
        np.testing.assert_allclose(host(p.grad), g[0] * coef, rtol=1e-5, atol=1e-7)
    assert params[2].grad is None
    clipped = np.concatenate([host(p.grad).astype(np.float64).ravel() for p in params[:2]])
    assert np.linalg.norm(clipped, ord=norm_type) == pytest.approx(expected / 3.0, rel=1e-5)

    # below the threshold nothing changes, and the norm is still reported
    before = [host(p.grad) for p in params[:2]]
    again = tn.optim.clip_grad_norm_(params, expected, norm_type=norm_type)
    assert again == pytest.approx(expected / 3.0, rel=1e-5)
    for p, b in zip(params[:2], before):
        np.testing.assert_array_equal(host(p.grad), b)


def test_clip_grad_norm_edge_cases(device):
    backend = get_backend(device)
    p = Parameter(backend.asarray(np.zeros(3, np.float32)))
    assert tn.optim.clip_grad_norm_([p], 1.0) == 0.0  # no gradients at all
    p.grad = backend.asarray(np.array([3.0, 4.0, 0.0], np.float32))
    assert tn.optim.clip_grad_norm_(p, 1.0) == pytest.approx(5.0)  # a single Parameter
    np.testing.assert_allclose(host(p.grad), [0.6, 0.8, 0.0], rtol=1e-5)
    p.grad = backend.asarray(np.array([np.inf, 1.0, 0.0], np.float32))
    with pytest.raises(RuntimeError, match="inf"):
        tn.optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm"):
        tn.optim.clip_grad_norm_([p], -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        tn.optim.clip_grad_norm_([p], 1.0, norm_type=0)
    with pytest.raises(TypeError, match="not a Parameter"):
        tn.optim.clip_grad_norm_([p.grad], 1.0)


def test_clip_grad_value(any_device):
    backend = get_backend(any_device)
    values, grads = host_problem(np.float32, seed=14, steps=1)
    params = make_params(any_device, values)
    for p, g in zip(params, grads):
        p.grad = backend.asarray(g[0].copy())
    arrays = [p.grad for p in params]
    tn.optim.clip_grad_value_(params, 0.5)
    for p, g, a in zip(params, grads, arrays):
        assert p.grad is a
        np.testing.assert_array_equal(host(p.grad), np.clip(g[0], -0.5, 0.5))
    with pytest.raises(ValueError, match="clip_value"):
        tn.optim.clip_grad_value_(params, -1.0)
