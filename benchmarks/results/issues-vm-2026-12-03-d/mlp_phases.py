"""Where the MLP's training step goes: the README loop (DataLoader, Sequential, loss, SGD
momentum; batch 128, 60,000 synthetic samples) timed phase by phase, median of 3 epochs of
469 steps each, after one warm-up epoch. Run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-d/mlp_phases.py [THREADS]
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import tensornet as tn
from benchmarks.common import build_model, build_optimizer, synthetic_mnist, BATCH
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
tn.set_num_threads(threads)
print(f"{threads} thread(s)")
x, y = synthetic_mnist(60000, 0)
x = np.ascontiguousarray(x.reshape(len(x), -1))
model = build_model("mlp"); opt = build_optimizer("mlp", model.parameters())
loss_fn = tn.nn.CrossEntropyLoss()
loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), BATCH, shuffle=True)
names = ["load", "zero", "fwd", "loss", "lossbwd", "bwd", "step"]
T = {k: [] for k in names}
def epoch(record):
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            xb, yb = next(it)
        except StopIteration:
            return
        t1 = time.perf_counter(); opt.zero_grad()
        t2 = time.perf_counter(); out = model(xb)
        t3 = time.perf_counter(); l = loss_fn(out, yb)
        t4 = time.perf_counter(); g = loss_fn.backward()
        t5 = time.perf_counter(); model.backward(g, input_grad=False)
        t6 = time.perf_counter(); opt.step()
        t7 = time.perf_counter()
        if record:
            for k, a, b in zip(names, (t0,t1,t2,t3,t4,t5,t6), (t1,t2,t3,t4,t5,t6,t7)):
                T[k].append(b - a)
epoch(False)
for _ in range(3): epoch(True)
tot = 0
for k in names:
    m = np.median(T[k]) * 1e6; tot += m
    print(f"{k:8s} {m:8.1f} us  mean {np.mean(T[k])*1e6:8.1f}")
print(f"sum of medians {tot:.1f} us; steps/epoch {len(loader)}")
