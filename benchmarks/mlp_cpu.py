"""tensornet vs a hand-written NumPy loop: one epoch of the 784-256-120-64-10 ReLU MLP.

    python -m benchmarks.mlp_cpu [--reps 5] [--threads N] [--samples 60000]

Both sides train the same model (same initial weights, same batch order, batch 128,
SGD lr 0.01 momentum 0.9, float32) on 60,000 synthetic MNIST-shaped samples in the same
process; epochs alternate between the two so that machine noise hits both alike. Printed:
the median seconds per epoch of each side, their ratio (target tensornet / hand-written
<= 1.10), and a same-math check: a short float64 run of both sides ends with the same
weights to rounding error.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from benchmarks.common import (BATCH, MLP_SGD, SEED, Clock, build_model, build_optimizer,
                               epoch_order, median, pin_threads, synthetic_mnist)


# ---------------------------------------------------------------------- the hand-written loop
def hand_written_epoch(params, velocity, x, y, order, lr, momentum):
    """One epoch of the MLP in plain NumPy: forward, softmax cross-entropy, backward, SGD
    with momentum (PyTorch's form: v = momentum * v + g; p -= lr * v). Updates ``params``
    (W1, b1, ..., W4, b4 with PyTorch layouts) and ``velocity`` in place; returns the last loss.
    """
    W1, b1, W2, b2, W3, b3, W4, b4 = params
    grads = [None] * 8
    loss = None
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        xb, yb = x[idx], y[idx]
        n = len(idx)
        rows = np.arange(n)
        # forward
        h1 = xb @ W1.T
        h1 += b1
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ W2.T
        h2 += b2
        np.maximum(h2, 0, out=h2)
        h3 = h2 @ W3.T
        h3 += b3
        np.maximum(h3, 0, out=h3)
        logits = h3 @ W4.T
        logits += b4
        # softmax cross-entropy, mean over the batch
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        loss = -np.log(probs[rows, yb]).mean()
        # backward: d loss / d logits = (softmax - onehot) / n
        g = probs
        g[rows, yb] -= 1.0
        g /= n
        grads[6] = g.T @ h3
        grads[7] = g.sum(axis=0)
        g = g @ W4
        g *= h3 > 0
        grads[4] = g.T @ h2
        grads[5] = g.sum(axis=0)
        g = g @ W3
        g *= h2 > 0
        grads[2] = g.T @ h1
        grads[3] = g.sum(axis=0)
        g = g @ W2
        g *= h1 > 0
        grads[0] = g.T @ xb
        grads[1] = g.sum(axis=0)
        # SGD with momentum; the velocity starts at zero, so its first value is the gradient
        for p, v, grad in zip(params, velocity, grads):
            v *= momentum
            v += grad
            p -= lr * v
    return loss


# ---------------------------------------------------------------------- tensornet
def tensornet_epoch(model, opt, loss_fn, loader, input_grad=False):
    """One epoch through tensornet's public API (DataLoader, Sequential, loss, SGD), written
    as the README's hand-written loop."""
    loss = None
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        model.backward(loss_fn.backward(), input_grad=input_grad)
        opt.step()
    return loss


def same_math_gap(x, y, rows) -> float:
    """Largest relative difference between the weights tensornet and the hand-written loop
    reach after training on ``rows`` in float64, where rounding cannot hide a difference in
    the math (float32 runs drift apart through rounding amplified by the training itself)."""
    import tensornet as tn
    x64 = x[rows].astype(np.float64)
    model = build_model("mlp").to(dtype="float64")
    params = [np.array(p.data) for p in model.parameters()]
    velocity = [np.zeros_like(p) for p in params]
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x64, y[rows]), BATCH)
    tensornet_epoch(model, build_optimizer("mlp", model.parameters()), tn.nn.CrossEntropyLoss(),
                    loader)
    hand_written_epoch(params, velocity, x64, y[rows], np.arange(len(rows)), **MLP_SGD)
    return max(float(np.max(np.abs(np.asarray(p.data) - q)) / np.max(np.abs(q)))
               for p, q in zip(model.parameters(), params))


