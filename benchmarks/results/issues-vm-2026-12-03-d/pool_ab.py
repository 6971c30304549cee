"""Training steps with OpenBLAS's work on tensornet's spin pool ("pool":
tn.set_num_threads(2), the hook of backends/threads.py) against the executor pool and
OpenBLAS's own threads ("own": the state before this session), alternating in one process.
Run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-d/pool_ab.py [mlp|cnn] [ROUNDS]
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import tensornet as tn  # noqa: E402
from tensornet.backends import threads  # noqa: E402
from benchmarks.common import build_model, build_optimizer, synthetic_mnist  # noqa: E402

name = sys.argv[1] if len(sys.argv) > 1 else "mlp"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
batch, batches = 128, 60 if name == "mlp" else 30
x, y = synthetic_mnist(batch * batches, 0)
if name == "mlp":
    x = np.ascontiguousarray(x.reshape(len(x), -1))
model = build_model(name)
opt = build_optimizer(name, model.parameters())
loss = tn.nn.CrossEntropyLoss()


def steps(n=batches):
    start = time.perf_counter()
    for b in range(n):
        tn.train_step(model, loss, opt, x[b * batch:(b + 1) * batch],
                      y[b * batch:(b + 1) * batch])
    return (time.perf_counter() - start) / n * 1e3


def use(kind):
    if kind == "pool":
        tn.set_num_threads(2)
        assert threads.spinning() and threads._pool_state[1]._hook is not None
    else:
        threads.reset_num_threads()
        threads._pool_state[1].close() if threads._pool_state else None
        threads._pool_state = None
        threads._spinning = False  # else the default decides again: the spin pool
        assert not threads._hooks
    time.sleep(0.3)  # OpenBLAS's idle worker stops spinning
    steps(3)
    assert threads.spinning() == (kind == "pool") and bool(threads._hooks) == (kind == "pool")


times = {"own": [], "pool": []}
for r in range(rounds):
    for kind in (("own", "pool") if r % 2 else ("pool", "own")):
        use(kind)
        times[kind].append(steps())
print(f"{name} step, ms (median of {rounds} rounds of {batches} steps, batch {batch}):")
for kind, values in times.items():
    print(f"  {kind:5s} {np.median(values):7.2f}   rounds: "
          + ", ".join(f"{v:.2f}" for v in values))
print(f"  pool / own = {np.median(times['pool']) / np.median(times['own']):.3f}")
