"""The CLI trusts nothing: eval validates the checkpoint's config before building, train
checks its arguments and output folder before training, a diverging run cannot pass off
an earlier run's model as its own, and no NumPy warning or traceback reaches the user."""
from __future__ import annotations

import json
import re
import warnings

import pytest

import tensornet as tn
from tensornet.cli import _check_out, main

from checkpoint_bytes import pack

DIVERGE = ["train", "--dataset", "blobs", "--optimizer", "sgd", "--lr", "1e4", "--epochs", "3"]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---------------------------------------------------------------------- eval
@pytest.fixture(scope="module")
def blobs_model():
    tn.manual_seed(0)
    model = tn.models.mlp((2, 16, 4))
    x, y = tn.data.toy_blobs(n=3000, seed=0)
    opt = tn.optim.Adam(model.parameters(), lr=0.01)
    tn.fit(model, tn.nn.CrossEntropyLoss(), opt, tn.data.DataLoader(
        tn.data.ArrayDataset(x, y), 64, shuffle=True, seed=0), epochs=3, verbose=0)
    return model, opt


GOOD = {"model": {"name": "mlp", "kwargs": {"sizes": (2, 16, 4)}}, "dataset": "blobs"}


def test_eval_accepts_files_written_by_save_checkpoint(tmp_path, capsys, blobs_model):
    model, opt = blobs_model
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model, opt, epoch=3, config=GOOD)   # only the required keys
    assert main(["eval", "--checkpoint", str(path)]) == 0
    accuracy = float(re.search(r"Test accuracy: ([\d.]+)%", capsys.readouterr().out).group(1))
    assert accuracy > 90.0


BAD_CONFIGS = [
    ({**GOOD, "model": {"name": "mlp", "kwargs": {"sizes": [2, 16, 4], "evil": 1}}},
     "unknown mlp kwarg(s) 'evil'"),
    ({**GOOD, "model": {"name": "mlp", "kwargs": {"sizes": [2, 16, 4], "device": "cuda"}}},
     "unknown mlp kwarg(s) 'device'"),
    ({**GOOD, "model": {"name": "mlp", "kwargs": {"sizes": "abc"}}}, "kwarg 'sizes'"),
    ({**GOOD, "model": {"name": "mlp", "kwargs": {"sizes": [2, 16, 4], "activation": "gelu"}}},
     "kwarg 'activation'"),
    ({**GOOD, "model": {"name": "resnet"}}, "unknown model 'resnet'"),
    ({**GOOD, "model": "mlp"}, "model: expected"),
    ({"model": GOOD["model"]}, "lacks 'dataset'"),
    ({"dataset": "blobs"}, "lacks 'model'"),
    ({**GOOD, "dataset": "imagenet"}, "expected one of fashion-mnist, mnist, blobs, spirals"),
    ({**GOOD, "normalize": {"mean": "x", "std": 1.0}}, "normalize"),
    ({**GOOD, "normalize": {"mean": [0.0, 0.0], "std": [0.0, 1.0]}},
     "normalize: Normalize: std must be positive"),
    ({**GOOD, "normalize": {"mean": [0.0, 0.0], "std": [1.0, 1.0, 1.0]}},
     "normalize: Normalize: mean and std must be"),
    ({**GOOD, "seed": -1}, "seed"),
    ({**GOOD, "flatten": "yes"}, "flatten"),
    ("a string", "no model config"),
    (None, "no model config"),
]


@pytest.mark.parametrize("config, needle", BAD_CONFIGS, ids=lambda v: str(v)[:40])
def test_eval_validates_the_config_before_building(tmp_path, capsys, monkeypatch, blobs_model,
                                                   config, needle):
    model, opt = blobs_model
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model, opt, config=config)
    built = []
    monkeypatch.setitem(tn.models.MODELS, "mlp", lambda **kw: built.append(kw))
    assert main(["eval", "--checkpoint", str(path)]) == 1
    _one_line_error(capsys, str(path), needle)
    assert built == []     # nothing was built from a config that does not validate


