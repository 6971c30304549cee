"""Each optimizer group lives in flat buffers; layers write their weight gradients straight
into them, so a training step gathers nothing (and a GPU step launches one update kernel per
group, benchmarks/launches.py)."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.nn.parameter import Parameter


MODELS = {
    "mlp": (lambda d: nn.Sequential(nn.Linear(6, 5, device=d), nn.ReLU(),
                                    nn.Linear(5, 3, device=d)), (8, 6)),
    "cnn": (lambda d: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, device=d), nn.BatchNorm2d(3, device=d), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 4, device=d), nn.LayerNorm(4, device=d),
        nn.Linear(4, 3, device=d)), (8, 2, 4, 4)),
    "conv1d_transpose": (lambda d: nn.Sequential(
        nn.ConvTranspose2d(2, 2, 2, stride=2, device=d), nn.Flatten(),
        nn.Linear(32, 3, device=d)), (8, 2, 2, 2)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_layers_write_gradients_into_the_flat_buffers(device, name, monkeypatch):
    build, shape = MODELS[name]
    tn.manual_seed(0)
    model = build(device)
    opt = tn.optim.Adam(model.parameters())
    copied = []
    original = Parameter.accumulate_grad

    def spy(self, grad):
        if self.grad is None and self._grad_slot is not None and grad is not self._grad_slot:
            copied.append(self)
        return original(self, grad)
    monkeypatch.setattr(Parameter, "accumulate_grad", spy)
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt)
    b = model.backend
    rng = np.random.default_rng(1)
    for _ in range(2):
        step(b.asarray(rng.standard_normal(shape).astype(np.float32)),
             b.asarray(rng.integers(0, 3, shape[0])))
    assert copied == []
    for p in model.parameters():
        assert p.grad is p._grad_slot


def test_embedding_writes_into_the_flat_buffer(device):
    tn.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 3, device=device), nn.Flatten(),
                          nn.Linear(6, 2, device=device))
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    b = model.backend
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt)
    step(b.asarray(np.array([[1, 2], [2, 6], [0, 1]])), b.asarray(np.array([0, 1, 1])))
    emb = model[0].weight
    assert emb.grad is emb._grad_slot
    assert (tn.asnumpy(emb.grad)[[3, 4, 5]] == 0).all()  # rows never looked up
