"""Unfold and Fold as torch's: forward and backward against torch.nn.Unfold / Fold on
identical inputs (kernel, dilation, padding, stride as ints and pairs), float64 and float32,
the CPU and strict backends; Fold as Unfold's adjoint; gradchecks; every backend; reprs and
errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from torch_reference import compare_layer, torch_or_skip

GEOMETRIES = [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=2, padding=1),
              dict(kernel_size=3, dilation=2, padding=(1, 2), stride=(1, 2)),
              dict(kernel_size=1), dict(kernel_size=(7, 8))]


@pytest.mark.parametrize("options", GEOMETRIES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-6)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_unfold_and_fold_match_torch(options, dtype, tol, device, rng):
    torch = torch_or_skip()
    x = rng.standard_normal((2, 3, 7, 8)).astype(dtype)
    compare_layer(nn.Unfold(**options), torch.nn.Unfold(**options), x, device, rtol=tol,
                  atol=tol)
    columns = tn.asnumpy(nn.Unfold(**options)(x))
    compare_layer(nn.Fold((7, 8), **options), torch.nn.Fold((7, 8), **options),
                  rng.standard_normal(columns.shape).astype(dtype), device, rtol=tol, atol=tol)
    assert tn.asnumpy(nn.Fold((7, 8), **options)(columns)).dtype == np.dtype(dtype)


def test_fold_is_unfolds_adjoint(rng):
    """<Unfold(x), c> == <x, Fold(c)>: the property the convolution's backward rests on."""
    unfold, fold = nn.Unfold(3, padding=1, stride=2), nn.Fold((6, 5), 3, padding=1, stride=2)
    x = rng.standard_normal((2, 3, 6, 5))
    columns = rng.standard_normal(unfold(x).shape)
    np.testing.assert_allclose(np.sum(unfold(x) * columns), np.sum(x * fold(columns)),
                               rtol=1e-12)


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Unfold(2, padding=1, stride=2), (2, 3, 5, 4)),
    (lambda: nn.Fold((5, 4), 2, padding=1, stride=(1, 2)), (2, 12, 18))])
def test_fold_and_unfold_gradcheck(make, shape, rng):
    assert tn.gradcheck(make().double(), [rng.standard_normal(shape)])


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Unfold(3, dilation=2, padding=2), (2, 3, 6, 7)),
    (lambda: nn.Fold(6, 3, stride=3), (2, 18, 4))])
def test_fold_and_unfold_agree_across_backends(make, shape, any_device, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    ref, layer = make(), make()
    y_ref, y = ref(x), layer(tn.get_backend(any_device).asarray(x))
    grad = rng.standard_normal(tuple(y_ref.shape)).astype(np.float32)
    dx_ref, dx = ref.backward(grad), layer.backward(tn.get_backend(any_device).asarray(grad))
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-6, atol=1e-6)


def test_reprs_and_errors_name_the_layer():
    assert repr(nn.Unfold((2, 3), padding=1)) == \
        "Unfold(kernel_size=(2, 3), dilation=1, padding=1, stride=1)"
    assert repr(nn.Fold(5, 2, stride=2)) == \
        "Fold(output_size=5, kernel_size=2, dilation=1, padding=0, stride=2)"
    with pytest.raises(ValueError, match="Unfold: kernel_size must be an int >= 1"):
        nn.Unfold(0)
    with pytest.raises(ValueError, match="Fold: output_size must be an int >= 1"):
        nn.Fold((0, 3), 2)
    with pytest.raises(ValueError, match=r"Unfold\(.*\).*expected \(N, C, H, W\)"):
        nn.Unfold(2)(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"Unfold\(.*\) got input of shape \(1, 1, 2, 2\): the "
                                         r"padded spatial size is smaller than the kernel"):
        nn.Unfold(3)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match="Unfold"):
        nn.Unfold(2)(np.zeros((1, 1, 4, 4), np.int64))
    fold = nn.Fold((4, 5), 2)
    with pytest.raises(ValueError, match=r"Fold\(.*\) got input of shape \(1, 8, 11\); expected "
                                         r"\(N, C\*4, 12\)"):
        fold(np.zeros((1, 8, 11), np.float32))
    with pytest.raises(ValueError, match=r"Fold\(.*\) got input of shape \(1, 6, 12\)"):
        fold(np.zeros((1, 6, 12), np.float32))
    with pytest.raises(ValueError, match=r"Fold\(.*\): the padded output_size is smaller than "
                                         r"the \(dilated\) kernel"):
        nn.Fold(2, 3)(np.zeros((1, 9, 1), np.float32))
    with pytest.raises(RuntimeError, match="Fold"):
        fold.backward(np.zeros((1, 2, 4, 5), np.float32))