@pytest.mark.parametrize("config, needle", BAD_CONFIGS, ids=lambda v: str(v)[:40])
def test_export_validates_the_config_before_building(tmp_path, capsys, monkeypatch,
                                                     blobs_model, config, needle):
    """export reads the same config as eval (it built from it unchecked: a TypeError
    traceback for an unknown kwarg, an unnamed int() error for sizes 'abc')."""
    model, opt = blobs_model
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model, opt, config=config)
    built = []
    monkeypatch.setitem(tn.models.MODELS, "mlp", lambda **kw: built.append(kw))
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "m.onnx")]) == 1
    _one_line_error(capsys, str(path), needle)
    assert built == [] and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("command, config, needle", [
    ("eval", {**GOOD, "model": {"name": "mlp", "kwargs": {"sizes": [784, 16, 4]}}},
     "Linear(784 -> 16)"),
    ("eval", {**GOOD, "normalize": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}},
     "Normalize with 3 channels"),
    ("export", {**GOOD, "dataset": "fashion-mnist"}, "Linear(2 -> 16)"),
    ("export", {**GOOD, "normalize": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}},
     "Normalize with 3 channels"),
], ids=["eval-model", "eval-normalize", "export-model", "export-normalize"])
def test_a_model_that_does_not_fit_its_dataset_names_the_file(tmp_path, capsys, blobs_model,
                                                              command, config, needle):
    """A valid config whose model (or normalisation) does not take its dataset's inputs:
    one line naming the checkpoint (it was the layer's message alone, without the file)."""
    sizes = tuple(config["model"]["kwargs"]["sizes"])
    model = blobs_model[0] if sizes == (2, 16, 4) else tn.models.mlp(sizes)
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model, config=config)
    argv = [command, "--checkpoint", str(path)]
    assert main(argv + (["--out", str(tmp_path / "m.onnx")] if command == "export" else [])) == 1
    _one_line_error(capsys, f"{path}: the checkpoint's model does not", needle)
    assert not (tmp_path / "m.onnx").exists()


def test_only_known_kwargs_reach_the_builder(tmp_path, capsys, monkeypatch, blobs_model):
    model, opt = blobs_model
    path = tmp_path / "ckpt.safetensors"
    config = {**GOOD, "optimizer": "adam", "lr": 0.01, "notes": "extra entries are ignored",
              "model": {"name": "mlp", "kwargs": {"sizes": [2, 16, 4], "init": None,
                                                  "activation": "relu", "dropout": 0.0}}}
    tn.save_checkpoint(path, model, opt, config=config)
    seen = []
    real = tn.models.MODELS["mlp"]
    monkeypatch.setitem(tn.models.MODELS, "mlp", lambda **kw: seen.append(kw) or real(**kw))
    assert main(["eval", "--checkpoint", str(path)]) == 0
    assert set(seen[0]) == {"sizes", "init", "activation", "dropout", "device"}


@pytest.mark.parametrize("blob", [
    pack({"w": {"dtype": "F32", "shape": [2], "data_offsets": 8}}, b"\0" * 8),
    pack(b"[" * 100_000 + b"]" * 100_000),
    pack({"__metadata__": {"format": "tensornet", "format_version": "1",
                           "structure": "[" * 5000 + "]" * 5000}}),
], ids=["int-offsets", "deep-header", "deep-structure"])
def test_eval_of_a_hostile_file_is_one_line(tmp_path, capsys, blob):
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(blob)
    assert main(["eval", "--checkpoint", str(path)]) == 1
    _one_line_error(capsys, str(path))


