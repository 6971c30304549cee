"""Audit of tensornet.data (loader, Subset, augmentations) against what PyTorch /
torchvision users expect: hostile inputs and edge cases."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.data import RandomAffine, RandomRotation


@pytest.mark.parametrize("shape", [(2, 1, 2, 3000), (2, 1, 3000, 2)])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_float16_affine_keeps_wide_images_in_place(device, rng, shape, mode):
    # float16 holds whole numbers only up to 2048: coordinates computed in it moved pixels
    if device == "strict":
        pytest.skip("the array API standard has no float16")
    x = rng.standard_normal(shape).astype(np.float16)
    backend = get_backend(device)
    tn.manual_seed(0)
    out = RandomRotation(0, interpolation=mode)(backend.asarray(x))
    assert tn.asnumpy(out).dtype == np.float16
    np.testing.assert_array_equal(tn.asnumpy(out), x)
    tn.manual_seed(0)
    shifted = tn.asnumpy(RandomAffine(degrees=(180, 180), interpolation=mode)(
        backend.asarray(x)))
    # bilinear mixes in about |sin(float32(pi))| * 1500 ~ 1e-4 of the neighbour
    np.testing.assert_allclose(shifted.astype(np.float32), x[:, :, ::-1, ::-1],
                               rtol=0, atol=0 if mode == "nearest" else 2e-3)
