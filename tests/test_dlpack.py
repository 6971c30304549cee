"""DLPack: zero-copy exchange with PyTorch on the CPU, both ways, for arrays and Parameters."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from torch_reference import torch_or_skip


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_torch_tensor_to_tensornet_shares_memory():
    torch = torch_or_skip()
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = tn.from_dlpack(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (3, 4)
    assert _address(a) == t.data_ptr()
    t[0, 0] = 42.0
    assert a[0, 0] == 42.0
    a[2, 3] = -1.0  # and back: the same memory
    assert t[2, 3].item() == -1.0


def test_tensornet_arrays_and_parameters_to_torch_share_memory():
    torch = torch_or_skip()
    layer = nn.Linear(3, 2)
    w = torch.from_dlpack(layer.weight)  # a Parameter exports its data
    assert w.data_ptr() == _address(layer.weight.data)
    w.mul_(0.0)
    assert np.all(layer.weight.data == 0.0)
    b = torch.utils.dlpack.from_dlpack(tn.to_dlpack(layer.bias))  # the legacy capsule
    assert b.data_ptr() == _address(layer.bias.data)
    x = np.ones((2, 3), np.float32)
    assert torch.from_dlpack(x).data_ptr() == _address(x)


def test_round_trip_through_a_model():
    """torch batch -> tensornet forward -> torch, without a copy at either end."""
    torch = torch_or_skip()
    batch = torch.randn(5, 3)
    layer = nn.Linear(3, 2)
    out = torch.from_dlpack(layer(tn.from_dlpack(batch)))
    expected = batch.numpy() @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_from_dlpack_to_another_device_and_errors():
    torch = torch_or_skip()
    t = torch.arange(3.0)
    s = tn.from_dlpack(t, device="strict")
    assert tn.get_backend(s).device == "strict"
    np.testing.assert_array_equal(tn.asnumpy(s), [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="DLPack protocol"):
        tn.from_dlpack([1, 2, 3])
    with pytest.raises(TypeError, match="to_dlpack expected an array"):
        tn.to_dlpack("x")
