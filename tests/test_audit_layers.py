"""Layer audit against PyTorch: the discrepancies found, each checked on identical host
inputs (forward, input gradient and parameter gradients) or against the exact value."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from torch_reference import compare_layer, torch_or_skip

# PyTorch's own note on padding="same" with an even kernel, not about tensornet
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make, shape", [
    # a kernel more than twice as tall as the image: the size-keeping shift path shifted
    # rows past the whole plane (numba: wrong columns from stale scratch memory; NumPy
    # without numba: a broadcasting ValueError)
    (lambda t, **d: t.Conv2d(1, 1, (3, 1), padding="same", dilation=2, bias=False, **d),
     (2, 1, 1, 1)),
    (lambda t, **d: t.Conv2d(2, 3, 5, padding=2, **d), (3, 2, 1, 4)),
    (lambda t, **d: t.Conv2d(2, 2, (7, 3), padding=(3, 1), groups=2, **d), (2, 2, 2, 5)),
])
def test_conv2d_kernel_taller_than_the_image_matches_pytorch(device, rng, make, shape, dtype):
    torch = torch_or_skip()
    layer = make(nn, device=device, dtype=dtype)
    reference = make(torch.nn, dtype=getattr(torch, dtype))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    for _ in range(2):  # a second batch reuses the scratch buffers the first one left
        compare_layer(layer, reference, rng.standard_normal(shape).astype(dtype), device,
                      **tol)
        layer.zero_grad()
        reference.zero_grad()


TAIL = [-700.0, -100.0, -60.0, -30.0, -20.0, -17.5, -5.0, 0.0, 5.0, 17.5, 30.0, 700.0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["Sigmoid", "SiLU", "Softplus", "Softplus-beta", "ELU"])
def test_activation_tails_keep_their_digits_as_pytorch(device, name, dtype):
    """0.5 * (1 + tanh(x/2)) for the sigmoid (Sigmoid, SiLU, Softplus's gradient) and
    y + alpha for ELU's gradient cancel for negative x: float32 gave exactly 0 below
    x = -17 (torch: 9.4e-14 at -30), float64 a relative error of 2e-4 at -30."""
    torch = torch_or_skip()
    layer, reference = {
        "Sigmoid": (nn.Sigmoid(), torch.nn.Sigmoid()), "SiLU": (nn.SiLU(), torch.nn.SiLU()),
        "Softplus": (nn.Softplus(), torch.nn.Softplus()),
        "Softplus-beta": (nn.Softplus(2.0, 50.0), torch.nn.Softplus(2.0, 50.0)),
        "ELU": (nn.ELU(0.7), torch.nn.ELU(0.7)),
    }[name]
    x = np.array(TAIL, dtype=dtype)
    backend = tn.get_backend(device)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = tn.asnumpy(layer(backend.asarray(x)))
        dx = tn.asnumpy(layer.backward(backend.asarray(np.ones_like(x))))
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    y_t = reference(x_t)
    y_t.backward(torch.ones_like(y_t))
    # relative to each value, however small (atol only below the float's smallest normal)
    tol = dict(rtol=1e-13 if dtype == "float64" else 2e-6, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(y, y_t.detach().numpy(), **tol, err_msg=f"{name} forward")
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **tol, err_msg=f"{name} gradient")


@pytest.mark.parametrize("geometry", [dict(kernel_size=3, stride=1, padding=1),
                                      dict(kernel_size=(3, 2), stride=2, padding=(1, 1)),
                                      dict(kernel_size=3, stride=2, padding=1, dilation=2)])
def test_maxpool_never_routes_a_gradient_into_the_padding(any_device, geometry):
    """Padding counts as -inf; in a window whose inputs are all -inf it won the arg-max
    (the first offset), so the window's gradient was dropped (MaxPool2d(3, 1, 1) on a 3x3
    plane of -inf: dx summed to 4 instead of torch's 9)."""
    torch = torch_or_skip()
    backend = tn.get_backend(any_device)
    x = np.full((1, 2, 5, 4), -np.inf)
    x[0, 1, 2:, 1:] = np.arange(9.0).reshape(3, 3)  # channel 1: partly finite
    x[0, 1, 4, 3] = np.nan
    layer, reference = nn.MaxPool2d(**geometry), torch.nn.MaxPool2d(**geometry)
    y = tn.asnumpy(layer(backend.asarray(x)))
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx = tn.asnumpy(layer.backward(backend.asarray(dy)))
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    y_t = reference(x_t)
    y_t.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, y_t.detach().numpy())
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-12, atol=1e-12)
