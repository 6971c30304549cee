"""CUDA kernels of the CuPy backend that the emulated twins of the GPU tests do not reach
(the counter-based dropout draw, split-K), the kernel registry's coverage, and the
regressions of issue 15 (split-K, RawKernel caching, TF32 reporting below sm_80)."""
import warnings

import numpy as np
import pytest

import tensornet as tn
from cuda_emulation.support import install_emulation
from tensornet.backends import cuda_kernels as ck
from tensornet.backends import get_backend
from tensornet.backends.cuda_matmul import capture_safe_matmul
from tensornet.nn import functional as F

pytestmark = pytest.mark.cuda_emulated


@pytest.fixture
def cuda(cuda_emulation):
    return get_backend("cuda")


def _launched(cuda_emulation, kind=None):
    return [(k, name, grid) for k, name, grid, _ in cuda_emulation.__fake_state__.launches
            if kind is None or k == kind]


# ====================================================================== dropout in graphs
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bernoulli_counter_and_rng_advance_match_numpy(cuda, dtype):
    key, counter, p = 0x0123456789ABCDEF, 41, 0.3
    rng_state = cuda.asarray(np.array([key, counter], dtype=np.uint64))
    mask = cuda.xp.empty((37, 11), dtype=dtype)
    cuda._kernels.elementwise(ck.BERNOULLI_COUNTER)(rng_state, np.float64(p), mask)
    cuda._kernels.elementwise(ck.RNG_ADVANCE)(np.uint64(1), rng_state[1:])
    i = np.arange(mask.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(key) ^ _mix64(np.uint64(counter) * np.uint64(0x9E3779B97F4A7C15)
                                           + i))
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
    np.testing.assert_array_equal(tn.asnumpy(mask).ravel(), (u < p).astype(dtype))
    assert tn.asnumpy(rng_state).tolist() == [key, counter + 1]
    assert 0.25 < tn.asnumpy(mask).mean() < 0.35


def _reference_draw(key, counter, n):
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64(np.uint64(key) ^ _mix64(np.uint64(counter)
                                              * np.uint64(0x9E3779B97F4A7C15) + i))


def _unit(h):
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def test_the_generator_draws_its_documented_hash(cuda):
    """Eager draws are the hash of (key, counter, index) the graph kernel also uses; the
    counter moves on by one per draw."""
    cuda.seed(5)
    key = cuda.get_rng_state()["key"]
    mask = tn.asnumpy(cuda.bernoulli((6, 7), 0.4, dtype="float64"))
    np.testing.assert_array_equal(mask.ravel(), (_unit(_reference_draw(key, 0, 42)) < 0.4))
    u = tn.asnumpy(cuda.uniform((50,), -1.0, 3.0, dtype="float64"))
    np.testing.assert_allclose(u, -1.0 + 4.0 * _unit(_reference_draw(key, 1, 50)), rtol=1e-15)
    h = _reference_draw(key, 2, 2 * 30)
    u1, u2 = 1.0 - _unit(h[0::2]), _unit(h[1::2])
    z = tn.asnumpy(cuda.normal((30,), 2.0, 0.5, dtype="float64"))
    np.testing.assert_allclose(z, 2.0 + 0.5 * np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2),
                               rtol=1e-12)
    perm = tn.asnumpy(cuda.permutation(40))
    np.testing.assert_array_equal(perm, np.argsort(_reference_draw(key, 3, 40), kind="stable"))
    assert cuda.get_rng_state()["counter"] == 4


def test_the_generator_has_the_expected_statistics(cuda):
    cuda.seed(1)
    u = tn.asnumpy(cuda.uniform((20000,), 2.0, 5.0))
    z = tn.asnumpy(cuda.normal((20000,), 1.0, 2.0))
    m = tn.asnumpy(cuda.bernoulli((20000,), 0.3))
    assert u.dtype == z.dtype == m.dtype == np.float32
    assert 2.0 <= u.min() and u.max() < 5.0 and abs(u.mean() - 3.5) < 0.05
    assert abs(z.mean() - 1.0) < 0.05 and abs(z.std() - 2.0) < 0.05
    assert abs(m.mean() - 0.3) < 0.02 and set(np.unique(m)) <= {0.0, 1.0}
    assert sorted(tn.asnumpy(cuda.permutation(100)).tolist()) == list(range(100))


