"""fit / evaluate / train_step / callbacks under hostile or Keras-minded use: each misuse
fails at once with one error naming what was expected, never a deep traceback or a run
that silently trains nothing."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.data import ArrayDataset, DataLoader


def _data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def _setup(seed=0, lr=0.1):
    tn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return model, nn.CrossEntropyLoss(), tn.optim.SGD(model.parameters(), lr=lr)


def _loader(n=50, seed=0, batch_size=16):
    return DataLoader(ArrayDataset(*_data(n, seed)), batch_size)


# ---------------------------------------------------------------------- wrong objects
def test_a_class_or_none_for_loss_or_optimizer_is_named():
    model, loss_fn, opt = _setup()
    x, y = _data()
    with pytest.raises(TypeError, match="fit: loss_fn must be an instance, got the class "
                                        "CrossEntropyLoss"):
        tn.fit(model, nn.CrossEntropyLoss, opt, _loader(), verbose=0)
    with pytest.raises(TypeError, match="fit: loss_fn must be a loss instance"):
        tn.fit(model, None, opt, _loader(), verbose=0)
    with pytest.raises(TypeError, match="fit: optimizer must be an instance, got the class SGD"):
        tn.fit(model, loss_fn, tn.optim.SGD, _loader(), verbose=0)
    with pytest.raises(TypeError, match="fit: optimizer must be an optimizer instance"):
        tn.fit(model, loss_fn, None, _loader(), verbose=0)
    with pytest.raises(TypeError, match="fit: model must be a tensornet module"):
        tn.fit(lambda v: v, loss_fn, opt, _loader(), verbose=0)
    with pytest.raises(TypeError, match="evaluate: loss_fn must be an instance"):
        tn.evaluate(model, nn.CrossEntropyLoss, _loader())
    with pytest.raises(TypeError, match="train_step: loss_fn must be an instance"):
        tn.train_step(model, nn.CrossEntropyLoss, opt, x, y)


def test_an_optimizer_over_another_model_is_refused():
    model, loss_fn, _ = _setup()
    other, _, other_opt = _setup(seed=1)
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="optimizer holds none of the model's 4 trainable"):
        tn.fit(model, loss_fn, other_opt, _loader(), verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)
    # An optimizer over part of the model (fine-tuning the head) is fine.
    head = tn.optim.SGD(model[2].parameters(), lr=0.1)
    tn.fit(model, loss_fn, head, _loader(), verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, before[0])


def test_schedules_of_another_optimizer_or_passed_twice_are_refused():
    model, loss_fn, opt = _setup(lr=1.0)
    _, _, other_opt = _setup(seed=1)
    with pytest.raises(ValueError, match="steps another optimizer"):
        tn.fit(model, loss_fn, opt, _loader(), scheduler=tn.optim.StepLR(other_opt, 1, 0.5),
               verbose=0)
    with pytest.raises(TypeError, match="scheduler must be an instance, got the class StepLR"):
        tn.fit(model, loss_fn, opt, _loader(), scheduler=tn.optim.StepLR, verbose=0)
    sched = tn.optim.StepLR(opt, 1, 0.5)
    with pytest.raises(ValueError, match="passed twice"):
        tn.fit(model, loss_fn, opt, _loader(), epochs=2, scheduler=sched, verbose=0,
               callbacks=[tn.callbacks.LearningRateScheduler(sched)])
    assert opt.param_groups[0]["lr"] == 1.0


def test_callbacks_verbose_and_grad_hook_arguments():
    model, loss_fn, opt = _setup()
    assert len(tn.fit(model, loss_fn, opt, _loader(), callbacks=None, verbose=0)) == 1
    with pytest.raises(TypeError, match="got one TerminateOnNaN; pass callbacks=\\[...\\]"):
        tn.fit(model, loss_fn, opt, _loader(), callbacks=tn.TerminateOnNaN(), verbose=0)
    with pytest.raises(TypeError, match="got the class TerminateOnNaN"):
        tn.fit(model, loss_fn, opt, _loader(), callbacks=[tn.TerminateOnNaN], verbose=0)
    with pytest.raises(TypeError, match="verbose must be 0"):
        tn.fit(model, loss_fn, opt, _loader(), verbose="yes")
    with pytest.raises(TypeError, match="grad_hook must be a function"):
        tn.fit(model, loss_fn, opt, _loader(), grad_hook=3, verbose=0)


# ---------------------------------------------------------------------- loaders and batches
@pytest.mark.parametrize("batches, what", [
    ([(np.zeros((4, 4), np.float32), np.zeros(4, np.int64), None)], "a tuple of 3 items"),
    ([{"x": np.zeros((4, 4), np.float32), "y": np.zeros(4, np.int64)}],
     r"a dict with keys \['x', 'y'\]; .*yield \(batch\['x'\], batch\['y'\]\)"),
    ([np.zeros((2, 4), np.float32)], r"an array of shape \(2, 4\)"),
])
def test_batches_that_are_not_pairs_are_named(batches, what):
    model, loss_fn, opt = _setup()
    with pytest.raises(TypeError, match=f"fit: train_loader, epoch 1: batch 1 is {what}"):
        tn.fit(model, loss_fn, opt, batches, verbose=0)
    with pytest.raises(TypeError, match=f"evaluate: batch 1 is {what}"):
        tn.evaluate(model, loss_fn, batches)


def test_a_one_shot_iterator_for_several_epochs_is_refused_before_training():
    model, loss_fn, opt = _setup()
    before = model[0].weight.data.copy()
    with pytest.raises(TypeError, match="train_loader is a one-shot iterator .*for 3 epochs"):
        tn.fit(model, loss_fn, opt, iter(list(_loader())), epochs=3, verbose=0)
    with pytest.raises(TypeError, match="val_loader is a one-shot iterator"):
        tn.fit(model, loss_fn, opt, _loader(), (b for b in _loader()), epochs=2, verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, before)
    # One epoch over a generator is fine.
    assert len(tn.fit(model, loss_fn, opt, (b for b in _loader()), verbose=0)) == 1


# ---------------------------------------------------------------------- EarlyStopping
class _NaNFromEpoch2:
    """Two batches per epoch; from epoch 2 on the first batch's inputs are NaN."""

    def __init__(self):
        self.batches, self.epochs = list(_loader())[:2], 0

    def __len__(self):
        return 2

    def __iter__(self):
        self.epochs += 1
        for i, (xb, yb) in enumerate(self.batches):
            yield (np.full_like(xb, np.nan) if self.epochs >= 2 and i == 0 else xb), yb


