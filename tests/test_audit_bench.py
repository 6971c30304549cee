"""Audit of the benchmark harnesses: both sides of a comparison get the same work, and the
printed targets and verdicts say what the figures show. No timing is checked."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's benchmarks/


# ---------------------------------------------------------------------- cnn_cpu's two sides
def _torch_side_training_arrays(monkeypatch, cfg):
    """The (x, y) the PyTorch worker of ``cfg`` trains its full epoch on."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_side
    seen = {}

    def record(torch_, model, opt, x, y, order, batch):
        seen["x"], seen["y"] = x.numpy().copy(), y.numpy().copy()
        seen["order"] = np.asarray(order).copy()
        return 0.0

    monkeypatch.setattr(torch_side, "torch_epoch", record)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"do": "epoch", "rows": None})
                                                  + "\n"))
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    threads = torch.get_num_threads()
    try:
        torch_side._serve(cfg)
    finally:
        torch.set_num_threads(threads)
    return seen["x"][seen["order"]], seen["y"][seen["order"]]


@pytest.mark.parametrize("samples", [300, 60300])
def test_cnn_cpu_synthetic_trains_both_sides_on_the_same_samples(monkeypatch, samples):
    """--synthetic --samples N: tensornet trained on the first N of 60,000 synthetic images
    (at most 60,000), the PyTorch worker on synthetic_mnist(N): other images, or more of
    them, in the epoch it is compared with."""
    from benchmarks import cnn_cpu
    tn_epochs, torch_cfgs = [], []

    def record(model, opt, loss_fn, x, y, order, batch=128):
        tn_epochs.append((x[order], y[order]))
        return 0.0

    class FakeTorchSide:
        available, version = True, "fake"

        def __init__(self, cfg):
            torch_cfgs.append(cfg)

        def epoch(self, rows=None):
            return (1.0, 1.0), 0.0

        def split(self):
            return {}

        def close(self):
            pass

    import benchmarks.torch_side
    monkeypatch.setattr(cnn_cpu, "tensornet_epoch", record)
    monkeypatch.setattr(cnn_cpu, "layer_split", lambda *a, **k: {})
    monkeypatch.setattr(benchmarks.torch_side, "TorchSide", FakeTorchSide)
    cnn_cpu.run(samples, 1, synthetic=True, with_torch=True, threads=1)
    x_tn, y_tn = tn_epochs[-1]           # the timed epoch (the first is the warm-up)
    x_pt, y_pt = _torch_side_training_arrays(monkeypatch, torch_cfgs[0])
    assert x_tn.shape == x_pt.shape == (samples, 1, 28, 28)
    np.testing.assert_array_equal(y_tn, y_pt)
    np.testing.assert_array_equal(x_tn, x_pt)
