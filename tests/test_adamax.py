"""Adamax against its published rule and against PyTorch's torch.optim.Adamax; it was added
touching only tensornet/optim/adamax.py and tensornet/optim/__init__.py."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend

from optim_reference import STEPS, host, host_problem, make_params, run


def ref_adamax(p, grads, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """Kingma & Ba (2015), algorithm 2, with PyTorch's eps inside the max."""
    b1, b2 = betas
    m = u = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = b1 * m + (1.0 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        p = p - lr / (1.0 - b1 ** t) * m / u
    return p


CASES = [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)]


@pytest.mark.parametrize("kwargs", CASES)
def test_adamax_follows_the_published_rule(device, kwargs):
    values, grads = host_problem(np.float64, seed=31)
    params = make_params(device, values)
    run(tn.optim.Adamax(params, **kwargs), params, grads, range(STEPS))
    for param, v, seq in zip(params, values, grads):
        np.testing.assert_allclose(host(param.data), ref_adamax(v, seq, **kwargs),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs", CASES)
def test_adamax_matches_pytorch(kwargs):
    torch = pytest.importorskip("torch")
    values, grads = host_problem(np.float64, seed=32, steps=20)
    params = make_params("cpu", values)
    run(tn.optim.Adamax(params, **kwargs), params, grads, range(20))
    tparams = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    topt = torch.optim.Adamax(tparams, **{"lr": 2e-3, **kwargs})
    for t in range(20):
        for p, seq in zip(tparams, grads):
            p.grad = torch.tensor(seq[t].copy())
        topt.step()
    for ours, theirs in zip(params, tparams):
        np.testing.assert_allclose(host(ours.data), theirs.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_adamax_state_and_one_fused_update_per_group(device, monkeypatch):
    values, grads = host_problem(np.float32, seed=33)
    params = make_params(device, values)
    opt = tn.optim.Adamax(params)
    backend = get_backend(device)
    calls = []
    original = type(backend).fused_update
    monkeypatch.setattr(type(backend), "fused_update",
                        lambda self, *a: calls.append(a[0].name) or original(self, *a))
    run(opt, params, grads, range(2))
    assert calls == ["adamax", "adamax"]
    assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_inf"}
    assert opt.state[params[0]]["step"] == 2
    assert "adamax" in {rule.name for rule in tn.optim.fused_updates()}
