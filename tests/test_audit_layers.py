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
