"""tn.summary (Keras' model.summary()) and the Module conveniences .cpu(), .cuda(),
.double(), .float()."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from conftest import GPU_SKIP_REASON


def test_summary_lists_every_layer_with_shape_and_parameters():
    model = tn.models.cnn()
    model.train()
    text = tn.summary(model, (1, 28, 28), print_fn=None)
    lines = text.splitlines()
    assert lines[0] == "Model: Sequential on 'cpu', float32 input (None, 1, 28, 28)"
    rows = [line for line in lines if "(" in line and ")" in line][2:]
    assert [r.split()[1] for r in rows[:4]] == ["(Conv2d)", "(BatchNorm2d)", "(ReLU)",
                                                "(MaxPool2d)"]
    assert "(None, 8, 28, 28)" in rows[0] and rows[0].split()[-1] == "80"
    assert "(None, 16, 7, 7)" in rows[7] and "(None, 784)" in rows[8]
    assert rows[9].split()[-1] == "100,480" and "(None, 10)" in rows[-1]
    assert f"Total params: {model.num_parameters():,}" in text
    assert model.training  # the mode is restored
    assert model[0]._cache is None  # and the caches dropped


def test_summary_nested_frozen_and_integer_inputs(capsys):
    model = tn.models.autoencoder(sizes=(6, 4, 2))
    model.encoder.requires_grad_(False)
    tn.summary(model, 6)
    text = capsys.readouterr().out
    assert "encoder (Sequential)" in text and "  encoder.0 (Linear)" in text
    assert "Trainable params: 42" in text and "Non-trainable params: 38" in text
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    assert "(None, 3, 4)" in tn.summary(emb, (3,), dtype="int64", print_fn=None)
    with pytest.raises(ValueError, match="one sample's shape"):
        tn.summary(emb, (0, 3))


def test_cpu_double_float_move_and_cast():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).to("strict")
    assert model.double() is model
    assert model[0].weight.dtype == "float64" and model[1].running_mean.dtype == \
        model[1].backend.xp.float64
    assert str(model[1].num_batches_tracked.dtype).endswith("int64")  # ints stay ints
    model.cpu()
    assert isinstance(model[0].weight.data, np.ndarray) and model[0].backend.device == "cpu"
    model.float()
    assert model[0].weight.data.dtype == np.float32
    y = model(np.ones((4, 3), np.float32))
    assert y.dtype == np.float32


@pytest.mark.skipif(GPU_SKIP_REASON is None, reason="a GPU is present: see the gpu test")
def test_cuda_without_a_gpu_says_how_to_get_one():
    with pytest.raises(Exception, match="(?i)cupy|cuda"):
        nn.Linear(2, 2).cuda()


@pytest.mark.gpu
def test_cuda_moves_to_the_gpu():
    model = nn.Linear(2, 2).cuda(0)
    assert model.backend.device == "cuda:0"
    assert model.cpu().backend.device == "cpu"
