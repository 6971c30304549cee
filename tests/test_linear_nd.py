"""Linear on ``(*, in_features)`` inputs, as ``torch.nn.Linear``: unbatched ``(in,)``,
sequences ``(N, T, in)`` and more dimensions, forward and backward against torch on
identical inputs, a float64 gradient check, every backend, and the ONNX file."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("shape", [(4,), (5, 4), (2, 3, 4), (2, 3, 2, 4)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_linear_on_any_leading_dimensions_matches_torch(shape, device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    layer = nn.Linear(4, 3, device=device).to(dtype="float64")
    reference = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(tn.asnumpy(layer.weight.data)))
        reference.bias.copy_(torch.tensor(tn.asnumpy(layer.bias.data)))
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    grad = rng.standard_normal(tuple(y.shape))
    dx = layer.backward(backend.asarray(grad))
    xt = torch.tensor(x, requires_grad=True)
    yt = reference(xt)
    yt.backward(torch.tensor(grad))
    assert tuple(y.shape) == tuple(yt.shape) and tuple(dx.shape) == shape
    for ours, theirs in [(y, yt), (dx, xt.grad), (layer.weight.grad, reference.weight.grad),
                         (layer.bias.grad, reference.bias.grad)]:
        np.testing.assert_allclose(tn.asnumpy(ours), theirs.detach().numpy(), rtol=1e-12,
                                   atol=1e-12)


def test_linear_on_a_sequence_passes_the_gradient_check():
    rng = np.random.default_rng(1)
    layer = nn.Linear(3, 2).to(dtype="float64")
    assert tn.gradcheck(layer, [rng.standard_normal((2, 4, 3))])
    assert tn.gradcheck(nn.DropConnect(3, 2, p=0.0).to(dtype="float64"),
                        [rng.standard_normal((3,))])


def test_an_mlp_over_a_sequence_trains_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(2)
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = rng.standard_normal((6, 5, 4)).astype(np.float32)
    y = rng.integers(0, 3, (6, 5))
    loss_fn = nn.CrossEntropyLoss()
    opt = tn.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        logits = model(x)  # (6, 5, 3): CrossEntropyLoss wants the classes second
        loss = float(loss_fn(np.ascontiguousarray(np.moveaxis(logits, -1, 1)), y))
        model.backward(np.moveaxis(loss_fn.backward(), 1, -1))
        opt.step()
        opt.zero_grad()
        first = loss if first is None else first
    assert loss < first
    model.eval()
    tn.onnx.export(model, x, tmp_path / "seq.onnx")
    session = ort.InferenceSession(str(tmp_path / "seq.onnx"),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x[:2]})[0], model(x[:2]),
                               rtol=1e-5, atol=1e-6)
