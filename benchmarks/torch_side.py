"""The PyTorch side of ``benchmarks.mlp_cpu`` and ``benchmarks.cnn_cpu``, in a process of
its own that the benchmark drives epoch by epoch (``TorchSide``).

Why not in the benchmark's process: PyTorch's OpenMP workers spin while idle, and in one
process they take the cores that tensornet's BLAS threads then wait for. Measured on the
2-core VM (CNN, 2 threads): tensornet's epoch took 9.0 s after a PyTorch epoch in the same
process, 5.5 s in a process without PyTorch; making PyTorch's workers sleep instead
(``OMP_WAIT_POLICY=passive``) slows PyTorch itself 1.3-2x. Here each framework runs as it
would alone, and the epochs still alternate, so that slow spells of the machine hit both.

    python -m benchmarks.torch_side '{"model": "cnn", "threads": 2, "synthetic": false,
                                      "samples": 60000}'

(optional: ``batch``, ``sizes``, ``channels`` as ``common.build_model``) reads one command
per line on stdin (``epoch`` with the sample order, ``gemm``, the MLP's matrix products
alone, or ``split``) and answers each with one JSON line on stdout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.common import (BATCH, MLP_SIZES, Clock, build_model, epoch_order, pin_threads,
                               thread_env, torch_epoch, torch_twin, training_arrays)


class TorchSide:
    """A PyTorch worker process: ``epoch(rows)`` -> (wall s, CPU s, last loss), ``gemm(rows)``
    -> (wall s, CPU s) of the MLP's products alone, ``split()`` -> its per-layer
    milliseconds; None from the constructor's ``available`` when PyTorch is not
    importable."""

    def __init__(self, cfg: dict):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = thread_env(cfg["threads"])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.torch_side",
                                       json.dumps(cfg)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env, cwd=root)
        hello = self._read()
        self.available = hello.get("torch") is not None
        self.version = hello.get("torch")

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker of the benchmark exited")
        return json.loads(line)

    def _ask(self, command: dict) -> dict:
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def epoch(self, rows=None):
        reply = self._ask({"do": "epoch", "rows": _listed(rows)})
        return (reply["wall"], reply["cpu"]), reply["loss"]

    def gemm(self, rows=None):
        """(wall s, CPU s) of the MLP's matrix products alone over these rows' batches
        (``mlp_cpu.torch_gemm_only_epoch``)."""
        reply = self._ask({"do": "gemm", "rows": _listed(rows)})
        return reply["wall"], reply["cpu"]

    def split(self, batches: int = 40) -> dict:
        return {k: tuple(v) for k, v in self._ask({"do": "split", "batches": batches})["ms"].items()}

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)


def _listed(rows):
    """Sample rows as JSON takes them (None: the whole epoch order)."""
    return None if rows is None else list(map(int, rows))


def _serve(cfg: dict) -> None:
    try:
        import torch
    except ImportError:
        print(json.dumps({"torch": None}), flush=True)
        return
    pin_threads(cfg["threads"])
    model_name, batch = cfg["model"], cfg.get("batch", BATCH)
    shape = {"sizes": tuple(cfg.get("sizes") or MLP_SIZES), "channels": cfg.get("channels", 8)}
    x, y, _ = training_arrays(model_name, cfg["synthetic"], cfg["samples"])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    order = epoch_order(len(x), 0)
    clock = Clock()
    print(json.dumps({"torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "epoch":
            rows = order if command["rows"] is None else np.asarray(command["rows"], np.int64)
            model, opt = torch_twin(model_name, build_model(model_name, **shape), **shape)
            clock.start()
            loss = torch_epoch(torch, model, opt, xt, yt, rows, batch)
            wall, cpu = clock.stop()
            print(json.dumps({"wall": wall, "cpu": cpu, "loss": loss}), flush=True)
        elif command["do"] == "gemm":
            from benchmarks.mlp_cpu import torch_gemm_only_epoch
            rows = order if command["rows"] is None else command["rows"]
            weights = [np.asarray(p.data) for p in
                       build_model(model_name, **shape).parameters()][0::2]
            batches = [min(batch, len(rows) - s) for s in range(0, len(rows), batch)]
            clock.start()
            torch_gemm_only_epoch(torch, weights, x, batches, batch)
            wall, cpu = clock.stop()
            print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)
        elif command["do"] == "split":
            from benchmarks.cnn_cpu import torch_layer_split
            model, opt = torch_twin(model_name, build_model(model_name, **shape), **shape)
            ms = torch_layer_split(torch, model, opt, xt, yt, order, command["batches"], batch)
            print(json.dumps({"ms": ms}), flush=True)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
