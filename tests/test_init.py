"""Initialisers: bounds and standard deviations from the papers' formulas."""
import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.nn import init


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
