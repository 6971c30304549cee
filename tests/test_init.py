"""Initialisers: bounds and standard deviations from the papers' formulas."""
import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.nn import init

from torch_reference import torch_or_skip


def _weight(shape, device="cpu"):
    layer = nn.Linear(shape[1], shape[0], device=device)
    return layer.weight


@pytest.mark.parametrize("shape", [(400, 300), (64, 8, 3, 3)])
def test_fans(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    assert init.fans(shape) == (shape[1] * receptive, shape[0] * receptive)


def test_xavier_and_kaiming_statistics(device):
    tn.manual_seed(0)
    w = _weight((400, 300), device)
    init.xavier_uniform_(w)
    a = tn.asnumpy(w.data)
    bound = math.sqrt(6 / 700)
    assert a.dtype == np.float32 and a.min() >= -bound and a.max() <= bound
    assert a.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    init.xavier_normal_(w, gain=2.0)
    assert tn.asnumpy(w.data).std() == pytest.approx(2 * math.sqrt(2 / 700), rel=0.03)
    init.kaiming_normal_(w, nonlinearity="relu")
    assert tn.asnumpy(w.data).std() == pytest.approx(math.sqrt(2 / 300), rel=0.03)
    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert tn.asnumpy(w.data).std() == pytest.approx(math.sqrt(2 / 400), rel=0.03)
    init.normal_(w, std=0.1)
    assert tn.asnumpy(w.data).std() == pytest.approx(0.1, rel=0.03)
    init.zeros(w)
    assert not tn.asnumpy(w.data).any()
    init.ones(w)
    assert (tn.asnumpy(w.data) == 1).all()


def test_gains_and_errors():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swishy")
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(_weight((3, 3)), mode="fan_avg")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(nn.Linear(3, 3).bias)


def test_calculate_gain_matches_pytorch_for_every_nonlinearity():
    torch = torch_or_skip()
    for name in ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    for slope in (0, 0.2, 1, np.float32(0.3)):
        assert init.calculate_gain("leaky_relu", slope) == pytest.approx(
            torch.nn.init.calculate_gain("leaky_relu", float(slope)))
    for bad in (True, "0.1", [0.1]):
        with pytest.raises(ValueError, match="not a valid number"):
            init.calculate_gain("leaky_relu", bad)


def test_initialisers_fill_in_place_take_arrays_and_pytorch_keywords():
    # As torch.nn.init: the parameter's own array is written, so anything holding it
    # (a captured CUDA graph, a tied view) sees the new values.
    w = _weight((30, 20))
    array = w.data
    assert init.uniform_(w, a=-0.1, b=0.1) is w and w.data is array
    assert np.abs(array).max() <= 0.1 and np.abs(array).max() > 0.05
    init.xavier_normal_(w)
    assert w.data is array
    raw = np.ones((30, 20), np.float32)
    assert init.zeros_(raw) is raw and not raw.any()
    init.kaiming_uniform_(raw, a=math.sqrt(5))
    assert raw.dtype == np.float32 and 0.9 / math.sqrt(20) < np.abs(raw).max() <= 1 / math.sqrt(20)


def test_initialisers_write_arrays_of_every_cpu_device(device):
    layer = nn.Linear(8, 4, device=device)
    array = layer.weight.data
    init.constant_(layer.weight, 0.5)
    assert layer.weight.data is array and (tn.asnumpy(array) == 0.5).all()
