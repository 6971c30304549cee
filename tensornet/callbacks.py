"""Callbacks for ``tensornet.fit``: early stopping, NaN guard, checkpoints, LR schedules.

A callback overrides any of the hooks below; each receives the ``TrainingRun`` (its
``model``, ``optimizer``, ``history``, ``epoch``, ``backend``...). ``run.stop(reason)``
ends training after the current step or epoch. Callbacks run in list order; ``fit``'s
``scheduler=`` runs first, so a checkpoint saved at an epoch's end holds the next lr.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import string

import numpy as np

from tensornet.backends import SyncPolicy, asnumpy


class Callback:
    def on_train_begin(self, run) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, run) -> None:
        """Before each epoch's first step (``run.epoch`` is 1-based)."""

    def on_batch_end(self, run, step: int, loss) -> None:
        """After each optimisation step; ``loss`` is a 0-d device array. Reading it
        (``float(loss)``) syncs with the GPU, so only do so when ``run.backend.sync_policy``
        is ``SyncPolicy.EVERY_STEP``."""

    def on_epoch_end(self, run, logs: dict) -> None:
        """After validation; ``logs`` holds this epoch's train_loss, val_loss, ... ."""

    def on_train_end(self, run) -> None:
        """After the last epoch (also after an early stop)."""


def _mode_for(monitor: str, mode: str) -> str:
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


# Keras' names of the figures fit logs under other names.
_KERAS_NAMES = {"loss": "train_loss", "accuracy": "train_acc", "acc": "train_acc",
                "val_accuracy": "val_acc", "learning_rate": "lr"}


def _monitored(name: str, monitor: str, logs: dict) -> float:
    value = logs.get(monitor)
    if value is None:
        have = ", ".join(k for k, v in logs.items() if v is not None)
        if monitor in _KERAS_NAMES:
            hint = f" (fit calls it {_KERAS_NAMES[monitor]!r})"
        elif monitor.startswith("val_") and logs.get("val_loss") is None:
            hint = " (pass val_loader= to fit)"
        else:
            hint = ""
        raise ValueError(f"{name}: fit logs no {monitor!r}{hint}; available: {have}")
    return float(value)


class _Tracker:
    """Best value of a monitored quantity."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        self.monitor, self.mode, self.min_delta = monitor, _mode_for(monitor, mode), min_delta
        self.reset()

    def reset(self) -> None:
        self.best, self.best_epoch = None, None

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` (default the validation loss) has not improved by more than
    ``min_delta`` (an amount, >= 0, in either mode) for ``patience`` epochs; with
    ``restore_best_weights`` the model ends with the weights of its best epoch (kept as a
    host copy), also when training stops mid-epoch or ends without an early stop."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True):
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) \
                or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0, got "
                             f"{patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta is the amount by which {monitor!r} "
                             f"must improve (a finite number >= 0, in either mode), got "
                             f"{min_delta!r}")
        self.tracker = _Tracker(monitor, mode, float(min_delta))
        self.patience = int(patience)
        self.restore_best_weights = restore_best_weights
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def on_train_begin(self, run) -> None:
        self.tracker.reset()
        self.best_weights, self.wait, self.stopped_epoch = None, 0, None

    def on_epoch_end(self, run, logs) -> None:
        value = _monitored("EarlyStopping", self.tracker.monitor, logs)
        if self.tracker.improved(value):
            self.tracker.best, self.tracker.best_epoch, self.wait = value, run.epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: np.array(asnumpy(v), copy=True)
                                     for k, v in run.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = run.epoch
            run.stop(f"EarlyStopping: {self.tracker.monitor} has not improved for "
                     f"{self.wait} epochs (best {self.tracker.best:.4f} at epoch "
                     f"{self.tracker.best_epoch})")

    def on_train_end(self, run) -> None:
        # The weights are the best ones only when the best epoch is the last to finish and
        # no step of a later epoch ran (a mid-epoch stop records no epoch at its first step).
        last = run.history.epoch[-1] if run.history.epoch else None
        at_best = last == run.epoch == self.tracker.best_epoch
        if self.best_weights is not None and not at_best:
            run.model.load_state_dict(self.best_weights)
            run.log(f"EarlyStopping: restored the weights of epoch {self.tracker.best_epoch} "
                    f"({self.tracker.monitor} {self.tracker.best:.4f})")


class TerminateOnNaN(Callback):
    """Stop training as soon as the training loss is NaN or infinite, naming the epoch and
    step. On CPU every step is checked; on a GPU (where reading the loss would stall the
    device) the epoch's per-step losses are checked once at its end."""

    stops_on_nonfinite = True

    def on_batch_end(self, run, step, loss) -> None:
        if run.backend.sync_policy is SyncPolicy.EVERY_STEP:
            value = float(loss)
            if not math.isfinite(value):
                run.stop(self.message(run.epoch, step, value))

    def on_epoch_end(self, run, logs) -> None:
        losses = run.step_losses
        if losses is None or np.all(np.isfinite(losses)):
            return
        step = int(np.flatnonzero(~np.isfinite(losses))[0]) + 1
        run.stop(self.message(run.epoch, step, float(losses[step - 1])))

    @staticmethod
    def message(epoch: int, step: int, value: float) -> str:
        return (f"TerminateOnNaN: the training loss is {value} at epoch {epoch}, step {step}; "
                f"training stopped. Lower the learning rate, check the inputs for NaN/Inf, or "
                f"clip gradients (tn.optim.clip_grad_norm_)")