def test_early_stopping_restores_after_a_nan_at_the_first_step_of_an_epoch():
    model, _, opt = _setup()
    loss_fn = nn.CrossEntropyLoss(check=False)  # the NaN reaches the update, as on a GPU
    seen = {}

    class Snapshot(tn.callbacks.Callback):
        def on_epoch_end(self, run, logs):
            seen[run.epoch] = [p.data.copy() for p in run.model.parameters()]

    stopper = tn.EarlyStopping(monitor="train_loss", patience=3)
    history = tn.fit(model, loss_fn, opt, _NaNFromEpoch2(), epochs=3, verbose=0,
                     callbacks=[tn.TerminateOnNaN(), Snapshot(), stopper])
    assert history.epoch == [1] and "epoch 2, step 1" in history.stop_reason
    for p, best in zip(model.parameters(), seen[1]):
        np.testing.assert_array_equal(p.data, best)


def test_early_stopping_keeps_the_last_epoch_when_it_is_the_best():
    model, loss_fn, opt = _setup(lr=0.05)
    stopper = tn.EarlyStopping(monitor="train_loss", patience=2)
    history = tn.fit(model, loss_fn, opt, _loader(), epochs=3, verbose=0, callbacks=[stopper])
    assert stopper.tracker.best_epoch == 3 and stopper.stopped_epoch is None
    assert len(history) == 3
    np.testing.assert_array_equal(model[0].weight.data, stopper.best_weights["0.weight"])


