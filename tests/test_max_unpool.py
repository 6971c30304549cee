"""MaxPool2d(return_indices=True) and MaxUnpool2d against PyTorch on identical host inputs
(values, indices and gradients), the float64 gradcheck, the SegNet-style round trip on every
backend (the emulated CUDA one too), the ONNX exporter's refusal and the errors users see."""
import itertools

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import DeviceError, get_backend

torch = pytest.importorskip("torch")
F = torch.nn.functional

# kernel 1-3, stride 1-3, padding 0-1 (at most half the kernel), dilation 1-2, ceil_mode
GEOMETRIES = [(k, s, p, d, ceil) for k, s, p, d, ceil in
              itertools.product((1, 2, 3), (1, 2, 3), (0, 1), (1, 2), (False, True))
              if 2 * p <= k]
SIZES = ((7, 6), (5, 9))


def _hard_input(size, seed=0):
    """(2, 3, H, W) float64 with many ties (small integers), NaNs, -inf and a whole -inf
    plane (windows of -inf only, padding beside them)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(2, 3) + size).astype(np.float64)
    x[0, 0] = -np.inf
    x[1, 1][rng.random(size) < 0.15] = np.nan
    x[1, 2][rng.random(size) < 0.3] = -np.inf
    x[0, 2, 1:3, 1:4] = np.nan  # neighbouring NaNs: the last one of a window wins
    return x


def _to_host(backend, a):
    return np.asarray(backend.to_numpy(a))


def _check_against_torch(device, geometry, size, dtype="float64"):
    k, s, p, d, ceil = geometry
    backend = get_backend(device)
    x = _hard_input(size).astype(dtype)
    pool = nn.MaxPool2d(k, s, p, d, return_indices=True, ceil_mode=ceil)
    y, indices = pool(backend.asarray(x))
    tx = torch.tensor(x, requires_grad=True)
    ty, tindices = F.max_pool2d(tx, k, s, p, d, ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(_to_host(backend, y), ty.detach().numpy())
    got = _to_host(backend, indices)
    assert got.dtype == np.int64 and got.shape == tuple(ty.shape)
    np.testing.assert_array_equal(got, tindices.numpy())

    grad = np.random.default_rng(1).standard_normal(ty.shape).astype(dtype)
    dx = pool.backward(backend.asarray(grad))
    ty.backward(torch.tensor(grad))
    # overlapping windows sum gradients, in another order than torch's: round-off per dtype
    rtol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(_to_host(backend, dx), tx.grad.numpy(), rtol=rtol, atol=0)

    unpool = nn.MaxUnpool2d(k, s, p)
    ty2 = torch.tensor(np.nan_to_num(x, nan=7.0, neginf=-9.0), requires_grad=True)
    tvalues, tindices = F.max_pool2d(ty2, k, s, p, d, ceil_mode=ceil, return_indices=True)
    values = backend.asarray(tvalues.detach().numpy())
    try:
        tz = F.max_unpool2d(tvalues, tindices, k, s, p, output_size=size)
    except (ValueError, RuntimeError) as exc:  # x's size is not within stride of the default
        with pytest.raises(ValueError, match="MaxUnpool2d"):
            unpool(values, backend.asarray(tindices.numpy()), output_size=size)
        return str(exc)
    z = unpool(values, backend.asarray(tindices.numpy()), output_size=size)
    np.testing.assert_array_equal(_to_host(backend, z), tz.detach().numpy())
    grad_z = np.random.default_rng(2).standard_normal(tz.shape).astype(dtype)
    tvalues.retain_grad()
    tz.backward(torch.tensor(grad_z))
    np.testing.assert_array_equal(_to_host(backend, unpool.backward(backend.asarray(grad_z))),
                                  tvalues.grad.numpy())
    return None


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_matches_torch_every_geometry(geometry, device):
    for size in SIZES:
        _check_against_torch(device, geometry, size)


def test_matches_torch_emulated_cuda(cuda_emulation):
    """The CUDA kernel's arg-max (int32) through the same conversion, a sample of the
    geometries (each one a compiled kernel run under the emulation)."""
    for geometry in GEOMETRIES[::3]:
        _check_against_torch("cuda", geometry, SIZES[0])


def test_sweep_covers_the_default_size_and_refusals(device):
    """Both branches of the unpool comparison run: sizes torch accepts and ones it refuses."""
    outcomes = [_check_against_torch(device, g, SIZES[1]) for g in GEOMETRIES]
    assert any(o is None for o in outcomes) and any(o is not None for o in outcomes)
    assert len(GEOMETRIES) == 60


def test_float32_indices_and_values_match_torch(device):
    _check_against_torch(device, (3, 2, 1, 1, True), (9, 8), dtype="float32")
    _check_against_torch(device, (2, 2, 0, 1, False), (8, 6), dtype="float32")  # tiling pool


def test_default_output_size_matches_torch(device):
    """Inputs the default size gives back: (OH - 1) * stride - 2 * padding + kernel_size."""
    backend = get_backend(device)
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 3, 0), (2, 1, 1)]:
        size = ((4 - 1) * s - 2 * p + k, (3 - 1) * s - 2 * p + k)
        x = np.random.default_rng(3).standard_normal((2, 2) + size)
        tvalues, tindices = F.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        unpool = nn.MaxUnpool2d(k, s, p)
        z = unpool(backend.asarray(tvalues.numpy()), backend.asarray(tindices.numpy()))
        tz = F.max_unpool2d(tvalues, tindices, k, s, p)
        np.testing.assert_array_equal(_to_host(backend, z), tz.numpy())
        z = unpool(backend.asarray(tvalues.numpy()), backend.asarray(tindices.numpy()),
                   output_size=(2, 2) + tuple(tz.shape[2:]))  # (N, C, H, W) as torch takes
        assert tuple(z.shape) == tuple(tz.shape)


@pytest.mark.parametrize("k,s,size", [(2, 2, (6, 8)), (3, 3, (6, 9)), (2, 3, (8, 8))])
def test_unpool_gradcheck(k, s, size, device, rng):
    """d/dx only: the indices (distinct, from non-overlapping windows) are a fixed input."""
    _, indices = nn.MaxPool2d(k, s, return_indices=True)(rng.standard_normal((2, 2) + size))
    x = rng.standard_normal(indices.shape)
    assert tn.gradcheck(nn.MaxUnpool2d(k, s), (get_backend(device).asarray(x), indices))


def test_segnet_round_trip(any_device, rng):
    """pool -> unpool puts every maximum back in place, zeros elsewhere; the chained
    backward equals PyTorch's through both (overlapping windows included)."""
    backend = get_backend(any_device)
    x = rng.standard_normal((2, 3, 8, 10)).astype(np.float32)
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1)]:
        pool = nn.MaxPool2d(k, s, p, return_indices=True)
        unpool = nn.MaxUnpool2d(k, s, p)
        y, indices = pool(backend.asarray(x))
        z = unpool(y, indices, output_size=x.shape[2:])
        host = _to_host(backend, z)
        kept = host != 0
        np.testing.assert_array_equal(host[kept], x[kept])  # values back in place
        planes = _to_host(backend, indices).reshape(6, -1)
        assert kept.sum() == sum(len(np.unique(plane)) for plane in planes)  # zeros elsewhere
        grad = rng.standard_normal(host.shape).astype(np.float32)
        dx = pool.backward(unpool.backward(backend.asarray(grad)))
        tx = torch.tensor(x, requires_grad=True)
        tvalues, tindices = F.max_pool2d(tx, k, s, p, return_indices=True)
        F.max_unpool2d(tvalues, tindices, k, s, p, output_size=x.shape[2:]).backward(
            torch.tensor(grad))
        np.testing.assert_allclose(_to_host(backend, dx), tx.grad.numpy(), rtol=1e-6,
                                   atol=1e-6)


