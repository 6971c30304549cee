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
}


def host_problem(dtype, seed=0, steps=STEPS):
    """Initial values and a gradient sequence per parameter, on the host."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for _ in range(steps)] for s in SHAPES]
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