def run(reps: int = 5, samples: int = 60000, warmup_batches: int = 20) -> dict:
    """Time ``reps`` epochs of each side, rotating which side goes first each repetition."""
    import tensornet as tn
    import tensornet.data  # noqa: F401  (tn.data)

    x, y = synthetic_mnist(samples, SEED)
    x = np.ascontiguousarray(x.reshape(samples, -1))
    initial = [np.array(p.data) for p in build_model("mlp").parameters()]
    order = epoch_order(samples, 0)  # the order DataLoader(seed=SEED) uses in epoch 0
    clock = Clock()

    def tensornet_side(input_grad):
        def epoch(rows=None):
            model = build_model("mlp")
            opt = build_optimizer("mlp", model.parameters())
            data = tn.data.ArrayDataset(x, y) if rows is None else \
                tn.data.ArrayDataset(x[rows], y[rows])
            loader = tn.data.DataLoader(data, BATCH, shuffle=rows is None, seed=SEED)
            clock.start()
            loss = tensornet_epoch(model, opt, tn.nn.CrossEntropyLoss(), loader, input_grad)
            return clock.stop(), loss, [np.asarray(p.data) for p in model.parameters()]
        return epoch

    def hand_side(rows=None):
        params = [w.copy() for w in initial]
        velocity = [np.zeros_like(w) for w in initial]
        clock.start()
        loss = hand_written_epoch(params, velocity, x, y, order if rows is None else rows,
                                  **MLP_SGD)
        return clock.stop(), loss, params

    sides = {"tensornet": tensornet_side(False), "hand-written": hand_side,
             "tensornet, input grad": tensornet_side(True)}
    warm = order[:warmup_batches * BATCH]
    for epoch in sides.values():  # warm-up: BLAS buffers, first-call overheads
        epoch(warm)
    times = {name: [] for name in sides}
    final = {}
    names = list(sides)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            elapsed, loss, _ = sides[name]()
            times[name].append(elapsed)
            final[name] = float(loss)

    wall = {k: [t[0] for t in v] for k, v in times.items()}
    cpu = {k: [t[1] for t in v] for k, v in times.items()}
    hand = median(wall["hand-written"])
    return {
        "samples": samples, "reps": reps, "wall_s": {k: median(v) for k, v in wall.items()},
        "cpu_s": {k: median(v) for k, v in cpu.items()},
        "ratio": {k: median(v) / hand for k, v in wall.items()},
        "paired_ratio": {k: median([a / b for a, b in zip(v, wall["hand-written"])])
                         for k, v in wall.items()},
        "all_wall_s": wall, "final_loss": final,
        "float64_gap": same_math_gap(x, y, order[:20 * BATCH]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mlp_cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="epochs per side (median taken)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="BLAS threads (default: all logical cores)")
    parser.add_argument("--samples", type=int, default=60000)
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    r = run(args.reps, args.samples)
    print(f"MLP 784-256-120-64-10, batch {BATCH}, SGD momentum 0.9, float32, "
          f"{r['samples']} synthetic samples, {args.threads} BLAS thread(s), "
          f"median of {r['reps']} epochs per side (wall clock; CPU time in brackets)")
    for name in r["wall_s"]:
        print(f"  {name:22s} {r['wall_s'][name]:.3f} s/epoch (CPU {r['cpu_s'][name]:.3f} s)  "
              f"/ hand-written = {r['ratio'][name]:.3f} (paired {r['paired_ratio'][name]:.3f})")
    print(f"  target: tensornet / hand-written <= 1.10 -> {r['ratio']['tensornet']:.3f}")
    print("  'tensornet' skips the data gradient of the first layer "
          "(model.backward(grad, input_grad=False)), as the hand-written loop and PyTorch "
          "do; "
          "'tensornet, input grad' computes it (the default).")
    print("  final loss: " + ", ".join(f"{k} {v:.4f}" for k, v in r["final_loss"].items()))
    print(f"  same math: after 20 batches in float64 the weights of tensornet and the "
          f"hand-written loop differ by at most {r['float64_gap']:.1e} (relative)")
    print("  all epochs (s): " + "; ".join(
        f"{k}: " + ", ".join(f"{t:.3f}" for t in v) for k, v in r["all_wall_s"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