def test_the_generator_state_round_trips_and_is_checked(cuda):
    """The whole state (bug 6 of issue 15): restoring it repeats the draws exactly, so a
    checkpoint resumes bit-identically on the GPU too; a damaged state changes nothing."""
    cuda.seed(9)
    cuda.bernoulli((3,), 0.5)
    state = cuda.get_rng_state()
    first = [tn.asnumpy(cuda.normal((8,))), tn.asnumpy(cuda.permutation(10))]
    cuda.set_rng_state(state)
    again = [tn.asnumpy(cuda.normal((8,))), tn.asnumpy(cuda.permutation(10))]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    import json
    assert json.loads(json.dumps(state)) == state  # fits a checkpoint's metadata
    before = cuda.get_rng_state()
    for bad in ({"key": 1}, {**state, "counter": -1}, {**state, "key": 2**64},
                {**state, "host": {"bit_generator": "nonsense"}}, None):
        with pytest.raises(ValueError):
            cuda.set_rng_state(bad)
        assert cuda.get_rng_state() == before


# ====================================================================== GEMM split-K
def test_long_k_gemm_is_split_over_blocks_deterministically(cuda, cuda_emulation, rng):
    """The conv weight-gradient shape of the CNN: one 64x64 tile of output, K = 100352.
    Unsplit it would run on one block of the H200's 132 SMs."""
    a = rng.standard_normal((100352, 8)).astype(np.float32)
    b = rng.standard_normal((100352, 9)).astype(np.float32)
    ad, bd = cuda.asarray(a), cuda.asarray(b)
    got = capture_safe_matmul(cuda, ad.T, bd)
    grids = [grid for _, name, grid in _launched(cuda_emulation, "raw") if "gemm" in name]
    assert len(grids) == 1 and np.prod(grids[0]) >= 132, grids
    np.testing.assert_allclose(tn.asnumpy(got), a.T.astype(np.float64) @ b, rtol=1e-4,
                               atol=2e-3)
    np.testing.assert_array_equal(tn.asnumpy(capture_safe_matmul(cuda, ad.T, bd)),
                                  tn.asnumpy(got))  # a fixed summation order


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_k_keeps_batched_products_apart(cuda, rng, dtype):
    a = rng.standard_normal((3, 7, 5000)).astype(dtype)
    b = rng.standard_normal((3, 5000, 10)).astype(dtype)[:, ::-1]  # negative row stride
    assert ck.gemm_split_k(3, 5000)[0] > 1
    got = capture_safe_matmul(cuda, cuda.asarray(a), cuda.asarray(b))
    tol = 1e-3 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(tn.asnumpy(got), a.astype(np.float64) @ b, rtol=tol, atol=tol)


def test_split_k_plan():
    assert ck.gemm_split_k(1, 100352) == (196, 512)
    assert ck.gemm_split_k(400, 100352) == (1, 100352)  # enough tiles already
    assert ck.gemm_split_k(1, 1000) == (1, 1000)          # too short to split
    for tiles, k in [(1, 1024), (3, 5000), (7, 12345), (100, 99999)]:
        splits, chunk = ck.gemm_split_k(tiles, k)
        assert chunk % ck.GEMM_TILE_K == 0 and (splits - 1) * chunk < k <= splits * chunk


# ====================================================================== kernel cache, TF32
def test_raw_kernels_are_built_once(cuda, rng):
    kernels = cuda._kernels
    assert kernels.raw("gemm", "float") is kernels.raw("gemm", "float")
    assert kernels.raw("cross_entropy", "float", "int") is not kernels.raw("cross_entropy",
                                                                           "float", "long long")
    logits = cuda.asarray(rng.standard_normal((5, 4)).astype(np.float32))
    labels = cuda.asarray(np.arange(5) % 4)
    first = kernels.raw("cross_entropy", "float", "long long")
    F.softmax_cross_entropy(logits, labels)
    assert kernels.raw("cross_entropy", "float", "long long") is first


