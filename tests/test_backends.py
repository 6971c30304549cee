"""Backends: device resolution, transfers, RNG, and the hatches beyond the standard."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import DeviceError, get_backend, jit
from tensornet.backends.cupy import gpu_available
from tensornet.nn import functional as F


def test_get_backend_accepts_strings_backends_and_arrays():
    cpu = get_backend("cpu")
    assert get_backend("numpy") is cpu
    assert get_backend(None) is cpu
    assert get_backend(cpu) is cpu
    assert get_backend(np.zeros(3)) is cpu
    strict = get_backend("strict")
    assert strict.name == "strict" and get_backend(strict.zeros((2,))) is strict


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "", "mps"])
def test_unknown_device_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown device"):
        get_backend(bad)


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_says_how_to_install():
    with pytest.raises(DeviceError, match=r"tensornet\[cuda12\]|no CUDA device|NVIDIA GPU"):
        get_backend("cuda")


def test_to_device_round_trip_and_asnumpy(rng):
    host = rng.standard_normal((4, 5)).astype(np.float32)
    on_strict = tn.to_device(host, "strict")
    assert get_backend(on_strict).name == "strict"
    back = tn.to_device(on_strict, "cpu")
    np.testing.assert_array_equal(back, host)
    np.testing.assert_array_equal(tn.asnumpy(on_strict), host)
    assert tn.to_device(host, "cpu") is host


def test_asarray_refuses_foreign_device_arrays_but_takes_host_data():
    strict_arr = get_backend("strict").zeros((2,))
    with pytest.raises(DeviceError, match="strict"):
        get_backend("cpu").asarray(strict_arr)
    from_host = get_backend("strict").asarray(np.arange(3, dtype=np.float32))
    assert get_backend(from_host).name == "strict"
    assert get_backend("strict").asarray([1.0, 2.0], dtype="float32").dtype == \
        get_backend("strict").xp.float32


def test_rng_is_seeded_and_typed(device):
    b = get_backend(device)
    b.seed(7)
    a = tn.asnumpy(b.normal((1000,), 1.0, 2.0))
    b.seed(7)
    a2 = tn.asnumpy(b.normal((1000,), 1.0, 2.0))
    np.testing.assert_array_equal(a, a2)
    assert a.dtype == np.float32
    assert abs(a.mean() - 1.0) < 0.2 and abs(a.std() - 2.0) < 0.2
    u = tn.asnumpy(b.uniform((1000,), -1.0, 3.0))
    assert u.min() >= -1.0 and u.max() < 3.0 and u.dtype == np.float32
    m = tn.asnumpy(b.bernoulli((20000,), 0.3))
    assert set(np.unique(m)) <= {0.0, 1.0} and abs(m.mean() - 0.3) < 0.02
    p = tn.asnumpy(b.permutation(50))
    assert sorted(p.tolist()) == list(range(50)) and p.dtype == np.int64


def test_rng_state_round_trip(device):
    b = get_backend(device)
    b.seed(3)
    state = b.get_rng_state()
    first = tn.asnumpy(b.uniform((5,)))
    b.set_rng_state(state)
    np.testing.assert_array_equal(tn.asnumpy(b.uniform((5,))), first)


def test_scatter_add_accumulates_repeated_indices(device, rng):
    b = get_backend(device)
    target = b.asarray(np.zeros(6, dtype=np.float32))
    index = np.array([0, 2, 2, 5, 0, 0])
    values = rng.standard_normal(6).astype(np.float32)
    F.scatter_add(target, b.asarray(index), b.asarray(values))
    expected = np.zeros(6, dtype=np.float32)
    np.add.at(expected, index, values)
    np.testing.assert_allclose(tn.asnumpy(target), expected, rtol=1e-6)
    assert tn.asnumpy(target).dtype == np.float32


def test_numpy_scatter_add_matches_generic(rng):
    cpu = get_backend("cpu")
    index = rng.integers(0, 10, size=200)
    values = rng.standard_normal(200).astype(np.float32)
    fast = F.scatter_add(np.zeros(10, np.float32), index, values)
    generic = F.scatter_add.generic(cpu, np.zeros(10, np.float32), index, values)
    np.testing.assert_allclose(fast, generic, rtol=1e-5)


def test_logsumexp_is_stable(device):
    b = get_backend(device)
    x = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [0.0, -np.inf]], dtype=np.float32)
    out = tn.asnumpy(F.logsumexp(b.asarray(x), axis=1))
    np.testing.assert_allclose(out, [1000 + np.log(2), -1000 + np.log(2), 0.0], rtol=1e-6)


def test_one_hot(device):
    b = get_backend(device)
    oh = tn.asnumpy(F.one_hot(b.asarray(np.array([2, 0, 1])), 3, b.xp.float32))
    np.testing.assert_array_equal(oh, np.eye(3, dtype=np.float32)[[2, 0, 1]])


def test_relu_override_matches_generic(rng):
    cpu = get_backend("cpu")
    x = rng.standard_normal((8, 9)).astype(np.float32)
    g = rng.standard_normal((8, 9)).astype(np.float32)
    np.testing.assert_array_equal(F.relu(x), F.relu.generic(cpu, x))
    y = F.relu(x)
    np.testing.assert_array_equal(F.relu_backward(g, y), F.relu_backward.generic(cpu, g, y))
    assert F.relu(x).dtype == np.float32


def test_available_backends_reports_every_device():
    found = tn.available_backends()
    assert found["cpu"] == "ok" and found["strict"] == "ok" and "cuda" in found
    assert "torch" in found


@pytest.mark.parametrize("layout", ["contiguous", "fortran", "strided"])
def test_relu_backward_gives_zero_where_the_relu_was_off_on_every_path(any_device, layout):
    """where(y > 0, grad, 0) as PyTorch's threshold_backward, numba or not, in any layout:
    a NaN, inf or negative gradient where y <= 0 gives +0."""
    backend = get_backend(any_device)
    y = np.array([[0.0, -0.0, 2.0, np.nan], [0.0, 1.0, 0.0, 3.0]], np.float32)
    grad = np.array([[np.nan, -1.0, 5.0, 7.0], [np.inf, -2.0, -np.inf, np.nan]], np.float32)
    if layout == "fortran":
        grad = np.asfortranarray(grad)
    elif layout == "strided":  # (the NumPy backend's kernels stream contiguous arrays only)
        grad = np.repeat(grad, 2, axis=1)[:, ::2]
    want = np.array([[0.0, 0.0, 5.0, 0.0], [0.0, -2.0, 0.0, np.nan]], np.float32)
    for numba in (True, False):
        with jit.switched(numba):
            g = grad if any_device == "cpu" else backend.asarray(grad)
            got = tn.asnumpy(F.relu_backward(g, backend.asarray(y)))
            assert got.tobytes() == want.tobytes(), (numba, got)


def test_blas_hint_names_openblas_avx2_kernels_on_an_avx512_cpu():
    from tensornet.backends.numpy import blas_kernel_hint
    haswell = [{"internal_api": "openblas", "architecture": "Haswell", "num_threads": 2}]
    hint = blas_kernel_hint(haswell, {"avx2", "avx512f"})
    assert "Haswell" in hint and "OPENBLAS_CORETYPE=SkylakeX" in hint
    assert blas_kernel_hint(haswell, {"avx2"}) is None  # no AVX-512: Haswell is right
    skylake = [{"internal_api": "openblas", "architecture": "SkylakeX", "num_threads": 2}]
    assert blas_kernel_hint(skylake, {"avx512f"}) is None
    mkl = [{"internal_api": "mkl", "architecture": None, "num_threads": 2}]
    assert blas_kernel_hint(mkl, {"avx512f"}) is None
    assert blas_kernel_hint([], {"avx512f"}) is None


def test_cpu_backend_describes_its_blas_kernels():
    info = get_backend("cpu").describe()
    assert info["device"] == "cpu" and info["blas"]
    assert set(info) <= {"device", "library", "blas", "threads", "hint"}
