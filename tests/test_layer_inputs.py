"""Layers without parameters (activations, pools, Flatten, Dropout, Softmax) take floating
arrays only and name themselves otherwise; the hint for raw integer images works."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

PARAMETER_FREE = [
    (nn.ReLU, (2, 3)), (nn.LeakyReLU, (2, 3)), (nn.ELU, (2, 3)), (nn.Tanh, (2, 3)),
    (nn.Sigmoid, (2, 3)), (nn.SoftPlus, (2, 3)), (nn.Softmax, (2, 3)), (nn.LogSoftmax, (2, 3)),
    (lambda: nn.MaxPool2d(2), (1, 1, 4, 4)), (lambda: nn.MaxPool2d(3, 1, padding=1), (1, 1, 4, 4)),
    (lambda: nn.AvgPool2d(2), (1, 1, 4, 4)), (nn.GlobalAvgPool2d, (1, 1, 4, 4)),
    (nn.Flatten, (2, 3, 2)), (lambda: nn.Dropout(0.5), (2, 3)),
]
IDS = [getattr(make, "__name__", "") or str(i) for i, (make, _) in enumerate(PARAMETER_FREE)]


def _name(layer) -> str:
    return type(layer).__name__


@pytest.mark.parametrize("make, shape", PARAMETER_FREE, ids=IDS)
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "complex64", "object"])
def test_non_floating_arrays_are_refused_naming_the_layer(make, shape, dtype):
    layer = make()
    x = np.ones(shape, dtype=dtype)
    with pytest.raises(TypeError, match=rf"{_name(layer)}\(.*\) expects floating-point input, "
                                        rf"got {np.dtype(dtype).name}"):
        layer(x)


@pytest.mark.parametrize("make, shape", PARAMETER_FREE, ids=IDS)
@pytest.mark.parametrize("value", ["abc", [[1.0, 2.0]], 3.0, None])
def test_non_arrays_are_refused_naming_the_layer(make, shape, value):
    layer = make()
    with pytest.raises(TypeError, match=rf"{_name(layer)}\(.*\) expected an array, got "
                                        rf"{type(value).__name__}"):
        layer(value)


@pytest.mark.parametrize("make, shape", PARAMETER_FREE, ids=IDS)
def test_floating_arrays_of_each_backend_still_work(make, shape, device):
    layer = make()
    x = get_backend(device).asarray(np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32)
                                    .reshape(shape))
    y = layer(x)
    assert tn.asnumpy(layer.backward(get_backend(device).asarray(
        np.ones(tuple(y.shape), np.float32)))).shape == shape


def test_flatten_needs_the_axes_it_flattens():
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=1, end_dim=-1\) got input of shape "
                                         r"\(\); flattening axes 1..-1 needs at least 2 dims"):
        nn.Flatten()(np.ones((), np.float32))
    with pytest.raises(TypeError, match=r"Flatten\(.*\) expected an array, got float32"):
        nn.Flatten()(np.float32(1.0))  # a NumPy scalar
    with pytest.raises(ValueError, match=r"got input of shape \(5,\); .* needs at least 2 dims"):
        nn.Flatten()(np.ones(5, np.float32))  # PyTorch: dimension out of range
    assert nn.Flatten(0)(np.ones(5, np.float32)).shape == (5,)
    with pytest.raises(TypeError, match="Flatten: start_dim must be an int"):
        nn.Flatten(1.5)


@pytest.mark.parametrize("layer_type", [nn.Softmax, nn.LogSoftmax])
def test_softmax_dim_must_be_an_axis_of_the_input(layer_type):
    with pytest.raises(ValueError, match=rf"{layer_type.__name__}\(dim=5\) got input of shape "
                                         rf"\(2, 3\), which has no axis 5; dim must be in "
                                         rf"\[-2, 1\]"):
        layer_type(dim=5)(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=rf"{layer_type.__name__}: dim must be an int"):
        layer_type(dim="last")
    assert layer_type(dim=-2)(np.ones((2, 3), np.float32)).shape == (2, 3)


def test_max_pool_padding_on_bool_is_refused_not_wrong():
    x = np.zeros((1, 1, 4, 4), bool)
    with pytest.raises(TypeError, match=r"MaxPool2d\(kernel_size=3, stride=1, padding=1\) "
                                        r"expects floating-point input, got bool"):
        nn.MaxPool2d(3, 1, padding=1)(x)


@pytest.mark.parametrize("dtype", ["uint8", "int64"])
def test_the_hint_for_raw_integer_images_works(device, dtype):
    """The message suggests a conversion; running it must give input the model takes."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, device=device))
    b = get_backend(device)
    x = b.asarray(np.arange(8).reshape(2, 1, 2, 2).astype(dtype))
    for layer in (model[1], model):
        with pytest.raises(TypeError, match="convert it first") as info:
            layer(x if layer is model else b.asarray(np.ones((2, 4), dtype)))
        message = str(info.value)
        assert ".to(dtype=" not in message  # the old hint, which raises
        code = message.split("(raw 8-bit images: ")[1].rstrip(")")
        converted = eval(code, {"tn": tn, "x": x})
        assert tn.asnumpy(model(converted)).shape == (2, 2)


def test_a_float_input_of_another_precision_suggests_both_casts():
    with pytest.raises(TypeError, match=r"has float32 parameters but got float64 input; cast the "
                                        r"input \(x.astype\('float32'\)\) or the model "
                                        r"\(.to\(dtype='float64'\)\)"):
        nn.Linear(2, 2)(np.ones((1, 2)))


@pytest.mark.parametrize("make", [lambda: nn.Linear(2, 2), lambda: nn.LayerNorm(2),
                                  lambda: nn.BatchNorm1d(2)])
def test_layers_with_parameters_refuse_complex_naming_the_layer(make):
    layer = make()
    with pytest.raises(TypeError, match=rf"{type(layer).__name__}\(.*\) expects floating-point "
                                        rf"input, got complex64; complex64 values are not "
                                        rf"supported"):
        layer(np.ones((3, 2), np.complex64))
