"""Softmax cross-entropy on the benchmark MLP's logits, (128, 10) float32, with hot caches:
the compiled kernels through the backend hook, and the loss module as the training loop
calls it (forward alone; forward then backward, since a backward consumes its forward); us
a call, best of 5 rounds of 20000 calls. ``run_all.sh`` runs it on the commit before and on
this one, each tree importing its own ``tensornet`` and ``backends/``."""
import time

import numpy as np

import tensornet as tn
from tensornet.backends.jit import basic


def timed(f, reps=20000):
    f()
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps * 1e6)
    return best


rng = np.random.default_rng(0)
logits = rng.standard_normal((128, 10)).astype(np.float32)
labels = rng.integers(0, 10, 128)
losses, log_probs = basic.softmax_cross_entropy(logits, labels, 0.0)
loss_fn = tn.nn.CrossEntropyLoss()
loss_fn(logits, labels)
print(f"tensornet at {tn.__file__}")
forward = lambda: basic.softmax_cross_entropy(logits, labels, 0.0)  # noqa: E731
backward = lambda: basic.softmax_cross_entropy_backward(  # noqa: E731
    log_probs, labels, 1 / 128, 0.0)
for name, call in [("kernel forward", forward), ("kernel backward", backward),
                   ("module forward", lambda: loss_fn(logits, labels)),
                   ("module fwd + bwd", lambda: (loss_fn(logits, labels), loss_fn.backward()))]:
    print(f"{name:16} {timed(call):6.2f} us")
