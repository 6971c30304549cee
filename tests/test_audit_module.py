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


def test_apply_buffers_and_train_mode_as_pytorch():
    torch = torch_or_skip()
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Linear(4, 2)))
    t_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                  torch.nn.Sequential(torch.nn.Linear(4, 2)))
    seen, t_seen = [], []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    t_model.apply(lambda m: t_seen.append(type(m).__name__))
    assert seen == t_seen  # children first, then the module itself
    model.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert not np.asarray(model[0].weight.data).any()
    assert len(list(model.buffers())) == len(list(t_model.buffers())) == 3
    with pytest.raises(ValueError, match="boolean"):
        model.train("False")
    assert model.training


def test_register_buffer_checks_names_and_keeps_non_persistent_buffers_out_of_state():
    layer = nn.Linear(3, 2)
    with pytest.raises(KeyError, match=r"can't contain '\.'"):
        layer.register_buffer("a.b", np.zeros(1))
    with pytest.raises(KeyError, match="empty"):
        layer.register_buffer("", np.zeros(1))
    with pytest.raises(KeyError, match="'weight' already exists"):
        layer.register_buffer("weight", np.zeros(1))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.register_buffer("scratch", np.zeros(2, np.float32), persistent=False)
    layer.register_buffer("stats", np.zeros(2, np.float32))
    assert list(layer.state_dict()) == ["weight", "bias", "stats"]
    assert [n for n, _ in layer.named_buffers()] == ["scratch", "stats"]
    layer.load_state_dict(layer.state_dict())
    layer.to(dtype="float64")  # moved and cast like any buffer
    assert layer.scratch.dtype == np.float64 and list(layer.state_dict())[-1] == "stats"
    layer.register_buffer("scratch", np.ones(2))  # registering again makes it persistent
    assert "scratch" in layer.state_dict()


def test_apply_and_children_visit_a_shared_module_once():
    model, layer = _shared()
    calls = []
    model.apply(calls.append)
    assert calls == [layer, model[1], model]
    assert list(model.children()) == [layer, model[1]]


class _Scale(nn.Module):
    """y = x * w (w per feature), with a backward that can be made wrong on purpose."""

    _cache_attrs = ("_x",)

    def __init__(self, input_factor=1.0, weight_factor=1.0, nan_at=None):
        super().__init__(dtype="float64")
        self.w = self.new_parameter(np.array([1.5, -0.5]))
        self.input_factor, self.weight_factor, self.nan_at = input_factor, weight_factor, nan_at

    def forward(self, x):
        self._check_input(x, ndim=2, features=2)
        self._x = x
        y = x * self.w.data
        if self.nan_at is not None:
            y[self.nan_at] = np.nan
        return y

    def backward(self, grad):
        self.w.accumulate_grad((grad * self._x).sum(axis=0) * self.weight_factor)
        return grad * self.w.data * self.input_factor


@pytest.mark.parametrize("size", [3, 300])  # element by element, then random directions
def test_gradcheck_fails_a_wrong_backward_for_the_input_and_the_parameters(size, rng):
    x = rng.standard_normal((size, 2))
    assert tn.gradcheck(_Scale(), x)
    with pytest.raises(tn.nn.GradcheckError, match="input"):
        tn.gradcheck(_Scale(input_factor=1.01), x)
    with pytest.raises(tn.nn.GradcheckError, match="parameter w"):
        tn.gradcheck(_Scale(weight_factor=1.01), x)
    # float32 input is upcast; float32 parameters are refused, naming them
    assert tn.gradcheck(_Scale(), x.astype(np.float32))
    with pytest.raises(ValueError, match=r"float32 parameters \(w\)"):
        tn.gradcheck(_Scale().to(dtype="float32"), x)


def test_gradcheck_fails_when_the_numeric_gradient_is_not_finite(rng):
    # A forward that yields NaN somewhere makes the finite differences NaN there: nothing
    # was checked, so the check must fail (it passed: NaN > bound is False).
    with pytest.raises(tn.nn.GradcheckError, match="nan"):
        tn.gradcheck(_Scale(nan_at=(0, 0)), rng.standard_normal((3, 2)))


def test_load_state_dict_reports_missing_and_unexpected_keys_as_pytorch():
    torch = torch_or_skip()
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    t_model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = {k: np.array(v) for k, v in model.state_dict().items() if k != "1.running_var"}
    state["extra"] = np.zeros(1)
    t_state = {k: torch.from_numpy(v) for k, v in state.items()}
    result, t_result = model.load_state_dict(state, strict=False), \
        t_model.load_state_dict(t_state, strict=False)
    assert result == (["1.running_var"], ["extra"])
    assert (result.missing_keys, result.unexpected_keys) == \
        (t_result.missing_keys, t_result.unexpected_keys)
    assert model.load_state_dict(model.state_dict()) == ([], [])


def test_to_takes_a_dtype_as_its_only_argument_as_pytorch():
    layer = nn.Linear(3, 2)
    assert layer.to("float64") is layer and layer.weight.dtype == "float64"
    assert layer.to(np.float32).weight.dtype == "float32"
    with pytest.raises(TypeError, match="dtype must be one of"):
        layer.to("int32")
    with pytest.raises(ValueError, match="unknown device"):
        layer.to("tpu")


def test_a_parameter_of_another_float_dtype_is_refused_at_assignment():
    """A float64 Parameter in a float32 module made every forward silently float64 (the
    matmul promotes); PyTorch raises at the matmul. new_parameter, or .to() afterwards."""
    from tensornet.nn import Parameter
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"Linear: parameter 'weight' is float64 but the "
                                        r"module is float32; make it with "
                                        r"self.new_parameter"):
        layer.weight = Parameter(np.zeros((2, 3)))
    layer.weight = layer.new_parameter(np.zeros((2, 3)))  # cast to the module's dtype
    assert layer(np.ones((1, 3), np.float32)).dtype == np.float32
    tied = nn.Linear(3, 2)
    tied.weight = layer.weight  # weight tying keeps working
    assert layer.to(dtype="float64").weight.dtype == "float64"
