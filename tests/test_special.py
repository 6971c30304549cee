"""nn.special: erfc from standard array calls (GELU's normal CDF), against math.erfc, and
its Chebyshev coefficients refitted with mpmath."""
import math

import numpy as np
import pytest

from tensornet.backends import get_backend
from tensornet.nn import special


def test_erfc_float64_against_math_erfc(device):
    b = get_backend(device)
    z = np.concatenate([np.linspace(-6, 27, 40001), [0.0, -0.0, 1e-300, 3.0]])
    got = b.to_numpy(special.erfc(b.xp, b.asarray(z)))
    ref = np.array([math.erfc(v) for v in z])
    near = np.abs(z) <= 6
    np.testing.assert_allclose(got[near], ref[near], rtol=5e-15)
    normal = ref > 1e-300  # below that math.erfc itself is subnormal
    np.testing.assert_allclose(got[normal], ref[normal], rtol=7e-14)


def test_erfc_float32_and_special_values(device):
    b = get_backend(device)
    z = np.linspace(-4, 9, 5001).astype(np.float32)
    got = b.to_numpy(special.erfc(b.xp, b.asarray(z)))
    assert got.dtype == np.float32
    ref = np.array([math.erfc(float(v)) for v in z])
    # float32 keeps ~7 digits; exp(-z*z) adds z^2 * 6e-8 relative in the tail
    bound = (2e-6 + 6e-8 * z.astype(np.float64) ** 2) * ref + 1e-30
    assert np.all(np.abs(got - ref) <= bound)
    edge = b.to_numpy(special.erfc(b.xp, b.asarray(np.array([np.inf, -np.inf, np.nan, 40.0]))))
    assert edge[0] == 0.0 and edge[1] == 2.0 and np.isnan(edge[2]) and edge[3] == 0.0


def test_normal_cdf_and_pdf(rng):
    x = rng.standard_normal(50) * 5
    np.testing.assert_allclose(special.normal_cdf(np, x),
                               [0.5 * math.erfc(-v / math.sqrt(2)) for v in x], rtol=5e-14)
    np.testing.assert_allclose(special.normal_pdf(np, x),
                               np.exp(-x * x / 2) / math.sqrt(2 * math.pi), rtol=1e-15)


def test_coefficients_are_the_documented_fit():
    """Redo the fit the module docstring describes (mpmath, 40 digits, 200 nodes)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    k, nodes = special.ERFCX_SCALE, 200

    def erfcx(t):
        z = k * (1 + t) / (1 - t)
        return mpmath.erfc(z) * mpmath.exp(z * z)

    theta = [mpmath.pi * (j + mpmath.mpf(1) / 2) / nodes for j in range(nodes)]
    values = [erfcx(mpmath.cos(a)) for a in theta]
    for i, c in enumerate(special.ERFCX_CHEBYSHEV):
        fitted = 2 * mpmath.fsum(v * mpmath.cos(i * a) for v, a in zip(values, theta)) / nodes
        if i == 0:
            fitted /= 2
        assert float(fitted) == pytest.approx(c, rel=1e-14, abs=1e-30), i
