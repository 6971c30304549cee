"""Finite-difference gradient check for layers and losses, yours included.

``gradcheck(module, x)`` compares ``module.backward`` with central differences of
``sum(v * module(x))`` for a random ``v``, on the input and on every trainable parameter.
``gradcheck(loss_fn, (pred, target))`` does the same for a loss (gradient w.r.t. ``pred``;
with ``reduction='none'`` through a random output gradient). An integer first input
(Embedding's indices) has no gradient: backward must return None and only the parameters
are checked.
It runs in float64: build the module with ``dtype="float64"``. Random layers (Dropout,
DropConnect) are checked with the generator re-seeded before every forward, so all
evaluations share one mask.
"""
from __future__ import annotations

import numpy as np

from tensornet.backends import dtype_name

from .loss import Loss


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree."""


def gradcheck(module, inputs, *, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4,
              check_params: bool = True, max_elements: int = 400, directions: int = 20,
              seed: int = 0) -> bool:
    """Check a module's (or loss's) backward against central differences, in float64.

    Args:
        module: a Module with ``forward``/``backward`` (a Loss: the first input is checked).
        inputs: one array or a tuple of arrays (host NumPy or the module's backend).
        eps: finite-difference step.
        atol, rtol: pass when ``|analytic - numeric| <= atol + rtol * |numeric|`` everywhere.
        check_params: also check gradients of trainable parameters.
        max_elements: arrays up to this size are checked element by element; larger ones
            along ``directions`` random directions (as Chainer's ``check_backward``).
        seed: seeds the projection vector, the directions and the module's generator.

    Returns True, or raises ``GradcheckError`` naming the input/parameter and worst element.
    """
    low = [n for n, p in module.named_parameters() if dtype_name(p.data.dtype) != "float64"]
    if low:
        raise ValueError(f"gradcheck runs in float64 but {type(module).__name__} has "
                         f"{module.dtype} parameters ({', '.join(low)}); build it with "
                         f"dtype='float64' or call .to(dtype='float64')")
    backend = module.backend
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    host_inputs = [np.asarray(backend.to_numpy(x) if backend.owns(x) else x) for x in inputs]
    host_inputs = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in host_inputs]
    is_loss = isinstance(module, Loss)
    rng = np.random.default_rng(seed)
    rng_state = backend.get_rng_state()

    def objective(x_host):
        backend.seed(seed)
        args = [backend.asarray(x_host)] + [backend.asarray(x) for x in host_inputs[1:]]
        out = module(*args)
        return np.asarray(backend.to_numpy(out), dtype=np.float64)

    try:
        out = objective(host_inputs[0])
        # A 0-d loss is checked as itself; anything else (layers, reduction='none') through
        # a random projection passed as the output gradient.
        scalar_loss = is_loss and out.ndim == 0
        projection = np.ones_like(out) if scalar_loss else rng.standard_normal(out.shape)
        for param in module.parameters():
            param.grad = None
        if scalar_loss:
            grad_in = module.backward()
        else:
            grad_in = module.backward(backend.asarray(projection))
        if host_inputs[0].dtype.kind != "f":
            # Integer inputs (Embedding's indices) have no gradient: only parameters are checked.
            if grad_in is not None:
                raise GradcheckError(f"{type(module).__name__}.backward returned a gradient "
                                     f"for an integer input; expected None")
        else:
            grad_in = np.asarray(backend.to_numpy(grad_in), dtype=np.float64)
            if grad_in.shape != host_inputs[0].shape:
                raise GradcheckError(f"{type(module).__name__}.backward returned shape "
                                     f"{grad_in.shape}; the input has shape "
                                     f"{host_inputs[0].shape}")

            def loss_of(x_host):
                return float(np.sum(projection * objective(x_host)))

            _compare(f"{type(module).__name__} input", host_inputs[0], grad_in, loss_of,
                     eps, atol, rtol, max_elements, directions, rng)

        if check_params:
            for name, param in list(module.named_parameters()):
                if not param.requires_grad:
                    continue
                analytic = (np.zeros(param.shape) if param.grad is None
                            else np.asarray(backend.to_numpy(param.grad), dtype=np.float64))
                original = param.data
                base = np.array(backend.to_numpy(original), dtype=np.float64)

                def loss_of_param(p_host, param=param):
                    param.data = backend.asarray(p_host)
                    try:
                        return float(np.sum(projection * objective(host_inputs[0])))
                    finally:
                        param.data = original

                _compare(f"{type(module).__name__} parameter {name}", base, analytic,
                         loss_of_param, eps, atol, rtol, max_elements, directions, rng)
    finally:
        backend.set_rng_state(rng_state)
    return True


def _compare(label, base, analytic, loss_of, eps, atol, rtol, max_elements, directions, rng):
    base = np.asarray(base, dtype=np.float64)
    if base.size <= max_elements:
        numeric = np.empty(base.size)
        flat = base.reshape(-1)
        for i in range(base.size):
            bumped = flat.copy()
            bumped[i] += eps
            plus = loss_of(bumped.reshape(base.shape))
            bumped[i] -= 2 * eps
            minus = loss_of(bumped.reshape(base.shape))
            numeric[i] = (plus - minus) / (2 * eps)
        numeric = numeric.reshape(base.shape)
        got = analytic
    else:
        dirs = rng.standard_normal((directions,) + base.shape)
        numeric = np.array([(loss_of(base + eps * d) - loss_of(base - eps * d)) / (2 * eps)
                            for d in dirs])
        got = np.array([np.sum(analytic * d) for d in dirs])
    error = np.abs(got - numeric)
    bound = atol + rtol * np.abs(numeric)
    # A NaN on either side (a forward that yields NaN makes the differences NaN) fails:
    # nothing was checked there.
    passed = error <= bound
    if not np.all(passed):
        excess = np.where(passed, -np.inf, np.nan_to_num(error - bound, nan=np.inf))
        worst = np.unravel_index(np.argmax(excess), error.shape)
        raise GradcheckError(
            f"gradcheck failed for {label}: at {tuple(int(i) for i in worst)} analytic "
            f"{got[worst]:.8g} vs numeric {numeric[worst]:.8g} (|diff| {error[worst]:.3g} > "
            f"{bound[worst]:.3g}); max |diff| over all {error.max():.3g}")
