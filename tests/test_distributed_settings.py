"""What fit compares between the ranks' optimizers at every epoch (distributed/training.py
``_settings``), in one process: the same setting written as a NumPy scalar on one rank and
as the Python value on another is the same setting; another value is not."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.distributed.training import _difference, _settings


def _sgd(**extra):
    """SGD with one group holding a user's entries besides the hyper-parameters."""
    return tn.optim.SGD([{"params": nn.Linear(2, 2).parameters(), **extra}], lr=0.1,
                        momentum=0.9)


def test_numpy_scalars_equal_the_python_values_of_a_group_entry():
    python = _sgd(frozen=True, name="encoder", scale=0.25, count=3, sizes=(1, [2, 3.5]))
    numpy = _sgd(frozen=np.True_, name=np.str_("encoder"), scale=np.float32(0.25),
                 count=np.int64(3), sizes=[np.int32(1), (2, np.float64(3.5))])
    assert _settings(numpy) == _settings(python)


@pytest.mark.parametrize("ours, theirs, expected", [
    ({"frozen": True}, {"frozen": np.False_}, ("frozen=True in group 0", "frozen=False")),
    ({"name": "encoder"}, {"name": np.str_("decoder")},
     ("name='encoder' in group 0", "name='decoder'")),
    ({"scale": 0.1}, {"scale": np.float32(0.1)},  # float32(0.1) is another number
     ("scale=0.1 in group 0", "scale=0.10000000149011612"))])
def test_other_values_differ_and_are_named(ours, theirs, expected):
    first, other = _settings(_sgd(**ours)), _settings(_sgd(**theirs))
    assert first != other
    assert _difference(first, other) == expected


def test_weights_that_differ_by_round_off_only_are_the_same_weights():
    from tensornet.distributed.training import _check_same_weights, _weight_sums

    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(64, 32), tn.nn.ReLU(), tn.nn.Linear(32, 4))
    sums = _weight_sums(model)
    assert [name for name, _, _ in sums] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    nudged = [(name, total * (1 + 1e-9), squares * (1 - 1e-9)) for name, total, squares in sums]
    _check_same_weights([sums, nudged, sums])  # float32 round-off between ranks: fine
    model[2].reset_parameters()  # another rank's own initialisation
    with pytest.raises(ValueError, match=r"rank 2's '2.weight' is not rank 0's"):
        _check_same_weights([sums, sums, _weight_sums(model)])
