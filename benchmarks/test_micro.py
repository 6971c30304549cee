"""Micro-benchmarks (pytest-benchmark) of the layers, the loss and the optimizer steps, at
the shapes of the MLP / CNN benchmark, per available backend (numpy; cupy with a GPU).

    pytest benchmarks --benchmark-only                 # all
    pytest benchmarks --benchmark-only -k "cupy"       # one backend

Not part of the default test run (``testpaths = ["tests"]``). Each benchmark synchronises
the device inside the timed function, so GPU figures include the kernels, not just their
launch. Every benchmark checks its result's shape, so a broken layer fails here instead of
timing an exception. CPU thread pools are pinned to ``$BENCH_THREADS`` (default: all
logical cores) and the count is saved in each benchmark's ``extra_info``; on a machine
shared with other jobs use ``BENCH_THREADS=1``: multi-threaded BLAS on busy cores can be
ten times slower than one thread.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

BATCH = 128


def _backends():
    params = [pytest.param("cpu", id="numpy")]
    try:
        get_backend("cuda")
        params.append(pytest.param("cuda", id="cupy"))
    except Exception as exc:  # no CuPy / no GPU: listed as skipped, with the reason
        params.append(pytest.param("cuda", id="cupy", marks=pytest.mark.skip(
            reason=f"no GPU backend: {exc}")))
    return params


@pytest.fixture(scope="module", autouse=True)
def pinned_threads():
    from threadpoolctl import threadpool_limits
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
    with threadpool_limits(limits=threads):
        yield threads


@pytest.fixture(params=_backends())
def device(request):
    return request.param


def _data(device, *shape, seed=0):
    rng = np.random.default_rng(seed)
    return tn.to_device(rng.standard_normal(shape).astype(np.float32), device)


@pytest.fixture
def benchmark_pinned(benchmark, pinned_threads):
    benchmark.extra_info["threads"] = pinned_threads
    return benchmark


def _timed(benchmark, device, fn):
    """Benchmark ``fn`` with the device synchronised before returning."""
    backend = get_backend(device)

    def run():
        out = fn()
        backend.synchronize()
        return out
    return benchmark(run)


# (name, layer factory, input shape): the benchmark models' layers at batch 128
LAYERS = [
    ("linear-784-256", lambda: nn.Linear(784, 256), (BATCH, 784)),
    ("linear-784-128", lambda: nn.Linear(784, 128), (BATCH, 784)),
    ("conv-1-8", lambda: nn.Conv2d(1, 8, 3, padding=1), (BATCH, 1, 28, 28)),
    ("conv-8-16", lambda: nn.Conv2d(8, 16, 3, padding=1), (BATCH, 8, 14, 14)),
    ("maxpool-8x28", lambda: nn.MaxPool2d(2), (BATCH, 8, 28, 28)),
    ("maxpool-16x14", lambda: nn.MaxPool2d(2), (BATCH, 16, 14, 14)),
    ("batchnorm-8x28", lambda: nn.BatchNorm2d(8), (BATCH, 8, 28, 28)),
    ("batchnorm-16x14", lambda: nn.BatchNorm2d(16), (BATCH, 16, 14, 14)),
    ("relu-256", lambda: nn.ReLU(), (BATCH, 256)),
]


@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_forward(benchmark_pinned, device, name, factory, shape):
    layer = factory().to(device)
    x = _data(device, *shape)
    y = _timed(benchmark_pinned, device, lambda: layer(x))
    assert y.shape[0] == BATCH


@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_backward(benchmark_pinned, device, name, factory, shape):
    layer = factory().to(device)
    x = _data(device, *shape)
    y = layer(x)
    grad = _data(device, *y.shape, seed=1)

    def backward():
        layer.zero_grad()  # each call starts from no gradient, like a training step
        return layer.backward(grad, retain_graph=True)  # timed again on the same forward
    dx = _timed(benchmark_pinned, device, backward)
    assert tuple(dx.shape) == shape


def _logits_labels(device):
    logits = _data(device, BATCH, 10)
    labels = tn.to_device(np.random.default_rng(2).integers(0, 10, BATCH), device)
    return logits, labels


def test_cross_entropy_forward(benchmark_pinned, device):
    loss_fn = nn.CrossEntropyLoss()
    logits, labels = _logits_labels(device)
    loss = _timed(benchmark_pinned, device, lambda: loss_fn(logits, labels))
    assert loss.shape == ()


def test_cross_entropy_backward(benchmark_pinned, device):
    loss_fn = nn.CrossEntropyLoss()
    logits, labels = _logits_labels(device)
    loss_fn(logits, labels)
    grad = _timed(benchmark_pinned, device, lambda: loss_fn.backward(retain_graph=True))
    assert tuple(grad.shape) == (BATCH, 10)


OPTIMIZERS = {
    "sgd-momentum": lambda p: tn.optim.SGD(p, lr=0.01, momentum=0.9),
    "adam": lambda p: tn.optim.Adam(p, lr=1e-3),
    "adam-amsgrad": lambda p: tn.optim.Adam(p, lr=1e-3, amsgrad=True),
    "adam-maximize": lambda p: tn.optim.Adam(p, lr=1e-3, maximize=True),
    "adamw": lambda p: tn.optim.AdamW(p, lr=1e-3),
    "rmsprop": lambda p: tn.optim.RMSprop(p, lr=1e-3),
    "rmsprop-centered": lambda p: tn.optim.RMSprop(p, lr=1e-3, centered=True),
    "adagrad": lambda p: tn.optim.Adagrad(p, lr=1e-2),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_step(benchmark_pinned, device, name):
    """One step over the MLP's parameters (235,146 floats in 8 arrays)."""
    from benchmarks.common import build_model
    model = build_model("mlp", device)
    for i, p in enumerate(model.parameters()):
        p.grad = _data(device, *p.shape, seed=10 + i)
    opt = OPTIMIZERS[name](model.parameters())
    before = tn.asnumpy(model[0].weight.data).copy()
    _timed(benchmark_pinned, device, opt.step)
    assert not np.array_equal(before, tn.asnumpy(model[0].weight.data))