@pytest.mark.parametrize("kwargs, match", [
    ({"min_delta": -0.1}, "min_delta is the amount"), ({"min_delta": "0.1"}, "min_delta"),
    ({"min_delta": float("nan")}, "min_delta"), ({"patience": "3"}, "patience must be an"),
    ({"patience": 2.5}, "patience must be an integer"), ({"patience": -1}, "patience"),
])
def test_early_stopping_refuses_bad_patience_and_min_delta(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tn.EarlyStopping(**kwargs)


def test_a_keras_metric_name_is_translated_not_blamed_on_a_missing_val_loader():
    model, loss_fn, opt = _setup()
    with pytest.raises(ValueError, match="no 'val_accuracy' \\(fit calls it 'val_acc'\\)"):
        tn.fit(model, loss_fn, opt, _loader(), _loader(20, 1), verbose=0,
               callbacks=[tn.EarlyStopping(monitor="val_accuracy")])
    with pytest.raises(ValueError, match="no 'val_top5'; available"):
        tn.fit(model, loss_fn, opt, _loader(), _loader(20, 1), verbose=0,
               callbacks=[tn.EarlyStopping(monitor="val_top5")])


# ---------------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_path_names_logged_figures_as_in_keras(tmp_path):
    model, loss_fn, opt = _setup()
    ckpt = tn.ModelCheckpoint(tmp_path / "e{epoch:02d}-{val_loss:.3f}.safetensors")
    history = tn.fit(model, loss_fn, opt, _loader(), _loader(20, 1), epochs=2, verbose=0,
                     callbacks=[ckpt])
    names = [f"e{e:02d}-{v:.3f}.safetensors" for e, v in zip(history.epoch,
                                                                history["val_loss"])]
    assert [p.rsplit("/", 1)[-1] for p in ckpt.saved] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_model_checkpoint_path_templates_that_cannot_be_filled(tmp_path):
    model, loss_fn, opt = _setup()
    before = model[0].weight.data.copy()
    with pytest.raises(ValueError, match="names 'val_loss', which needs fit\\(..., val_loader"):
        tn.fit(model, loss_fn, opt, _loader(), verbose=0,
               callbacks=[tn.ModelCheckpoint(tmp_path / "{val_loss:.2f}.safetensors")])
    np.testing.assert_array_equal(model[0].weight.data, before)  # refused before training
    with pytest.raises(ValueError, match="names 'top5', which fit did not log at epoch 1"):
        tn.fit(model, loss_fn, opt, _loader(), verbose=0,
               callbacks=[tn.ModelCheckpoint(tmp_path / "{top5}.safetensors")])
    with pytest.raises(ValueError, match="cannot fill the path .* at epoch 1"):
        tn.fit(model, loss_fn, opt, _loader(), verbose=0,
               callbacks=[tn.ModelCheckpoint(tmp_path / "{train_loss:d}.safetensors")])
    with pytest.raises(ValueError, match="not a valid template"):
        tn.ModelCheckpoint(tmp_path / "e{epoch.safetensors")
    with pytest.raises(ValueError, match="positional field"):
        tn.ModelCheckpoint(tmp_path / "e{}.safetensors")
    assert list(tmp_path.iterdir()) == []
    literal = tn.ModelCheckpoint(tmp_path / "{{run}}-{epoch}.safetensors")
    tn.fit(model, loss_fn, opt, _loader(), verbose=0, callbacks=[literal])
    assert [p.name for p in tmp_path.iterdir()] == ["{run}-1.safetensors"]


def test_a_nan_validation_loss_names_the_epoch_and_validation():
    model, loss_fn, opt = _setup()
    xv, yv = _data(20, 1)
    xv[3] = np.nan
    with pytest.raises(tn.nn.NonFiniteError, match="^epoch 2, validation: CrossEntropyLoss: "
                                                   "the loss is nan"):
        tn.fit(model, loss_fn, opt, _loader(), _NaNValidationFrom(2, _loader(20, 1), xv, yv),
               epochs=3, verbose=0)


class _NaNValidationFrom:
    """The validation batches, with NaN inputs from the ``epoch``-th pass on."""

    def __init__(self, epoch, clean, xv, yv):
        self.epoch, self.clean, self.bad, self.passes = epoch, clean, [(xv, yv)], 0

    def __iter__(self):
        self.passes += 1
        return iter(self.bad if self.passes >= self.epoch else self.clean)


def test_no_table_for_a_run_with_no_epoch_to_train(capsys):
    model, loss_fn, opt = _setup()
    assert len(tn.fit(model, loss_fn, opt, _loader(), epochs=0)) == 0
    assert len(tn.fit(model, loss_fn, opt, _loader(), epochs=3, initial_epoch=3)) == 0
    assert capsys.readouterr().out == ""
    tn.fit(model, loss_fn, opt, _loader(), epochs=1)
    assert len(capsys.readouterr().out.splitlines()) == 2  # header and one row


# ---------------------------------------------------------------------- accuracy
def _hits(model, x, y, ignore):
    with tn.no_grad():
        pred = np.asarray(model.eval()(x)).argmax(axis=1)
    keep = y != ignore
    return (pred[keep] == y[keep]).mean()


@pytest.mark.parametrize("ignore", [-100, 1])
def test_accuracy_leaves_out_the_labels_the_loss_ignores(ignore):
    """Labels equal to the loss's ignore_index (padding, or a class the loss skips) are
    neither hits nor misses: they counted as misses (half the labels -100 halved the
    accuracy)."""
    model, _, _ = _setup()
    x, y = _data(80)
    if ignore == -100:
        y = y.copy()
        y[::2] = -100
    loss = nn.CrossEntropyLoss(ignore_index=ignore)
    got = tn.evaluate(model, loss, DataLoader(ArrayDataset(x, y), 16))
    assert got["acc"] == pytest.approx(_hits(model, x, y, ignore), rel=1e-12)


def test_fit_train_accuracy_leaves_out_ignored_labels():
    model, loss, opt = _setup(lr=0.0)  # lr 0: the model does not move during the epoch
    x, y = _data(64)
    y = y.copy()
    y[::3] = -100
    history = tn.fit(model, loss, opt, DataLoader(ArrayDataset(x, y), 16), verbose=0)
    model.train()
    assert history.history["train_acc"][-1] == pytest.approx(_hits(model, x, y, -100),
                                                             rel=1e-12)


def test_accuracy_of_per_position_labels_counts_every_position():
    """(N, C, L) scores with (N, L) labels (CrossEntropyLoss's per-position layout): the
    accuracy is over the positions, ignored ones left out."""
    rng = np.random.default_rng(0)
    out = rng.standard_normal((6, 3, 5)).astype(np.float32)
    y = rng.integers(0, 3, (6, 5))
    y[0] = -100

    class Scores(nn.Module):
        def forward(self, x):
            return x

        def backward(self, grad_output):
            return grad_output

    got = tn.evaluate(Scores(), nn.CrossEntropyLoss(), [(out, y)])
    keep = y != -100
    assert got["acc"] == pytest.approx((out.argmax(axis=1)[keep] == y[keep]).mean())


def test_distributed_accuracy_sums_the_labels_each_rank_counted():
    """Over ranks the accuracy is all hits over all counted labels, the same on every
    rank, also on a rank whose labels were all ignored (its own accuracy is None)."""
    from tensornet.distributed.training import DistributedFit

    class TwoRanks:  # adds a second rank's figures to this one's
        def __init__(self, other):
            self.other = np.asarray(other, dtype=np.float64)

        def sum(self, values):
            return np.asarray(values, dtype=np.float64) + self.other

    fit = object.__new__(DistributedFit)
    fit.comm = TwoRanks([0.0, 0.0, 10.0, 0.0])  # the other rank: 10 samples, none counted
    _, acc, samples, _ = fit.summarize(1.0, 0.75, 10, counted=4)
    assert (acc, samples) == (0.75, 20)
    fit.comm = TwoRanks([10.0, 3.0, 10.0, 4.0])  # seen from the rank that counted none
    assert fit.summarize(0.0, None, 10, counted=0)[1] == 0.75
    fit.comm = TwoRanks([5.0, 0.0, 10.0, 10.0])  # no accuracy (regression): stays None
    assert fit.summarize(0.5, None, 10)[1] is None
