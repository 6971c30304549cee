"""fit / evaluate / predict, History, callbacks."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import asnumpy
from tensornet.callbacks import EarlyStopping, ModelCheckpoint, TerminateOnNaN
from tensornet.data import ArrayDataset, DataLoader
from tensornet.nn import NonFiniteError


def _spirals(device="cpu", n=1200, seed=0, batch_size=32):
    x, y = tn.data.toy_spirals(n=n, seed=seed)
    return DataLoader(ArrayDataset(x, y), batch_size, shuffle=True, seed=seed, device=device)


def _setup(sizes=(2, 32, 32, 3), lr=0.02, device="cpu", seed=0):
    tn.manual_seed(seed)
    model = tn.models.mlp(sizes, device=device)
    return model, tn.nn.CrossEntropyLoss(), tn.optim.Adam(model.parameters(), lr=lr)


# ---------------------------------------------------------------------- learning
def test_mlp_learns_spirals_a_linear_model_cannot():
    model, loss_fn, opt = _setup()
    history = tn.fit(model, loss_fn, opt, _spirals(), _spirals(n=600, seed=1), epochs=15,
                     verbose=0)
    assert history["train_acc"][-1] >= 0.95 and history["val_acc"][-1] >= 0.95
    assert history["train_loss"][-1] < history["train_loss"][0] / 5
    linear, loss_fn, opt = _setup(sizes=(2, 3))
    history = tn.fit(linear, loss_fn, opt, _spirals(), _spirals(n=600, seed=1), epochs=15,
                     verbose=0)
    assert history["val_acc"][-1] < 0.7


def test_mlp_learns_blobs(device):
    x, y = tn.data.toy_blobs(n=400, seed=0)
    xt, yt = tn.data.toy_blobs(n=200, seed=1)
    model, loss_fn, opt = _setup(sizes=(2, 16, 4), lr=0.05, device=device)
    history = tn.fit(model, loss_fn, opt, DataLoader(ArrayDataset(x, y), 32, shuffle=True,
                                                     device=device), epochs=5, verbose=0)
    test = tn.evaluate(model, loss_fn, DataLoader(ArrayDataset(xt, yt), 64, device=device))
    assert history["train_acc"][-1] >= 0.95 and test["acc"] >= 0.95


# ---------------------------------------------------------------------- metrics
def test_evaluate_matches_a_full_batch_reference(device):
    model, loss_fn, _ = _setup(device=device)
    x, y = tn.data.toy_spirals(n=103, seed=4)
    result = tn.evaluate(model, loss_fn, DataLoader(ArrayDataset(x, y), 10, device=device))
    logits = asnumpy(model(tn.to_device(x, device))).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert result["samples"] == 103
    assert result["loss"] == pytest.approx(-log_probs[np.arange(103), y].mean(), rel=1e-5)
    assert result["acc"] == pytest.approx((logits.argmax(1) == y).mean())
    assert tn.evaluate(model, DataLoader(ArrayDataset(x, y), 10, device=device))["loss"] is None
    out = tn.predict(model, x, batch_size=40)
    np.testing.assert_allclose(asnumpy(out), logits, rtol=1e-5, atol=1e-6)


def test_history_table_and_lr_schedule(capsys):
    model, loss_fn, opt = _setup()
    schedule = tn.optim.StepLR(opt, step_size=1, gamma=0.5)
    history = tn.fit(model, loss_fn, opt, _spirals(n=300), _spirals(n=90, seed=1), epochs=3,
                     scheduler=schedule, verbose=1)
    assert history.epoch == [1, 2, 3]
    assert history["lr"] == pytest.approx([0.02, 0.01, 0.005])
    for key in tn.train.HISTORY_KEYS:
        assert len(history[key]) == 3 and all(v is not None for v in history[key])
    assert all(v > 0 for v in history["samples_per_s"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Epoch", "Train", "loss", "Valid", "loss", "Train", "acc",
                                "Valid", "acc", "Time"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert lines[3].split()[1] == f"{history['train_loss'][2]:.4f}"
    tn.fit(model, loss_fn, opt, _spirals(n=300), epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_regression_targets_have_no_accuracy(capsys):
    tn.manual_seed(0)
    x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    model = tn.models.autoencoder(sizes=(8, 4, 2))
    history = tn.fit(model, tn.nn.MSELoss(), tn.optim.Adam(model.parameters(), lr=1e-2),
                     DataLoader(ArrayDataset(x), 16), epochs=2, verbose=1)
    assert history["train_acc"] == [None, None] and history["val_loss"] == [None, None]
    assert capsys.readouterr().out.splitlines()[1].split()[2:5] == ["-", "-", "-"]


def test_plot_writes_png_or_explains(tmp_path, monkeypatch):
    model, loss_fn, opt = _setup()
    history = tn.fit(model, loss_fn, opt, _spirals(n=200), _spirals(n=60), epochs=2, verbose=0)
    history.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'tensornet\[plot\]'"):
        history.plot(tmp_path / "again.png")


# ---------------------------------------------------------------------- callbacks
def _nan_at(index, n=60):
    x, y = tn.data.toy_blobs(n=n, seed=0)
    x[index] = np.nan
    return DataLoader(ArrayDataset(x, y), 10)          # no shuffle: sample 37 is in step 4


def test_nan_loss_names_epoch_and_step():
    model, loss_fn, opt = _setup(sizes=(2, 4))
    with pytest.raises(NonFiniteError, match="epoch 1, step 4"):
        tn.fit(model, loss_fn, opt, _nan_at(37), epochs=2, verbose=0)
    model, loss_fn, opt = _setup(sizes=(2, 4))
    history = tn.fit(model, loss_fn, opt, _nan_at(37), epochs=2, verbose=0,
                     callbacks=[TerminateOnNaN()])
    assert "epoch 1, step 4" in history.stop_reason
    # The epoch it stopped in is kept, with the figures of steps 1-3 (a plottable history).
    assert history.epoch == [1] and np.isfinite(history["train_loss"][0])
    # With the loss's own check off (as on a GPU) the callback still catches it.
    model, _, opt = _setup(sizes=(2, 4))
    history = tn.fit(model, tn.nn.CrossEntropyLoss(check=False), opt, _nan_at(37), epochs=2,
                     verbose=0, callbacks=[TerminateOnNaN()])
    assert "epoch 1, step 4" in history.stop_reason


def test_terminate_on_nan_epoch_end_scan():
    """The GPU path: per-step losses read once at the epoch's end."""
    class Run:
        epoch, stop_training, reason = 3, False, None
        step_losses = np.array([0.5, 0.4, np.inf, np.nan])

        def stop(self, reason):
            self.stop_training, self.reason = True, reason

    run = Run()
    TerminateOnNaN().on_epoch_end(run, {})
    assert run.stop_training and "epoch 3, step 3" in run.reason


