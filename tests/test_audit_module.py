"""Module API audit against PyTorch: shared modules and tied parameters, assignment and
registration rules, traversal helpers. Each test failed before its fix."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from torch_reference import torch_or_skip


def _shared():
    layer = nn.Linear(3, 3)
    return nn.Sequential(layer, nn.ReLU(), layer), layer


def test_a_shared_module_is_visited_once_and_its_state_dict_loads_back():
    torch = torch_or_skip()
    model, layer = _shared()
    t_layer = torch.nn.Linear(3, 3)
    t_model = torch.nn.Sequential(t_layer, torch.nn.ReLU(), t_layer)
    assert [n for n, _ in model.named_modules()] == [n for n, _ in t_model.named_modules()]
    assert [m for m in model.modules()].count(layer) == 1
    # state_dict names every path to a shared parameter, as PyTorch's does ...
    assert list(model.state_dict()) == list(t_model.state_dict())
    # ... so a model loads its own state back
    model.load_state_dict({k: np.array(v) for k, v in model.state_dict().items()})
    model.load_state_dict({k: v.numpy() for k, v in t_model.state_dict().items()})
    np.testing.assert_array_equal(layer.weight.data, t_layer.weight.detach().numpy())


def test_tied_parameters_state_dict_round_trip():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 4, bias=False)
            self.dec = nn.Linear(4, 4, bias=False)
            self.dec.weight = self.enc.weight

    model = Tied()
    assert [n for n, _ in model.named_parameters()] == ["enc.weight"]
    assert list(model.state_dict()) == ["enc.weight", "dec.weight"]
    model.load_state_dict(model.state_dict())


def test_state_dict_orders_keys_module_by_module_as_pytorch():
    torch = torch_or_skip()
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    t_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                  torch.nn.Linear(4, 2))
    assert list(model.state_dict()) == list(t_model.state_dict())


def test_summary_shows_each_call_of_a_shared_module_once():
    model, _ = _shared()
    table = tn.summary(model, (3,), print_fn=None)
    rows = [line.split()[0] for line in table.splitlines() if "(None, 3)" in line
            and not line.startswith("Model")]
    assert rows == ["0", "1", "0"]


def test_assigning_a_non_parameter_over_a_parameter_raises_as_pytorch():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="cannot assign ndarray as parameter 'weight'"):
        layer.weight = np.zeros((2, 3), np.float32)
    assert isinstance(layer.weight, nn.Parameter)  # unchanged
    layer.bias = None  # None unregisters it
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_assigning_over_a_submodule():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(2, 2)

    net = Net()
    with pytest.raises(TypeError, match="cannot assign ndarray as child module 'body'"):
        net.body = np.zeros(2)
    assert isinstance(net.body, nn.Linear) and len(list(net.parameters())) == 2
    net.body = None  # None drops the submodule and its parameters
    assert net.body is None
    assert [n for n, _ in net.named_modules()] == [""] and list(net.parameters()) == []
    assert net.state_dict() == {}


def test_a_subclass_that_forgets_super_init_gets_a_clear_error():
    class Forgot(nn.Module):
        def __init__(self):
            self.scale = 2.0            # plain attributes are fine before it, as PyTorch
            self.layer = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\).*super\(\).__init__"):
        Forgot()

    class ForgotToo(nn.Module):
        def __init__(self):
            self.scale = 2.0

    model = ForgotToo()
    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        list(model.parameters())
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        nn.Linear(2, 2).missing
