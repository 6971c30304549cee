"""The ``looped`` mode: tensornet's own layers driven one sample at a time.

This is how a first NumPy network is often written (the Neurose-style per-sample loop):
for every sample of a mini-batch, forward and backward on a batch of one, accumulating
parameter gradients; then one optimizer step. The model, the optimizer, the data order and
the mini-batch boundaries are those of the ``vectorized`` mode, and the loss gradient of
each sample is scaled by ``1 / batch`` so the accumulated gradient is the mini-batch mean:
the same math, except where a layer's result depends on the batch as a whole.
BatchNorm is such a layer: on a batch of one it normalises each sample with its own
statistics (over its H x W positions), so the CNN's looped run is not numerically the
vectorized one. Dropout draws a mask per sample instead of per batch (same distribution).

A looped epoch takes minutes, so the benchmark times a fixed fraction of an epoch and
extrapolates (the report says so).
"""
from __future__ import annotations

from benchmarks.modes import TensornetTrainer


class LoopedTrainer(TensornetTrainer):
    """Per-sample forward/backward, gradients accumulated over each mini-batch."""

    def fresh(self) -> None:
        super().fresh()
        self.step = None  # the per-sample loop below replaces the batched step

    def run(self, samples: int | None = None) -> int:
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        done = 0
        for xb, yb in self.loader:
            n = int(xb.shape[0])
            optimizer.zero_grad()
            for i in range(n):
                loss_fn(model(xb[i:i + 1]), yb[i:i + 1])
                model.backward(loss_fn.backward(1.0 / n), input_grad=False)
            optimizer.step()
            done += n
            if samples is not None and done >= samples:
                break
        return done
