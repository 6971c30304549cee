"""ModuleList and ModuleDict: registration, PyTorch's state_dict names, list/dict behaviour,
moving and training a custom model built on them."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from torch_reference import torch_or_skip


class Tower(nn.Module):
    """A custom model: blocks from a ModuleList, heads from a ModuleDict."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)])
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 1)})

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.heads["a"](x)

    def backward(self, grad):
        grad = self.heads["a"].backward(grad)
        for block in reversed(list(self.blocks)):
            grad = block.backward(grad)
        return grad


def test_state_dict_names_match_pytorch():
    torch = torch_or_skip()

    class TorchTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Tanh(),
                                               torch.nn.Linear(4, 3)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2),
                                              "b": torch.nn.Linear(3, 1)})

    assert list(Tower().state_dict()) == list(TorchTower().state_dict())


def test_custom_model_trains_and_gradchecks(device, rng):
    model = Tower().to(device, dtype="float64")
    assert tn.gradcheck(model, rng.standard_normal((5, 4)))
    assert model.num_parameters() == 4 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2 + 3 + 1
    loaded = Tower()
    loaded.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(tn.asnumpy(loaded.blocks[0].weight.data),
                                  tn.asnumpy(model.blocks[0].weight.data))


def test_module_list_behaves_like_a_list():
    a, b, c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)
    lst = nn.ModuleList([a])
    lst.append(b).extend([c])
    assert len(lst) == 3 and list(lst) == [a, b, c] and lst[-1] is c
    assert list(lst[1:]) == [b, c] and isinstance(lst[1:], nn.ModuleList)
    lst.insert(0, nn.Identity())
    assert [type(m).__name__ for m in lst] == ["Identity", "Linear", "ReLU", "Linear"]
    assert list(lst.state_dict()) == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert lst.pop(0).__class__ is nn.Identity and list(lst.state_dict())[0] == "0.weight"
    lst[1] = nn.Tanh()
    del lst[0]
    assert [type(m).__name__ for m in lst] == ["Tanh", "Linear"]
    assert list(lst.state_dict()) == ["1.weight", "1.bias"]
    with pytest.raises(TypeError, match="ModuleList holds Modules, got int"):
        lst.append(3)
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        lst(np.zeros((1, 2), np.float32))


def test_module_dict_behaves_like_a_dict():
    md = nn.ModuleDict([("enc", nn.Linear(3, 2)), ("act", nn.ReLU())])
    assert md.keys() == ["enc", "act"] and "enc" in md and len(md) == 2
    md["dec"] = nn.Linear(2, 3)
    assert list(md) == ["enc", "act", "dec"]
    assert [k for k, _ in md.items()] == ["enc", "act", "dec"]
    assert list(md.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    assert isinstance(md.pop("act"), nn.ReLU) and "act" not in md
    del md["enc"]
    assert md.keys() == ["dec"]
    md.update({"x": nn.Tanh()})
    assert md.values()[1].__class__ is nn.Tanh
    with pytest.raises(KeyError):
        del md["missing"]
    with pytest.raises(KeyError, match="attribute of ModuleDict"):
        md["keys"] = nn.ReLU()
    with pytest.raises(KeyError, match="without '.'"):
        md["a.b"] = nn.ReLU()
    with pytest.raises(TypeError, match="ModuleDict holds Modules"):
        md["y"] = "relu"


def test_containers_move_with_the_model():
    model = Tower().to("strict")
    assert model.blocks[0].weight.data.__class__.__module__.startswith("array_api_strict")
    assert model.heads["b"].backend.device == "strict"
    model.to(dtype="float64")
    assert model.heads["b"].weight.dtype == "float64"