def test_early_stopping_restores_best_weights():
    model, loss_fn, opt = _setup(sizes=(2, 3))
    val_losses = iter([1.0, 0.5, 0.6, 0.55, 0.7, 0.1])
    seen = {}

    class FakeValidation(tn.callbacks.Callback):  # replaces val_loss, records the weights
        def on_epoch_end(self, run, logs):
            logs["val_loss"] = next(val_losses)
            seen[run.epoch] = asnumpy(run.model.state_dict()["1.weight"]).copy()

    stopper = EarlyStopping(patience=2)
    history = tn.fit(model, loss_fn, opt, _spirals(n=100), epochs=6, verbose=0,
                     callbacks=[FakeValidation(), stopper])
    assert history.epoch == [1, 2, 3, 4] and stopper.stopped_epoch == 4
    assert "best 0.5000 at epoch 2" in history.stop_reason
    np.testing.assert_array_equal(asnumpy(model.state_dict()["1.weight"]), seen[2])
    with pytest.raises(ValueError, match="pass val_loader="):
        tn.fit(model, loss_fn, opt, _spirals(n=100), epochs=1, verbose=0,
               callbacks=[EarlyStopping()])


def test_model_checkpoint_every_epoch_and_best_only(tmp_path):
    model, loss_fn, opt = _setup()
    every = ModelCheckpoint(tmp_path / "e{epoch:02d}.safetensors", config={"note": "x"})
    best = ModelCheckpoint(tmp_path / "best.safetensors", monitor="train_loss",
                           save_best_only=True)
    tn.fit(model, loss_fn, opt, _spirals(n=200), epochs=2, verbose=0, callbacks=[every, best])
    assert [p.rsplit("/", 1)[-1] for p in every.saved] == ["e01.safetensors", "e02.safetensors"]
    state = tn.load(tmp_path / "e02.safetensors")
    assert state["epoch"] == 2 and state["config"] == {"note": "x"}
    assert len(state["history"]["train_loss"]) == 2
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(state["model"][key], asnumpy(value))
    assert best.saved and (tmp_path / "best.safetensors").is_file()


# ---------------------------------------------------------------------- errors
def test_device_mismatch_and_bad_arguments():
    model, loss_fn, opt = _setup()
    with pytest.raises(tn.DeviceError, match="device='cpu'"):
        tn.fit(model, loss_fn, opt, _spirals(device="strict"), verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        tn.fit(model, loss_fn, opt, _spirals(), epochs=-1)
    with pytest.raises(TypeError, match="Callback"):
        tn.fit(model, loss_fn, opt, _spirals(), callbacks=[print])


def test_out_of_memory_suggests_a_smaller_batch():
    model, loss_fn, opt = _setup()

    def exhausted(x):
        raise MemoryError("cannot allocate 1.2 GiB")

    model.forward = exhausted
    with pytest.raises(MemoryError, match="fit, epoch 1: cannot allocate.*batch size below 32"):
        tn.fit(model, loss_fn, opt, _spirals(), verbose=0)
