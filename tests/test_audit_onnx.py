"""ONNX export audit: configurations whose file computed something else than tensornet's
eval-mode forward in onnxruntime, or that failed without a clear message. Each test fails
on the code before its fix. Tolerances: float32 rtol 1e-5 (atol 1e-6), float64 rtol 1e-12."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from test_onnx import _reference, _run  # noqa: F401  (also skips without onnx/onnxruntime)

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _export_and_compare(model, x, path, rtol=1e-5, atol=1e-6, **kwargs):
    tn.onnx.export(model, x[:1], path, **kwargs)  # batch 1 exported, the whole batch run
    np.testing.assert_allclose(_run(path, x), _reference(model, x, kwargs.get("input_transform")),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("beta, threshold", [(1.0, 2.0), (0.5, 1.0), (2.0, 20.0)])
def test_softplus_threshold_is_exported(tmp_path, rng, beta, threshold):
    """SoftPlus is linear where beta * x > threshold; the file ignored the threshold
    (SoftPlus(threshold=2) at x = 3: 3.049 instead of 3)."""
    x = 4.0 * rng.standard_normal((7, 6)).astype(np.float32)
    _export_and_compare(nn.Sequential(nn.SoftPlus(beta=beta, threshold=threshold)), x,
                        tmp_path / "s.onnx")
