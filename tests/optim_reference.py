"""Shared by the optimizer tests: the published update rules written out in NumPy float64,
the configurations tested, and host-side problem data."""
import functools

import numpy as np

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.nn import Parameter

SHAPES = [(3, 4), (5,)]
STEPS = 5


# ---------------------------------------------------------------------- reference rules
def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    buf = None
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1.0 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             decoupled=False):
    b1, b2 = betas
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1.0 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        m_hat, v_hat = m / (1.0 - b1 ** t), v / (1.0 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def ref_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
    s = buf = np.zeros_like(p)
    for g in grads:
        g = g + weight_decay * p
        s = alpha * s + (1.0 - alpha) * g * g
        d = g / (np.sqrt(s) + eps)
        if momentum:
            buf = momentum * buf + d
            d = buf
        p = p - lr * d
    return p


def ref_adagrad(p, grads, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                initial_accumulator_value=0.0, eps=1e-10):
    s = np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        s = s + g * g
        p = p - lr / (1.0 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return p


def _decayed(p, g, lr, weight_decay, decoupled, maximize):
    """(p, g) after maximize's negation and weight decay, L2 or decoupled (Loshchilov &
    Hutter)."""
    g = -g if maximize else g
    if decoupled:
        return p * (1.0 - lr * weight_decay), g
    return p, g + weight_decay * p


def ref_nadam(p, grads, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False):
    """Dozat (2016), with PyTorch's schedule mu_t = beta1 (1 - 0.96^(t psi) / 2) and its
    products prod_{i<=t} mu_i in the bias corrections."""
    b1, b2 = betas
    m = v = np.zeros_like(p)
    mu_product = 1.0
    for t, g in enumerate(grads, start=1):
        p, g = _decayed(p, g, lr, weight_decay, decoupled_weight_decay, maximize)
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product *= mu
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        m_hat = mu_next * m / (1.0 - mu_product * mu_next) + (1.0 - mu) * g / (1.0 - mu_product)
        p = p - lr * m_hat / (np.sqrt(v / (1.0 - b2 ** t)) + eps)
    return p


def radam_rho(beta2, t):
    """(rho_inf, rho_t): Liu et al. (2020), the length of the approximated SMA."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    return rho_inf, rho_inf - 2.0 * t * beta2 ** t / (1.0 - beta2 ** t)


def ref_radam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled_weight_decay=False, maximize=False):
    """Liu et al. (2020), algorithm 2: SGD with momentum while rho_t <= 5."""
    b1, b2 = betas
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p, g = _decayed(p, g, lr, weight_decay, decoupled_weight_decay, maximize)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        m_hat = m / (1.0 - b1 ** t)
        rho_inf, rho_t = radam_rho(b2, t)
        if rho_t > 5.0:
            adaptive = np.sqrt(1.0 - b2 ** t) / (np.sqrt(v) + eps)
            r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2)
                                                              * rho_t))
            p = p - lr * r * m_hat * adaptive
        else:
            p = p - lr * m_hat
    return p


def ref_adadelta(p, grads, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """Zeiler (2012), algorithm 1, the step scaled by lr."""
    e_g2 = e_dx2 = np.zeros_like(p)
    for g in grads:
        g = -g if maximize else g
        g = g + weight_decay * p
        e_g2 = rho * e_g2 + (1.0 - rho) * g * g
        dx = np.sqrt(e_dx2 + eps) / np.sqrt(e_g2 + eps) * g
        e_dx2 = rho * e_dx2 + (1.0 - rho) * dx * dx
        p = p - lr * dx
    return p


def ref_rprop(p, grads, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), maximize=False):
    """Riedmiller & Braun (1993) without weight backtracking (as PyTorch): after a sign
    flip the step is skipped and the gradient taken as 0."""
    eta_minus, eta_plus = etas
    delta = np.full_like(p, lr)
    prev = np.zeros_like(p)
    for g in grads:
        g = -g if maximize else g
        change = np.sign(g * prev)
        delta = np.where(change > 0, delta * eta_plus, np.where(change < 0, delta * eta_minus,
                                                                delta))
        delta = np.clip(delta, *step_sizes)
        g = np.where(change < 0, 0.0, g)
        p = p - np.sign(g) * delta
        prev = g
    return p


CONFIGS = {
    "sgd": (tn.optim.SGD, ref_sgd, dict(lr=0.1)),
    "sgd-momentum-dampening-wd": (tn.optim.SGD, ref_sgd,
                                  dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    "sgd-nesterov-wd": (tn.optim.SGD, ref_sgd,
                        dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "adagrad": (tn.optim.Adagrad, ref_adagrad, dict(lr=0.1)),
    "adagrad-decay-wd-init": (tn.optim.Adagrad, ref_adagrad,
                              dict(lr=0.1, lr_decay=0.2, weight_decay=0.05,
                                   initial_accumulator_value=0.5, eps=1e-6)),
    "rmsprop": (tn.optim.RMSprop, ref_rmsprop, dict(lr=0.01)),
    "rmsprop-momentum-wd": (tn.optim.RMSprop, ref_rmsprop,
                            dict(lr=0.01, alpha=0.9, momentum=0.7, weight_decay=0.05)),
    "adam": (tn.optim.Adam, ref_adam, dict(lr=0.01)),
    "adam-l2": (tn.optim.Adam, ref_adam,
                dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": (tn.optim.AdamW, functools.partial(ref_adam, weight_decay=1e-2, decoupled=True),
              dict(lr=0.01)),
    "adamw-wd": (tn.optim.AdamW, functools.partial(ref_adam, decoupled=True),
                 dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.2)),
    "nadam": (tn.optim.NAdam, ref_nadam, dict(lr=0.01)),
    "nadam-l2-momentum-decay": (tn.optim.NAdam, ref_nadam,
                                dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1,
                                     momentum_decay=0.05)),
    "nadamw": (tn.optim.NAdam, ref_nadam, dict(lr=0.01, weight_decay=0.2,
                                               decoupled_weight_decay=True)),
    "radam": (tn.optim.RAdam, ref_radam, dict(lr=0.01)),
    "radamw": (tn.optim.RAdam, ref_radam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.2,
                                               decoupled_weight_decay=True)),
    "adadelta": (tn.optim.Adadelta, ref_adadelta, dict(lr=1.0)),
    "adadelta-wd": (tn.optim.Adadelta, ref_adadelta, dict(lr=0.5, rho=0.8, eps=1e-4,
                                                          weight_decay=0.1)),
    "rprop": (tn.optim.Rprop, ref_rprop, dict(lr=0.01)),
    "rprop-etas-clamps": (tn.optim.Rprop, ref_rprop, dict(lr=0.05, etas=(0.3, 1.5),
                                                          step_sizes=(0.02, 0.08))),
}


def host_problem(dtype, seed=0, steps=STEPS, shapes=SHAPES):
    """Initial values and a gradient sequence per parameter, on the host."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for _ in range(steps)] for s in shapes]
    return values, grads


def make_params(device, values):
    backend = get_backend(device)
    return [Parameter(backend.asarray(v.copy())) for v in values]


def run(opt, params, grads, steps):
    backend = get_backend(params[0].data)
    for t in steps:
        for param, seq in zip(params, grads):
            param.grad = backend.asarray(seq[t].copy())
        opt.step()


def host(x):
    return np.array(tn.asnumpy(x), copy=True)