class ModelCheckpoint(Callback):
    """Save a resumable checkpoint (``tn.save_checkpoint``) at the end of each epoch.
    Under ``tensornet.distributed`` rank 0 writes it, with every rank's random streams.

    ``path`` may name ``{epoch}`` and, as in Keras, any figure in the epoch's ``logs``
    (e.g. ``"ckpt/e{epoch:03d}-{val_loss:.4f}.safetensors"``); a literal brace is ``{{``.
    With ``save_best_only`` only epochs that improve ``monitor`` are saved. ``config``
    (a JSON-friendly dict) is stored so the model can be rebuilt from the file alone.
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", config: dict | None = None):
        self.path = os.fspath(path)
        self.fields = _template_fields(self.path)
        self.tracker = _Tracker(monitor, mode)
        self.save_best_only = save_best_only
        self.config = config
        self.saved: list[str] = []

    def on_train_begin(self, run) -> None:
        self.tracker.reset()
        needs_val = sorted(f for f in self.fields if f.startswith("val_"))
        if needs_val and run.val_loader is None:
            raise ValueError(f"ModelCheckpoint: the path {self.path!r} names {needs_val[0]!r}, "
                             f"which needs fit(..., val_loader=...)")

    def _format(self, run, logs) -> str:
        values = {**logs, "epoch": run.epoch}
        missing = sorted(f for f in self.fields if values.get(f) is None)
        if missing:
            have = ", ".join(k for k, v in values.items() if v is not None)
            raise ValueError(f"ModelCheckpoint: the path {self.path!r} names {missing[0]!r}, "
                             f"which fit did not log at epoch {run.epoch}; available: {have}")
        try:
            return self.path.format(**values)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot fill the path {self.path!r} at epoch "
                             f"{run.epoch}: {exc}") from exc

    def on_epoch_end(self, run, logs) -> None:
        from tensornet.io import save_checkpoint

        if self.save_best_only:
            value = _monitored("ModelCheckpoint", self.tracker.monitor, logs)
            if not self.tracker.improved(value):
                return
            path = self._format(run, logs)
            self.tracker.best, self.tracker.best_epoch = value, run.epoch
        else:
            path = self._format(run, logs)
        # distributed: rank 0 alone runs this; fit gathered every rank's random streams
        save_checkpoint(path, run.model, run.optimizer, scheduler=run.scheduler,
                        loader=run.train_loader, epoch=run.epoch, config=self.config,
                        history=run.history.to_dict(),
                        rng_per_rank=getattr(run, "rng_per_rank", None))
        self.saved.append(path)


def _template_fields(path: str) -> set:
    """The names a ModelCheckpoint path template fills (``{epoch:03d}`` -> ``epoch``)."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(path) if f is not None}
    except ValueError as exc:
        raise ValueError(f"ModelCheckpoint: the path {path!r} is not a valid template ({exc}); "
                         f"write a literal brace as {{{{ or }}}}") from exc
    names = {re.split(r"[.\[]", f, maxsplit=1)[0] for f in fields}
    if any(not n or n.isdigit() for n in names):
        raise ValueError(f"ModelCheckpoint: the path {path!r} has a positional field; name "
                         f"the figure, e.g. {{epoch:03d}} or {{val_loss:.4f}}")
    return names


class LearningRateScheduler(Callback):
    """Step an LR schedule (``tn.optim.StepLR`` ...) once at the end of every epoch; a
    per-batch one (``per_batch`` true: CyclicLR, OneCycleLR, a SequentialLR holding one)
    after every step instead; one that needs the monitored value (``needs_metric = True``:
    ReduceLROnPlateau) gets this epoch's ``monitor`` (``val_loss`` by default;
    ``train_loss`` without validation)."""

    def __init__(self, scheduler, monitor: str = "val_loss"):
        if not hasattr(scheduler, "step"):
            raise TypeError(f"LearningRateScheduler expected a schedule with step(), got "
                            f"{type(scheduler).__name__}")
        self.scheduler = scheduler
        self.monitor = monitor

    def on_train_begin(self, run) -> None:
        added = getattr(self.scheduler, "_added_base_lrs", None)
        if added is not None:
            added()  # a group added that cannot join: refused now, not after an epoch
        if getattr(self.scheduler, "needs_metric", False) and self.monitor.startswith("val_") \
                and run.val_loader is None:
            raise ValueError(f"{type(self.scheduler).__name__} steps on {self.monitor!r}, "
                             f"which needs fit(..., val_loader=...); or pass "
                             f"callbacks=[tn.callbacks.LearningRateScheduler(scheduler, "
                             f"monitor='train_loss')]")

    def on_batch_end(self, run, step, loss) -> None:
        if getattr(self.scheduler, "per_batch", False):
            self.scheduler.step()

    def on_epoch_end(self, run, logs) -> None:
        if getattr(self.scheduler, "needs_metric", False):
            self.scheduler.step(_monitored(type(self.scheduler).__name__, self.monitor, logs))
        elif not getattr(self.scheduler, "per_batch", False):
            self.scheduler.step()