def test_plain_max_pool_is_unchanged(device, rng):
    backend = get_backend(device)
    x = backend.asarray(rng.standard_normal((2, 2, 6, 6)))
    y = nn.MaxPool2d(3, 2, 1)(x)
    assert not isinstance(y, tuple)
    pair = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert isinstance(pair, tuple) and len(pair) == 2
    np.testing.assert_array_equal(_to_host(backend, pair[0]), _to_host(backend, y))
    assert "return_indices" not in repr(nn.MaxPool2d(2))


def test_return_indices_backward_checks_against_y(device, rng):
    backend = get_backend(device)
    pool = nn.MaxPool2d(2, return_indices=True)
    y, indices = pool(backend.asarray(rng.standard_normal((1, 2, 4, 6))))
    with pytest.raises(TypeError, match="MaxPool2d.*int64 grad_output; expected float64"):
        pool.backward(indices)
    with pytest.raises(ValueError, match=r"MaxPool2d.*expected \(1, 2, 2, 3\)"):
        pool.backward(backend.asarray(np.ones((1, 2, 2, 2))))
    assert tuple(pool.backward(backend.asarray(np.ones((1, 2, 2, 3)))).shape) == (1, 2, 4, 6)


def test_unpool_errors(device, rng):
    backend = get_backend(device)
    unpool = nn.MaxUnpool2d(2)
    x = backend.asarray(rng.standard_normal((1, 2, 3, 3)))
    good = np.zeros((1, 2, 3, 3), dtype=np.int64)
    with pytest.raises(TypeError, match=r"MaxUnpool2d\(.*\) expected integer indices.*float64"):
        unpool(x, backend.asarray(good.astype(np.float64)))
    with pytest.raises(ValueError, match=r"MaxUnpool2d.*: indices of shape \(1, 2, 3, 2\)"):
        unpool(x, backend.asarray(good[..., :2]))
    with pytest.raises(ValueError, match=r"MaxUnpool2d.*: found an invalid max index 36;.*6x6"):
        unpool(x, backend.asarray(good + 36))
    with pytest.raises(ValueError, match="MaxUnpool2d.*: found an invalid max index -1"):
        unpool(x, backend.asarray(good - 1))
    with pytest.raises(ValueError, match=r"MaxUnpool2d.*: invalid output_size \(8, 6\) "
                                         r"\(dim 0 must be between 4 and 8"):
        unpool(x, backend.asarray(good), output_size=(8, 6))
    with pytest.raises(ValueError, match=r"MaxUnpool2d.*: output_size must be"):
        unpool(x, backend.asarray(good), output_size=(1, 6, 6))
    with pytest.raises(ValueError, match=r"MaxUnpool2d.* got input of shape \(2, 3, 3\); "
                                         r"expected \(N, C"):
        unpool(backend.asarray(rng.standard_normal((2, 3, 3))), backend.asarray(good[0]))
    with pytest.raises(TypeError, match=r"MaxUnpool2d.* expected indices as an integer array"):
        unpool(x, [0, 1])
    with pytest.raises(ValueError, match="MaxUnpool2d: kernel_size must be"):
        nn.MaxUnpool2d(0)
    assert repr(nn.MaxUnpool2d(3, 2, 1)) == "MaxUnpool2d(kernel_size=3, stride=2, padding=1)"


