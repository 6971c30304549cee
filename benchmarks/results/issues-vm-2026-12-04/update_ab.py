"""The optimizer update split over the spin pool's two threads, or on one: SGD with
momentum (the MLP benchmark's optimizer), us a step.

From the repository root, ``python benchmarks/results/issues-vm-2026-12-04/update_ab.py
sizes``: ``opt.step()`` alone
on 240K, 500K and 1M parameters, with the data in cache ("hot") and after streaming 64 MB
through the cache ("cold"); medians of 60 steps, best of 3 rounds a mode.
``... update_ab.py step``: inside the MLP's training step (the README loop), blocks of 20
steps alternating between the two modes, medians over 3 epochs after a warm-up epoch.
``... update_ab.py step 1024``: the same for the scaling sweep's MLP 784-W-W/2-W/4-10 at
W = 1024 (1.46M parameters), on 10,240 samples and 6 epochs, also with pieces of 64K.
The split is switched through ``UPDATE_CHUNK_MIN`` (the threshold fused_update hands
run_tasks): ``SPIN_CHUNK_MIN`` = split as the other kernels are, 2**30 = never split.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import tensornet as tn  # noqa: E402
import tensornet.backends.jit as jit  # noqa: E402
from benchmarks.common import readme_mlp_training  # noqa: E402

UPDATE_CHUNK_MIN = jit.UPDATE_CHUNK_MIN  # the default, pieces of 256K
MODES = {"one thread": 1 << 30, "split": jit.SPIN_CHUNK_MIN}


def sizes():
    evict = np.ones(16 << 20, np.float32)
    for n in (240_000, 500_000, 1_000_000):
        p = tn.nn.Parameter(np.random.default_rng(0).random(n, dtype=np.float32))
        opt = tn.optim.SGD([p], lr=0.01, momentum=0.9)
        p.grad = np.random.default_rng(1).random(n, dtype=np.float32)
        opt.step()
        for cold in (False, True):
            best = {}
            for mode in tuple(MODES) * 3:
                jit.UPDATE_CHUNK_MIN = MODES[mode]
                times = []
                for _ in range(60):
                    if cold:
                        evict += 1.0
                    t0 = time.perf_counter()
                    opt.step()
                    times.append(time.perf_counter() - t0)
                best[mode] = min(best.get(mode, np.inf), np.median(times) * 1e6)
            print(f"{n:>9} {'cold' if cold else 'hot ':4}  "
                  + "  ".join(f"{m} {t:7.1f}" for m, t in best.items()))


def step(width=None):
    modes = dict(MODES)
    if width is None:
        model, opt, loss_fn, loader = readme_mlp_training()
        epochs, block = 4, 20
    else:
        sizes = (784, width, width // 2, width // 4, 10)
        model, opt, loss_fn, loader = readme_mlp_training(10240, sizes)
        epochs, block = 6, 10
        modes = {"one thread": 1 << 30, "split": UPDATE_CHUNK_MIN, "split 64K": 1 << 16}
    update = {m: [] for m in modes}
    whole = {m: [] for m in modes}
    for epoch in range(epochs):
        for i, (xb, yb) in enumerate(loader):
            mode = tuple(modes)[(i // block) % len(modes)]
            jit.UPDATE_CHUNK_MIN = modes[mode]
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward(), input_grad=False)
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            if epoch:
                update[mode].append(t2 - t1)
                whole[mode].append(t2 - t0)
    for m in modes:
        print(f"{m:>10}: update {np.median(update[m]) * 1e6:6.1f} us, "
              f"whole step {np.median(whole[m]) * 1e6:7.1f} us ({len(update[m])} steps)")


if __name__ == "__main__":
    tn.set_num_threads(2)
    print(f"threads {tn.get_num_threads()}, spin pool {jit.spinning()}")
    {"sizes": sizes, "step": step}[sys.argv[1]](*map(int, sys.argv[2:]))
