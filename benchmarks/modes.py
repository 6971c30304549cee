"""The trainers behind each benchmark mode, all with one interface.

    trainer = make_trainer("vectorized", "mlp", data)   # raises Skip(reason) if it can't run
    trainer.fresh()                  # new model + optimizer from the seed (untimed)
    trainer.run(samples=None)        # one epoch (or its first ``samples``), returns samples done
    trainer.sync()                   # wait for queued device work
    trainer.accuracy(x, y)           # test accuracy, eval mode
    trainer.device_memory()          # peak device bytes (GPU modes), else None

Modes: ``vectorized`` (NumPy backend, mini-batches), ``looped`` (the same layers one sample
at a time, see ``looped.py``), ``gpu`` (CuPy, eager), ``gpu-graph`` (CuPy, each step
replayed as one CUDA graph through ``tn.train.make_train_step(..., cuda_graph=True)``),
``torch-cpu`` / ``torch-gpu`` (the identical model in PyTorch, same initial weights and
batch order). All tensornet modes go through the public API: ``tn.data.DataLoader``
(resident data, seeded shuffle) and ``tn.train.make_train_step``.
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import BATCH, SEED, build_model, build_optimizer, epoch_order, torch_twin

MODES = ("looped", "vectorized", "gpu", "gpu-graph", "torch-cpu", "torch-gpu")
DEVICE_OF_MODE = {"looped": "cpu", "vectorized": "cpu", "gpu": "cuda", "gpu-graph": "cuda",
                  "torch-cpu": "cpu", "torch-gpu": "cuda"}
EVAL_CHUNK = 1000


class Skip(Exception):
    """This mode cannot run on this machine; the message says why."""


class TensornetTrainer:
    """tensornet on ``device`` with mini-batches; ``graph`` replays each step as a CUDA graph."""

    def __init__(self, model_name: str, data, device: str = "cpu", graph: bool = False):
        import tensornet as tn
        try:
            self.backend = tn.get_backend(device)
        except Exception as exc:  # DeviceError (no CuPy / no GPU) or an import problem
            raise Skip(f"{type(exc).__name__}: {exc}") from None
        if graph and self.backend.name != "cupy":
            raise Skip("CUDA graphs need the CuPy backend")
        self.tn, self.model_name, self.data, self.device, self.graph = tn, model_name, data, \
            device, graph

    def fresh(self) -> None:
        tn = self.tn
        self.model = build_model(self.model_name, self.device)
        self.optimizer = build_optimizer(self.model_name, self.model.parameters())
        self.loss_fn = tn.nn.CrossEntropyLoss()
        dataset = tn.data.ArrayDataset(self.data.x_train, self.data.y_train)
        self.loader = tn.data.DataLoader(dataset, BATCH, shuffle=True, seed=SEED,
                                         device=self.device)
        self.step = tn.train.make_train_step(self.model, self.loss_fn, self.optimizer,
                                             cuda_graph=self.graph)

    def run(self, samples: int | None = None) -> int:
        done = 0
        for xb, yb in self.loader:
            self.step(xb, yb)
            done += int(xb.shape[0])
            if samples is not None and done >= samples:
                break
        return done

    def sync(self) -> None:
        self.backend.synchronize()

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        xp = self.backend.xp
        self.model.eval()
        correct = 0
        for start in range(0, len(x), EVAL_CHUNK):
            xb = self.backend.asarray(x[start:start + EVAL_CHUNK])
            yb = self.backend.asarray(y[start:start + EVAL_CHUNK])
            pred = xp.argmax(self.model(xb), axis=1)
            correct += int(xp.sum(xp.astype(pred == yb, xp.int64)))
        self.model.train()
        return correct / len(x)

    def reset_device_memory(self) -> None:
        if self.backend.name == "cupy":
            self.backend.memory_info(reset_peak=True)

    def device_memory(self) -> dict | None:
        if self.backend.name != "cupy":
            return None
        info = self.backend.memory_info()
        # CuPy's pool only grows (until freed), so what it holds is the high-water mark.
        graph_pool = self.step.pool_bytes() if hasattr(self.step, "pool_bytes") else 0
        return {"kind": "CuPy pool", "peak_mib": (info.get("pool", 0) + graph_pool) / 2 ** 20,
                "peak_used_mib": info.get("peak_used", 0) / 2 ** 20}


class TorchTrainer:
    """The same model in PyTorch: weights copied from the tensornet model, batches in the
    order ``tn.data.DataLoader(seed=SEED)`` uses, data resident on the device."""

    def __init__(self, model_name: str, data, device: str = "cpu"):
        try:
            import torch
        except ImportError:
            raise Skip("PyTorch is not installed") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise Skip("PyTorch sees no CUDA device")
        self.torch, self.model_name, self.data, self.device = torch, model_name, data, device
        self.x = torch.from_numpy(data.x_train).to(device)
        self.y = torch.from_numpy(data.y_train).to(device)

    def fresh(self) -> None:
        self.model, self.optimizer = torch_twin(self.model_name, build_model(self.model_name),
                                                self.device)
        self.model.train()
        self.epoch = 0

    def run(self, samples: int | None = None) -> int:
        torch = self.torch
        n = len(self.data.y_train)
        order = torch.from_numpy(epoch_order(n, self.epoch)).to(self.device)
        self.epoch += 1
        done = 0
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            self.optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.optimizer.step()
            done += len(idx)
            if samples is not None and done >= samples:
                break
        return done

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        torch = self.torch
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(x), EVAL_CHUNK):
                xb = torch.from_numpy(x[start:start + EVAL_CHUNK]).to(self.device)
                yb = torch.from_numpy(y[start:start + EVAL_CHUNK]).to(self.device)
                correct += int((self.model(xb).argmax(dim=1) == yb).sum())
        self.model.train()
        return correct / len(x)

    def reset_device_memory(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def device_memory(self) -> dict | None:
        if self.device != "cuda":
            return None
        return {"kind": "torch CUDA allocator",
                "peak_mib": self.torch.cuda.max_memory_reserved() / 2 ** 20,
                "peak_used_mib": self.torch.cuda.max_memory_allocated() / 2 ** 20}


def make_trainer(mode: str, model_name: str, data):
    """The trainer of ``mode``; raises ``Skip`` when the mode cannot run on this machine."""
    if mode == "vectorized":
        return TensornetTrainer(model_name, data, "cpu")
    if mode == "looped":
        from benchmarks.looped import LoopedTrainer
        return LoopedTrainer(model_name, data, "cpu")
    if mode in ("gpu", "gpu-graph"):
        return TensornetTrainer(model_name, data, "cuda", graph=mode == "gpu-graph")
    if mode in ("torch-cpu", "torch-gpu"):
        return TorchTrainer(model_name, data, DEVICE_OF_MODE[mode])
    raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
