"""PyTorch as the reference: run a tensornet layer (or loss) and its torch twin on the same
host inputs and parameters, forward and backward, and compare after converting to NumPy.

Importing this module needs nothing; ``torch_or_skip()`` skips the calling test cleanly
when torch is not installed (it is not a tensornet dependency).
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch (the reference) is not installed")


@contextlib.contextmanager
def double_scalars():
    """torch.optim makes a parameter's step count and NAdam's ``mu_product`` tensors of
    the default dtype (float32 unless changed), tensornet keeps them as Python numbers:
    inside this context torch makes them float64, so that float64 runs agree to rounding
    (with float32, NAdam's product alone differs by ~1e-9 after 20 steps)."""
    torch = torch_or_skip()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


def step_torch(torch, opt, params, grads, steps) -> None:
    """Run torch optimizer ``opt`` over ``steps``: ``params[i]`` gets ``grads[i][t]`` (host
    arrays) at step ``t`` (its scalars in float64: ``double_scalars``)."""
    for t in steps:
        for q, seq in zip(params, grads):
            q.grad = torch.from_numpy(seq[t].copy())
        with double_scalars():
            opt.step()


def assert_params_match_torch(ours, theirs, dtype, tolerance) -> None:
    """tensornet Parameters ``ours`` hold ``dtype`` and torch's ``theirs``' values."""
    for p, q in zip(ours, theirs):
        got = np.array(tn.asnumpy(p.data), copy=True)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, q.detach().numpy(), **tolerance)


def assert_state_matches_torch(opt, ours, reference, theirs, steps, tolerance) -> None:
    """Optimizer ``opt``'s state of each of ``ours`` holds torch's ``reference``'s of
    ``theirs``, under the same names: the step count ``steps``, the rest within
    ``tolerance``."""
    for p, q in zip(ours, theirs):
        assert sorted(opt.state[p]) == sorted(reference.state[q])
        for key, value in reference.state[q].items():
            mine = opt.state[p][key]
            if key == "step":
                assert mine == int(value) == steps
            else:
                got = np.array(tn.asnumpy(mine)) if hasattr(mine, "shape") else mine
                np.testing.assert_allclose(got, value.numpy(), **tolerance)


def _tensor(torch, array, grad: bool = False):
    t = torch.from_numpy(np.array(array, copy=True))
    return t.requires_grad_(True) if grad else t


def copy_parameters(layer, reference) -> None:
    """Give the torch module the tensornet layer's parameters (same names and layouts)."""
    torch = torch_or_skip()
    ours = dict(layer.named_parameters())
    theirs = dict(reference.named_parameters())
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    with torch.no_grad():
        for name, param in theirs.items():
            param.copy_(_tensor(torch, tn.asnumpy(ours[name].data)))


def compare_layer(layer, reference, x, device, *, rtol=1e-10, atol=1e-12, seed=0):
    """Forward ``x`` (host) through both, backward a random gradient; compare the output,
    the input gradient (float inputs) and every parameter gradient."""
    torch = torch_or_skip()
    copy_parameters(layer, reference)
    backend = get_backend(device)
    x_t = _tensor(torch, x, grad=x.dtype.kind == "f")
    y_t = reference(x_t)
    out_dtype = np.dtype(str(y_t.dtype).split(".")[-1])
    dy = np.random.default_rng(seed).standard_normal(tuple(y_t.shape)).astype(out_dtype)
    y_t.backward(_tensor(torch, dy))
    y = layer(backend.asarray(x))
    dx = layer.backward(backend.asarray(dy))
    np.testing.assert_allclose(tn.asnumpy(y), y_t.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg=f"{layer!r} forward")
    if x.dtype.kind == "f":
        np.testing.assert_allclose(tn.asnumpy(dx), x_t.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{layer!r} input gradient")
    else:
        assert dx is None
    theirs = dict(reference.named_parameters())
    for name, param in layer.named_parameters():
        np.testing.assert_allclose(tn.asnumpy(param.grad), theirs[name].grad.numpy(),
                                   rtol=rtol, atol=atol, err_msg=f"{layer!r} {name} gradient")


def compare_loss(loss, reference, pred, target, device, *, rtol=1e-10, atol=1e-12, seed=0):
    """Both losses on the same (pred, target); the value and d loss / d pred, with a
    random output gradient for ``reduction='none'`` and 0.7 otherwise."""
    torch = torch_or_skip()
    backend = get_backend(device)
    pred_t = _tensor(torch, pred, grad=True)
    out_t = reference(pred_t, _tensor(torch, target))
    if out_t.ndim:
        grad = np.random.default_rng(seed).standard_normal(tuple(out_t.shape)).astype(pred.dtype)
        out_t.backward(_tensor(torch, grad))
        grad_in = backend.asarray(grad)
    else:
        out_t.backward(torch.tensor(0.7, dtype=out_t.dtype))
        grad_in = 0.7
    out = loss(backend.asarray(pred), backend.asarray(target))
    dpred = loss.backward(grad_in)
    np.testing.assert_allclose(tn.asnumpy(out), out_t.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg=f"{loss!r} value")
    np.testing.assert_allclose(tn.asnumpy(dpred), pred_t.grad.numpy(), rtol=rtol, atol=atol,
                               err_msg=f"{loss!r} gradient")
