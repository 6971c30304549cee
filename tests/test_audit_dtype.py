"""dtype and numerics audit: extreme float32 inputs give PyTorch's values without the NumPy
floating-point warnings PyTorch never shows, where the result itself is finite (an
intermediate that overflowed in a branch the result does not use)."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from torch_reference import torch_or_skip

# residuals of 1e20 and 1e30: the squares overflow float32, the Huber values do not
HUGE = [1e30, -1e30, 1e20, -1e20, 3.0, -0.5, 0.0, -0.0, 1e-40]


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("name", ["Huber", "SmoothL1"])
def test_huber_and_smooth_l1_on_huge_residuals_do_not_overflow(device, name, reduction):
    """The quadratic branch was computed for every element (0.5 * d * d) and discarded
    beyond delta: 'overflow encountered in multiply' for |d| > 1.8e19 in float32."""
    torch = torch_or_skip()
    loss_fn, reference = {
        "Huber": (nn.HuberLoss(reduction, delta=0.7), torch.nn.HuberLoss(reduction, delta=0.7)),
        "SmoothL1": (nn.SmoothL1Loss(reduction, beta=0.7),
                     torch.nn.SmoothL1Loss(reduction=reduction, beta=0.7)),
    }[name]
    pred = np.array(HUGE, dtype=np.float32)
    target = np.zeros_like(pred)
    backend = tn.get_backend(device)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = tn.asnumpy(loss_fn(backend.asarray(pred), backend.asarray(target)))
        grad = tn.asnumpy(loss_fn.backward(
            backend.asarray(np.ones_like(pred)) if reduction == "none" else None))
    pred_t = torch.from_numpy(pred.copy()).requires_grad_(True)
    loss_t = reference(pred_t, torch.from_numpy(target))
    loss_t.backward(torch.ones_like(loss_t))
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), rtol=2e-6)
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), rtol=2e-6)
