"""onnxruntime as the reference for an exported model: export it, run the file on the
example batch and on another batch size (the batch axis is dynamic), compare with the
model in eval mode. Skips the calling test when onnx or onnxruntime is not installed."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn


def assert_onnxruntime_matches(model, x, path, other_batch: int = 5, rtol=1e-5, atol=1e-5,
                               rng=None):
    """Export ``model`` with example ``x`` to ``path``; onnxruntime's outputs for ``x`` and
    for a batch of ``other_batch`` random samples must match the model's (``rtol=atol=0``:
    bit for bit)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    tn.onnx.export(model, x, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = rng if rng is not None else np.random.default_rng(0)
    model.eval()
    other = rng.standard_normal((other_batch,) + tuple(x.shape[1:])).astype(x.dtype)
    for batch in (x, other):
        expected = tn.asnumpy(model(batch))
        got = session.run(None, {"input": batch})[0]
        if rtol == 0 and atol == 0:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