@pytest.mark.parametrize("capability, tf32", [("75", False), ("80", True), ("90", True)])
def test_set_tf32_reports_what_cupy_uses(monkeypatch, capability, tf32):
    install_emulation(monkeypatch, compute_capability=capability)
    cuda = get_backend("cuda")
    assert cuda.tf32 is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CuPy warns below sm_80
        cuda.set_tf32(True)
    assert cuda.tf32 is tf32
    cuda.set_tf32(False)
    assert cuda.tf32 is False


# ====================================================================== coverage
def test_every_registered_kernel_is_launched_by_the_emulated_tests(cuda, cuda_emulation, rng):
    """One pass through every fused path of the backend, as the tests above and the twins of
    tests/test_gpu_kernels.py exercise them. A kernel added to the registry (elementwise_specs,
    RAW_MODULES) but never launched here fails this test: give it an emulated test."""
    f32 = lambda *shape: cuda.asarray(rng.standard_normal(shape).astype(np.float32))  # noqa
    x = f32(2, 3, 6, 6)
    y = F.relu(x)
    F.relu_backward(f32(*y.shape), y)
    F.bias_relu(f32(4, 3), f32(3))
    for labels in (np.arange(4) % 3, (np.arange(4) % 3).astype(np.int32)):
        losses, log_probs = F.softmax_cross_entropy(f32(4, 3), cuda.asarray(labels))
        F.softmax_cross_entropy_backward(log_probs, cuda.asarray(labels), 0.25)
        _, log_probs, kept = F.softmax_cross_entropy(f32(4, 3), cuda.asarray(labels), 0.0, 1)
        F.softmax_cross_entropy_backward(log_probs, cuda.asarray(labels), 1.0, 0.0, 1, kept)
    cols = F.im2col(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    F.col2im(cols, x.shape, (3, 3), (1, 1), ((1, 1), (1, 1)))
    pooled, argmax = F.max_pool2d(x, (2, 2), (2, 2))
    F.max_pool2d_backward(f32(*pooled.shape), argmax, x.shape, (2, 2), (2, 2))
    capture_safe_matmul(cuda, f32(8, 2048), f32(2048, 9))  # split-K and its sum
    cuda.normal((3,)), cuda.uniform((3,)), cuda.bernoulli((3,), 0.5), cuda.permutation(4)
    rng_state = cuda.asarray(np.array([1, 0], dtype=np.uint64))
    cuda._kernels.elementwise(ck.BERNOULLI_COUNTER)(rng_state, np.float64(0.5),
                                                    cuda.xp.empty(5, np.float32))
    cuda._kernels.elementwise(ck.RNG_ADVANCE)(np.uint64(1), rng_state[1:])
    for rule in tn.optim.fused_updates():
        arrays = [f32(6) for _ in range(2 + len(rule.states))]
        values = [np.float32(0.1)] * len(rule.scalars)
        cuda._kernels.elementwise(ck.update_spec(rule, False))(arrays[1], *values, arrays[0],
                                                              *arrays[2:])
        row = cuda.asarray(np.full(len(rule.scalars), 0.1, np.float32))
        cuda._kernels.elementwise(ck.update_spec(rule, True))(arrays[1], row, arrays[0],
                                                             *arrays[2:])
    launched = {name for _, name, _ in _launched(cuda_emulation)}
    registered = {spec.name for spec in ck.elementwise_specs()}
    registered |= {ck.update_spec(rule, d).name for rule in tn.optim.fused_updates()
                   for d in (False, True)}
    registered |= {ck.name_expression(module, *args) for module, (_, _, instances) in
                   ck.RAW_MODULES.items() for args in instances if "double" not in args}
    assert registered - launched == set()
