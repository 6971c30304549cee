"""ONNX export: the file, run by onnxruntime, computes what tensornet computes (rtol 1e-5),
for a model using every supported layer and for the CLI's mlp, cnn and autoencoder through
`tensornet export`."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.cli import main

from test_cli import fake_data  # noqa: F401  (the fixture: IDX files of 120/40 images)

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'tensornet[export]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return session.run(None, {"input": x})[0]


def _reference(model, x, transform=None):
    model.eval()
    out = model(transform(x) if transform is not None else x)
    for module in model.modules():
        module.clear_cache()
    return tn.asnumpy(out)


def _everything(rng):
    bn = nn.BatchNorm2d(4)
    bn.running_mean = rng.standard_normal(4).astype(np.float32)
    bn.running_var = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), bn, nn.GELU(),
        nn.MaxPool2d(2, stride=1, padding=1), nn.Conv2d(4, 4, 3, padding="same", groups=2,
                                                        dilation=2),
        nn.SiLU(), nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), nn.PReLU(4),
        nn.Upsample(scale_factor=1.5), nn.AdaptiveAvgPool2d((3, 2)),
        nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
        nn.Hardtanh(-0.5, 0.7), nn.Dropout2d(0.3),
        nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 1), nn.Tanh())), nn.Flatten(),
        nn.Linear(48, 16), nn.BatchNorm1d(16), nn.LeakyReLU(0.1), nn.ELU(),
        nn.SoftPlus(beta=2.0), nn.LayerNorm(16), nn.GELU("tanh"), nn.Dropout(0.5),
        nn.DropConnect(16, 8, p=0.2), nn.Sigmoid(), nn.Identity(), nn.Linear(8, 5),
        nn.Softplus(), nn.LogSoftmax(1))


def test_every_supported_layer_matches_onnxruntime(tmp_path, rng):
    tn.manual_seed(0)
    model = _everything(rng)
    model.train()  # export works from either mode and leaves it as it was
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    proto = tn.onnx.export(model, x, tmp_path / "m.onnx")
    assert model.training and proto.opset_import[0].version == tn.onnx.DEFAULT_OPSET
    batch = np.concatenate([x, 0.5 * x[:2]])  # the batch axis is dynamic
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", batch), _reference(model, batch),
                               rtol=1e-5, atol=1e-6)


def test_conv1d_embedding_softmax_and_normalize_in_front(tmp_path, rng):
    x = rng.standard_normal((3, 2, 9)).astype(np.float32)
    model = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(15, 4), nn.Softmax(1))
    norm = tn.data.Normalize([0.3, -0.2], [2.0, 0.5])
    tn.onnx.export(model, x, tmp_path / "c.onnx", input_transform=norm)
    np.testing.assert_allclose(_run(tmp_path / "c.onnx", x), _reference(model, x, norm),
                               rtol=1e-5, atol=1e-7)
    tokens = rng.integers(0, 10, (4, 3))
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    tn.onnx.export(emb, tokens, tmp_path / "e.onnx")
    np.testing.assert_allclose(_run(tmp_path / "e.onnx", tokens), _reference(emb, tokens),
                               rtol=1e-5)
    double = nn.Sequential(nn.Linear(3, 2)).double()
    z = rng.standard_normal((2, 3))
    tn.onnx.export(double, z, tmp_path / "d.onnx")
    np.testing.assert_allclose(_run(tmp_path / "d.onnx", z), _reference(double, z), rtol=1e-12)


def test_unsupported_layers_are_named(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"no converter for Custom\(\).*supported: "):
        tn.onnx.export(nn.Sequential(nn.Linear(2, 2), Custom()), np.zeros((1, 2), np.float32),
                       tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="track_running_stats=False"):
        tn.onnx.export(nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False)),
                       np.zeros((2, 2), np.float32), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("model", ["mlp", "cnn", "autoencoder"])
def test_cli_export_matches_tensornet(model, tmp_path, capsys, fake_data):  # noqa: F811
    out = tmp_path / model
    assert main(["train", "--model", model, "--epochs", "1", "--batch-size", "32", "--quiet",
                 "--data-dir", str(fake_data), "--out", str(out)]) == 0
    onnx_path = tmp_path / "exported" / f"{model}.onnx"
    assert main(["export", "--checkpoint", str(out / "model.safetensors"),
                 "--out", str(onnx_path)]) == 0
    assert f"wrote {onnx_path}" in capsys.readouterr().out
    state = tn.load(out / "model.safetensors")
    config = state["config"]
    net = tn.models.build(config["model"])
    net.load_state_dict(state["model"])
    x, _ = tn.data.fashion_mnist("test", root=fake_data)
    norm = config["normalize"]
    transform = tn.data.Normalize(norm["mean"], norm["std"]) if norm else None
    if config["flatten"]:
        x = x.reshape(len(x), -1)
    np.testing.assert_allclose(_run(onnx_path, x), _reference(net, x, transform), rtol=1e-5,
                               atol=1e-6)


def test_cli_export_errors(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    tn.save({"weights": np.zeros(2)}, bad)
    assert main(["export", "--checkpoint", str(bad), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "no model config in this checkpoint" in capsys.readouterr().err


def test_an_opset_newer_than_onnx_knows_is_refused(tmp_path, capsys):
    """opset 99 passed onnx.checker and was written, a file no runtime can load."""
    newest = onnx.defs.onnx_opset_version()
    model = nn.Sequential(nn.Linear(2, 3))
    with pytest.raises(ValueError, match=f"opset {newest + 1} is newer"):
        tn.onnx.export(model, np.zeros((1, 2), np.float32), tmp_path / "m.onnx",
                       opset=newest + 1)
    ckpt = tmp_path / "model.safetensors"
    tn.save_checkpoint(ckpt, tn.models.mlp((2, 3)), config={
        "model": {"name": "mlp", "kwargs": {"sizes": [2, 3]}}, "dataset": "blobs"})
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"),
                 "--opset", str(newest + 1)]) == 2
    err = capsys.readouterr().err
    assert f"--opset {newest + 1}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
    tn.onnx.export(model, np.zeros((1, 2), np.float32), tmp_path / "m.onnx", opset=newest)
    _run(tmp_path / "m.onnx", np.zeros((1, 2), np.float32))   # the newest one loads


def test_a_failed_export_leaves_the_previous_file(tmp_path, monkeypatch):
    """The file is written atomically (onnx.save wrote in place: a failure or Ctrl-C
    mid-write left a partial file)."""
    from tensornet.io import atomic

    model, x = nn.Sequential(nn.Linear(2, 3)), np.zeros((1, 2), np.float32)
    path = tmp_path / "m.onnx"
    tn.onnx.export(model, x, path)
    before = path.read_bytes()

    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", half_then_fail)
    with pytest.raises(tn.CheckpointError, match=f"{path}: cannot save the ONNX model"):
        tn.onnx.export(nn.Sequential(nn.Linear(2, 4)), x, path)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