def test_unpool_indices_on_another_device(rng):
    pytest.importorskip("array_api_compat.torch")
    x = get_backend("torch").asarray(rng.standard_normal((1, 1, 2, 2)))
    with pytest.raises(DeviceError, match="MaxUnpool2d.*: x is on 'torch' but indices are on"):
        nn.MaxUnpool2d(2)(x, np.zeros((1, 1, 2, 2), dtype=np.int64))


def test_scatter_assign_every_backend(any_device):
    backend = get_backend(any_device)
    target = backend.zeros((2, 3), "float32")
    index = backend.asarray(np.array([[5, 0], [2, 5]], dtype=np.int64))
    values = backend.asarray(np.array([[1.5, 2.0], [3.0, 1.5]], dtype=np.float32))
    out = nn.functional.scatter_assign(target, index, values)
    np.testing.assert_array_equal(_to_host(backend, target), [[2, 0, 3], [0, 0, 1.5]])
    assert out is target


def test_onnx_refuses_index_layers(tmp_path):
    pytest.importorskip("onnx")
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"ONNX export: MaxPool2d\(.*return_indices=True\) "
                                         r"cannot be exported: with return_indices=True it "
                                         r"returns \(y, indices\)"):
        tn.onnx.export(nn.Sequential(nn.MaxPool2d(2, return_indices=True)), x)
    with pytest.raises(ValueError, match=r"ONNX export: MaxUnpool2d\(kernel_size=2\) cannot be"):
        tn.onnx.export(nn.Sequential(nn.ReLU(), nn.MaxUnpool2d(2)), x)
    assert not (tmp_path / "m.onnx").exists()
    tn.onnx.export(nn.Sequential(nn.MaxPool2d(2)), x, tmp_path / "m.onnx")  # still exports
