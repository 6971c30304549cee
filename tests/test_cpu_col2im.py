"""The NumPy backend's col2im with plane-shifted adds (``backends/jit/windows.py``, used by
Conv2d's backward on its own scratch columns): bitwise the row-by-row adds for every
stride-1 geometry that keeps the image size, NaN in the padding's columns discarded as
before, and the public ``F.col2im`` never changing the caller's columns."""
import itertools

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import jit
from tensornet.nn import functional as F

pytest.importorskip("numba")


def _same_geometries():
    for kh, kw, dh in itertools.product([1, 2, 3, 5], [1, 3], [1, 2]):
        for h, w in [(1, 5), (4, 14), (7, 5)]:
            if (kh - 1) * dh >= h or kw - 1 >= w:
                continue
            th, tw = (kh - 1) * dh, kw - 1
            for top, left in itertools.product(sorted({0, th // 2, th}), sorted({0, tw // 2, tw})):
                yield (kh, kw), (dh, 1), ((top, th - top), (left, tw - left)), (h, w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plane_shift_col2im_is_bitwise_the_row_by_row_adds(dtype):
    kernels = jit.kernels("windows")
    rng = np.random.default_rng(0)
    cases = 0
    for kernel, dilation, padding, (h, w) in _same_geometries():
        n, c = 3, 2
        cols = rng.standard_normal(c * kernel[0] * kernel[1] * n * h * w).astype(dtype)
        cols[rng.random(cols.size) < 0.05] = np.nan  # (in padding columns: discarded)
        cols[rng.random(cols.size) < 0.05] = -0.0
        want = kernels.col2im(cols.copy(), (n, c, h, w), kernel, (1, 1), padding, dilation,
                              (h, w))
        got = kernels.col2im(cols.copy(), (n, c, h, w), kernel, (1, 1), padding, dilation,
                             (h, w), overwrite=True)
        assert got.tobytes() == want.tobytes(), (kernel, dilation, padding, (h, w))
        cases += 1
    assert cases > 100


def test_public_col2im_leaves_the_callers_columns_alone():
    rng = np.random.default_rng(1)
    cols = rng.standard_normal((2 * 9, 3 * 5 * 6)).astype(np.float32)
    before = cols.copy()
    F.col2im(cols, (3, 2, 5, 6), (3, 3), (1, 1), ((1, 1), (1, 1)))
    assert cols.tobytes() == before.tobytes()


def test_conv2d_input_gradient_is_unchanged_by_the_plane_shift(monkeypatch):
    """Conv2d's backward (which lets col2im overwrite its scratch) against the same
    backward with the row-by-row adds."""
    kernels = jit.kernels("windows")
    original = kernels.col2im
    tn.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = np.random.default_rng(2).standard_normal((5, 3, 9, 7)).astype(np.float32)
    g = np.random.default_rng(3).standard_normal((5, 4, 9, 7)).astype(np.float32)
    conv(x)
    got = conv.backward(g)
    monkeypatch.setattr(kernels, "col2im", lambda *args, overwrite=False, **kwargs:
                        original(*args, **kwargs))
    conv(x)
    want = conv.backward(g)
    assert got.tobytes() == want.tobytes()