# ---------------------------------------------------------------------- train
def test_out_is_checked_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = main(["train", "--dataset", "blobs", "--epochs", "2", "--out",
                 str(tmp_path / "file" / "run")])
    captured = capsys.readouterr()
    assert code == 2 and "Epoch" not in captured.out
    assert "--out" in captured.err and len(captured.err.strip().splitlines()) == 1
    # the check leaves no empty folder behind (should the run then fail for another reason)
    _check_out(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name", ["history.json", "model.safetensors", "curves.png"])
def test_an_output_name_taken_by_a_folder_is_found_before_training(tmp_path, capsys, name):
    """It was found when saving, after the whole training (and, for curves.png, after
    history.json and model.safetensors were written)."""
    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    code = main(["train", "--dataset", "blobs", "--epochs", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "Epoch" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert f"--out {out}: {out / name} is not a regular file" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_a_val_split_that_empties_the_validation_set_is_a_usage_error(tmp_path, capsys):
    """3000 blobs at 0.0001: 0 validation samples gave 'DataLoader: the dataset is empty'
    (exit 1, no option named)."""
    code = main(["train", "--dataset", "blobs", "--val-split", "0.0001", "--out",
                 str(tmp_path / "run")])
    assert code == 2
    _one_line_error(capsys, "--val-split 0.0001: leaves 3000 training and 0 validation "
                            "samples of the 3000")
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_is_an_error(tmp_path, capsys):
    missing = str(tmp_path / "no-such-folder")
    assert main(["train", "--data-dir", missing, "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, f"--data-dir {missing}: no such folder")
    ckpt = tmp_path / "c.safetensors"
    tn.save({"model": {}}, ckpt)
    assert main(["eval", "--checkpoint", str(ckpt), "--data-dir", missing]) == 2
    _one_line_error(capsys, "no such folder")


def test_a_data_dir_that_is_a_file_is_called_one(tmp_path, capsys):
    """It was 'no such folder' for a path that exists."""
    a_file = tmp_path / "train-images-idx3-ubyte.gz"
    a_file.write_bytes(b"")
    assert main(["train", "--data-dir", str(a_file), "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, f"--data-dir {a_file}: a file, not a folder")


def test_a_diverging_run_retires_the_earlier_model_and_says_why(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "blobs", "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "curves.png").is_file()
    earlier = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(DIVERGE + ["--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = _one_line_error_text(captured.err)
    assert "training diverged: TerminateOnNaN: epoch 1, step" in err
    assert "model.safetensors -> model.previous.safetensors" in err
    assert not (out / "model.safetensors").exists() and not (out / "curves.png").exists()
    assert (out / "model.previous.safetensors").read_bytes() == earlier
    assert (out / "curves.previous.png").is_file()
    assert json.loads((out / "history.json").read_text())["stop_reason"].startswith(
        "TerminateOnNaN")
    assert main(["eval", "--checkpoint", str(out / "model.safetensors")]) == 1
    _one_line_error(capsys, "cannot read")


def _one_line_error_text(err):
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("where", ["test-evaluation", "plot"])
def test_an_interrupt_after_training_keeps_the_earlier_outputs(tmp_path, capsys, monkeypatch,
                                                               where):
    """Ctrl-C after training: exit 130, the earlier run's files exactly as they were, no
    partial file. It used to leave this run's history.json beside the earlier model (an
    interrupt during the test-set evaluation) or a partial curves.png (during the plot)."""
    out = tmp_path / "run"
    argv = ["train", "--dataset", "blobs", "--epochs", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt(*args, **kwargs):
        if where == "plot":  # History.plot(self, path_or_file, ...)
            target = args[1]
            (target.write if hasattr(target, "write") else target.write_bytes)(b"\x89PNG half")
        raise KeyboardInterrupt

    if where == "plot":
        pytest.importorskip("matplotlib")
        monkeypatch.setattr(tn.History, "plot", interrupt)
    else:
        monkeypatch.setattr(tn, "evaluate", interrupt)
    assert main(argv[:4] + ["3"] + argv[5:]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_numpy_warnings_never_reach_the_user(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(DIVERGE + ["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert [str(w.message) for w in caught] == []
    assert "Warning" not in err and ".py:" not in err and "diverged" in err


def test_other_warnings_are_one_line_without_paths(tmp_path, capsys, monkeypatch):
    original = tn.data.DataLoader.__init__

    def warn_then_init(self, *args, **kwargs):
        warnings.warn("something to know", RuntimeWarning)
        original(self, *args, **kwargs)

    monkeypatch.setattr(tn.data.DataLoader, "__init__", warn_then_init)
    assert main(["train", "--dataset", "blobs", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "tensornet train: warning: something to know" in err and ".py" not in err


def test_a_nonfinite_error_also_retires_earlier_outputs(tmp_path, capsys, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"an earlier run's")
    (tmp_path / "history.json").write_text("{}")

    def diverge(*args, **kwargs):
        raise tn.nn.NonFiniteError("CrossEntropyLoss: the loss is nan")

    monkeypatch.setattr(tn, "fit", diverge)
    assert main(["train", "--dataset", "blobs", "--out", str(tmp_path), "--quiet"]) == 1
    _one_line_error(capsys, "the loss is nan", "model.safetensors -> model.previous.safetensors",
                    "history.json -> history.previous.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.previous.json",
                                                          "model.previous.safetensors"]


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`tensornet info | head -1`: the pipe closes under the CLI; it ends with 141 (as a
    shell reports SIGPIPE) and prints no 'error: [Errno 32] Broken pipe'."""
    import subprocess
    import sys
    done = subprocess.run(f"'{sys.executable}' -m tensornet info | head -c 1 >/dev/null; "
                          f"echo ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, timeout=60)
    assert "Broken pipe" not in done.stderr, done.stderr
    assert done.stdout.strip() in ("0", "141"), done.stdout
