"""Module mechanics: registration, state dicts, devices, hooks, containers, printing."""
from collections import OrderedDict

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend


def mlp(device="cpu", dtype=None):
    return nn.Sequential(nn.Linear(6, 5, device=device, dtype=dtype), nn.ReLU(),
                         nn.Linear(5, 3, device=device, dtype=dtype))


def test_named_parameters_use_pytorch_dotted_names():
    model = mlp()
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model.num_parameters() == 6 * 5 + 5 + 5 * 3 + 3
    model[0].requires_grad_(False)
    assert model.num_parameters(trainable_only=True) == 5 * 3 + 3


def test_repr_like_pytorch():
    text = repr(mlp())
    assert text == ("Sequential(\n"
                    "  (0): Linear(in_features=6, out_features=5, bias=True)\n"
                    "  (1): ReLU()\n"
                    "  (2): Linear(in_features=5, out_features=3, bias=True)\n"
                    ")")


def test_state_dict_round_trip_copies_values(rng):
    a, b = mlp(), mlp()
    b.load_state_dict({k: np.asarray(v) for k, v in a.state_dict().items()})
    x = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    a[0].weight.data += 1.0  # the copy must not alias
    assert not np.array_equal(a(x), b(x))


def test_load_state_dict_refuses_mismatch_and_leaves_model_unchanged():
    model = mlp()
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    bad = dict(before)
    bad["2.weight"] = np.zeros((4, 5), np.float32)
    bad.pop("0.bias")
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: 0\.bias.*unexpected keys: extra.*"
                                         r"2\.weight: checkpoint shape \(4, 5\)"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_to_moves_parameters_and_grads_between_devices(rng):
    model = mlp()
    x = rng.standard_normal((4, 6)).astype(np.float32)
    expected = model(x)
    model.backward(np.ones((4, 3), np.float32))
    model.to("strict")
    assert all(get_backend(p.data).name == "strict" for p in model.parameters())
    assert all(get_backend(p.grad).name == "strict" for p in model.parameters())
    np.testing.assert_allclose(tn.asnumpy(model(tn.to_device(x, "strict"))), expected, rtol=1e-6)
    model.to("cpu", dtype="float64")
    assert model[0].weight.data.dtype == np.float64 and model[0].dtype == "float64"


def test_forward_and_backward_hooks_fire_once_and_can_be_removed(rng):
    model = mlp()
    seen = []
    h1 = model[0].register_forward_hook(lambda m, inp, out: seen.append(("fwd", out.shape)))
    h2 = model[2].register_backward_hook(lambda m, gin, gout: seen.append(("bwd", gin.shape)))
    out = model(rng.standard_normal((4, 6)).astype(np.float32))
    model.backward(np.ones_like(out))
    assert seen == [("fwd", (4, 5)), ("bwd", (4, 5))]
    h1.remove()
    h2.remove()
    model(rng.standard_normal((4, 6)).astype(np.float32))
    model.backward(np.ones_like(out))
    assert len(seen) == 2


def test_backward_hook_can_replace_the_gradient(rng):
    layer = nn.Linear(3, 2)
    layer.register_backward_hook(lambda m, gin, gout: gin * 0.0)
    layer(rng.standard_normal((2, 3)).astype(np.float32))
    assert np.all(layer.backward(np.ones((2, 2), np.float32)) == 0)


def test_backward_hook_fires_once_through_super_backward(rng):
    layer = nn.DropConnect(3, 2, p=0.5)
    calls = []
    layer.register_backward_hook(lambda *a: calls.append(1))
    layer(rng.standard_normal((2, 3)).astype(np.float32))
    layer.backward(np.ones((2, 2), np.float32))
    assert calls == [1]


def test_gradients_accumulate_until_zero_grad(rng):
    layer = nn.Linear(3, 2)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    g = np.ones((4, 2), np.float32)
    layer(x)
    layer.backward(g)
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * first, rtol=1e-6)
    layer.zero_grad()
    assert layer.weight.grad is None


def test_frozen_parameters_get_no_gradient(rng):
    layer = nn.Linear(3, 2)
    layer.weight.requires_grad = False
    layer(rng.standard_normal((4, 3)).astype(np.float32))
    layer.backward(np.ones((4, 2), np.float32))
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_train_eval_propagates():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.eval()
    assert not model.training and not model[1].training
    model.train()
    assert model[1].training


def test_sequential_slicing_removal_and_insertion(rng):
    enc = [nn.Linear(8, 4), nn.ReLU()]
    dec = [nn.Linear(4, 8), nn.Sigmoid()]
    auto = nn.Sequential(*enc, *dec)
    assert len(auto) == 4 and auto[-1] is dec[1]
    encoder = auto[:2]
    assert isinstance(encoder, nn.Sequential) and encoder[0] is enc[0]
    x = rng.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(encoder(x), enc[1](enc[0](x)))
    del auto[2:]
    assert len(auto) == 2 and list(auto) == enc
    auto.add(nn.Linear(4, 10))
    assert [n for n, _ in auto.named_children()] == ["0", "1", "2"]
    popped = auto.pop()
    assert isinstance(popped, nn.Linear) and len(auto) == 2
    auto.remove(0)
    assert list(auto) == [enc[1]] and auto.state_dict() == {}
    auto.insert(0, enc[0])
    assert list(auto) == enc
    with pytest.raises(TypeError, match="expected a Module"):
        auto.add("relu")


def test_sequential_item_assignment_replaces_a_module_keeping_its_name():
    named = nn.Sequential(OrderedDict(fc=nn.Linear(4, 3), act=nn.ReLU()))
    tanh = nn.Tanh()
    named[-1] = tanh
    assert named.act is tanh and list(named) == [named.fc, tanh]
    named[0] = nn.Linear(4, 5).to(dtype="float64")
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.dtype == "float64"
    assert named(np.ones((2, 4))).shape == (2, 5)
    with pytest.raises(IndexError, match="index 2 is out of range for 2 modules"):
        named[2] = nn.ReLU()
    with pytest.raises(TypeError, match=r"Sequential\[0\] = \.\.\.: expected a Module, got str"):
        named[0] = "relu"
    with pytest.raises(TypeError, match="indices must be integers"):
        named["fc"] = nn.ReLU()


def test_residual_adds_skip_and_checks_shape(rng):
    body = nn.Linear(4, 4)
    res = nn.Residual(body)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(res(x), x + body(x), rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        nn.Residual(nn.Linear(4, 3))(x)


def test_custom_module_registers_children_and_parameters(rng):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.scale = self.new_parameter(np.ones(3))
            self.register_buffer("calls", np.zeros(1, np.float32))

        def forward(self, x):
            self._x = x
            return self.fc(x) * self.scale.data

    block = Block()
    assert sorted(block.state_dict()) == ["calls", "fc.bias", "fc.weight", "scale"]
    block.to("strict")
    assert get_backend(block.calls).name == "strict"


def test_clear_cache_forgets_every_submodules_cache():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 2)))
    y = model(np.ones((2, 4), np.float32))
    model.clear_cache()
    assert model[0]._x is None and model[1]._cache is None and model[2][0]._x is None
    with pytest.raises(RuntimeError, match="backward called before forward"):
        model.backward(np.ones_like(y))
