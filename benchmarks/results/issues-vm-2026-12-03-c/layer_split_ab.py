"""Experiment of this folder's README (the spin pool, not kept); run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-c/layer_split_ab.py [cnn]
"""
import sys, os, time, numpy as np
HERE = os.path.dirname(os.path.abspath(__file__)); sys.path[:0] = [HERE, os.path.join(HERE, "..", "..", "..")]
import tensornet as tn
import tensornet.backends.jit as J
import tensornet.backends.numpy as NB
from tensornet.backends import threads as TH
from benchmarks.common import build_model, build_optimizer, synthetic_mnist
from benchmarks.cnn_cpu import layer_split
from threadpoolctl import threadpool_limits
import spin_pool as pool
real = TH.run_chunks
tn.set_num_threads(2)
threadpool_limits(1, user_api="blas")
def use(kind, chunk):
    TH._chosen = 1 if kind == "one" else 2
    J.run_chunks = NB.run_chunks = (pool.run_chunks if kind == "spin" else real)
    J.CHUNK_MIN = chunk
x, y = synthetic_mnist(128 * 40, 0)
model = build_model("cnn"); opt = build_optimizer("cnn", model.parameters())
loss = tn.nn.CrossEntropyLoss()
order = np.arange(len(x))
configs = [("one", 1 << 20), ("spin", 1 << 16)]
acc = {c: [] for c in configs}
for r in range(3):
    for c in configs:
        use(*c); layer_split(model, opt, loss, x, y, order, batches=10)
        acc[c].append(layer_split(model, opt, loss, x, y, order, batches=40))
for c in configs:
    print(c)
    rows = acc[c][0].keys()
    for k in rows:
        f = np.median([a[k][0] for a in acc[c]]); b = np.median([a[k][1] for a in acc[c]])
        print("  %-16s %7.3f %7.3f" % (k, f, b))
