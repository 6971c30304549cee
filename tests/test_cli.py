"""The tensornet command: end-to-end training on Fashion-MNIST, eval, info, exit codes."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensornet as tn
from tensornet.cli import main
from tensornet.data import datasets, write_idx

from conftest import GPU_SKIP_REASON
from fake_datasets import register_as_official

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def _accuracy(text: str) -> float:
    match = re.search(r"Test accuracy: ([\d.]+)%", text)
    assert match, text
    return float(match.group(1))


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """A 120/40-image dataset in IDX files (labels follow the mean brightness, so learnable)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fake"
    folder.mkdir()
    for split, n in (("train", 120), ("t10k", 40)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)) + labels[:, None, None].astype(np.int64) * 20
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images.astype(np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(datasets, "SPLIT_SIZES", {"train": 120, "test": 40})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    register_as_official(monkeypatch, folder)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")
def test_train_fashion_mnist_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--out", str(out), "--data-dir", str(DEBIAN)]) == 0
    text = capsys.readouterr().out
    assert "Epoch  Train loss  Valid loss  Train acc  Valid acc" in text
    accuracy = _accuracy(text)
    assert accuracy >= 84.0
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2] and len(history["val_acc"]) == 2
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    state = tn.load(out / "model.safetensors")
    assert state["config"]["model"]["kwargs"]["sizes"] == [784, 256, 120, 64, 10]
    assert main(["eval", "--checkpoint", str(out / "model.safetensors"),
                 "--data-dir", str(DEBIAN)]) == 0
    assert _accuracy(capsys.readouterr().out) == accuracy


def test_toy_dataset_and_missing_matplotlib(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "spirals"
    code = main(["train", "--dataset", "spirals", "--epochs", "8", "--lr", "0.01",
                 "--optimizer", "adam", "--init", "xavier", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0 and _accuracy(text) >= 95.0
    assert "matplotlib is not installed, so curves.png was skipped" in text
    assert not (out / "curves.png").exists() and (out / "model.safetensors").is_file()


def test_autoencoder_trains_on_images_as_targets(tmp_path, capsys, fake_data):
    out = tmp_path / "ae"
    assert main(["train", "--model", "autoencoder", "--epochs", "2", "--batch-size", "32",
                 "--data-dir", str(fake_data), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    loss = float(re.search(r"Test loss \(MSE\): ([\d.]+)", text).group(1))
    assert 0.0 < loss < 0.2
    history = json.loads((out / "history.json").read_text())
    assert history["train_acc"] == [None, None]
    assert main(["eval", "--checkpoint", str(out / "model.safetensors"),
                 "--data-dir", str(fake_data)]) == 0
    assert f"Test loss (MSE): {loss:.5f}" in capsys.readouterr().out


@pytest.mark.parametrize("optimizer, init", [
    ("sgd", "he"), ("momentum", "xavier"), ("nesterov", "he"), ("adagrad", "he"),
    ("rmsprop", "he"), ("adamw", "normal")])
def test_every_optimizer_choice_runs(tmp_path, capsys, optimizer, init):
    assert main(["train", "--dataset", "blobs", "--epochs", "2", "--optimizer", optimizer,
                 "--init", init, "--val-split", "0", "--out", str(tmp_path), "--quiet"]) == 0
    assert _accuracy(capsys.readouterr().out) > 90.0


def test_cnn_model(tmp_path, capsys, fake_data):
    if not hasattr(tn.nn, "Conv2d"):
        pytest.skip("tensornet.nn.Conv2d is not available in this build yet")
    assert main(["train", "--model", "cnn", "--epochs", "1", "--batch-size", "32",
                 "--data-dir", str(fake_data), "--out", str(tmp_path / "cnn")]) == 0
    assert "Test accuracy:" in capsys.readouterr().out


# ---------------------------------------------------------------------- exit codes
@pytest.mark.parametrize("argv, needle", [
    (["train", "--model", "resnet"], "invalid choice: 'resnet'"),
    (["train", "--lr", "-0.1"], "--lr: must be positive"),
    (["train", "--lr", "nan"], "--lr: must be positive"),
    (["train", "--epochs", "0"], "--epochs: must be positive"),
    (["train", "--val-split", "1"], "--val-split: must be in [0, 1)"),
    (["train", "--seed", "-1"], "--seed: must be an integer in [0, 2**63), got -1"),
    (["train", "--seed", "1.5"], "--seed: expected an integer"),
    (["train", "--device", "tpu"], "unknown device 'tpu'"),
    (["eval"], "required: --checkpoint"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        code = main(argv)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(GPU_SKIP_REASON is None, reason="a GPU is present")
def test_cuda_without_gpu_exits_2(capsys):
    assert main(["train", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "needs CuPy and an NVIDIA GPU" in err and len(err.strip().splitlines()) == 1


def test_runtime_failures_exit_1(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert main(["eval", "--checkpoint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(datasets, "MNIST", datasets.MNIST.__class__(
        **{**datasets.MNIST.__dict__, "mirrors": ("http://127.0.0.1:9/",)}))
    (tmp_path / "empty").mkdir()
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "run")]) == 1
    assert "MNIST not found" in capsys.readouterr().err


def test_console_entry_points():
    info = subprocess.run([sys.executable, "-m", "tensornet", "info"], capture_output=True,
                          text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert f"tensornet {tn.__version__}" in info.stdout
    assert re.search(r"^  cpu +ok$", info.stdout, re.M) and "blas:" in info.stdout
    script = Path(sys.executable).parent / "tensornet"
    if not script.exists():
        pytest.skip("the tensornet console script is not installed in this environment")
    bad = subprocess.run([str(script), "train", "--lr", "-1"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--lr: must be positive" in bad.stderr


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_with_exit_1(tmp_path, capsys):
    code = main(["train", "--dataset", "blobs", "--optimizer", "sgd", "--lr", "1e4",
                 "--epochs", "3", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and "TerminateOnNaN: epoch 1, step" in captured.out
    assert "diverged" in captured.err and (tmp_path / "history.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
