"""The training step and loop: ``train_step`` and ``fit`` (the per-epoch ``History`` that
``fit`` returns is in ``history.py``; ``evaluate`` and ``predict`` in ``evaluation.py``).

One training step is ``train_step``: zero_grad, forward, loss, backward, an optional
gradient hook (clipping, an all-reduce across processes, a regularizer), the optimizer
update. ``fit`` runs it (eagerly, or replayed as a CUDA graph through the backend's
``graphed`` wrapper). Loss and accuracy stay on the device during an epoch (each step
appends two 0-d arrays) and are read back once at its end, so a GPU is never stalled by a
per-step host sync.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from tensornet import regularizers
from tensornet import train_checks as checks
from tensornet.backends import SyncPolicy
from tensornet.callbacks import LearningRateScheduler
from tensornet.history import HISTORY_KEYS, History  # noqa: F401  (re-exported)
from tensornet.nn.loss import NonFiniteError
from tensornet.optim.clip import ClipGradNorm

# evaluate and predict are re-exported (tn.train.evaluate)
from .evaluation import (_correct_count, _distributed, _ignore_index,  # noqa: F401
                         _model_backend, _summarize, evaluate, predict)


class TrainingRun:
    """What callbacks see: the objects being trained and the state of the run."""

    def __init__(self, model, loss_fn, optimizer, train_loader, val_loader, scheduler,
                 backend, verbose):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.train_loader, self.val_loader, self.scheduler = train_loader, val_loader, scheduler
        self.backend, self.verbose = backend, verbose
        self.history = History()
        self.epoch = 0
        self.step_losses = None  # host array of this epoch's per-step losses, at its end
        self.ignore_index = None  # the loss's ignore_index: such labels are left out of acc
        self.stop_training = False
        self.dist = None  # data-parallel hooks (issue 18), set by fit
        self.rng_per_rank = None  # with dist: every rank's RNG state at this epoch's end

    def stop(self, reason: str) -> None:
        """End training after the current step (or epoch) and say why."""
        self.stop_training = True
        self.history.stop_reason = reason
        self.log(reason)

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)


# ---------------------------------------------------------------------- steps
def train_step(model, loss_fn, optimizer, x, y, grad_hook=None):
    """One training step; returns ``(loss, output)`` as device arrays.

    Drops the old gradients, runs forward, the loss and backward (``input_grad=False``:
    the gradient with respect to the data is never used), then ``grad_hook(model)`` if
    given, between backward and the update: it may change the gradients in place (clip
    them, average them across processes) and may return a loss term whose gradient it
    added (a regularizer's penalty), which is added to the returned loss. Then
    ``optimizer.step()``.
    """
    if isinstance(loss_fn, type) or isinstance(optimizer, type):
        checks.check_parts("train_step", model, loss_fn, optimizer)
    model.zero_grad(set_to_none=True)
    output = model(x)
    loss = loss_fn(output, y)
    model.backward(loss_fn.backward(), input_grad=False)
    if grad_hook is not None:
        extra = grad_hook(model)
        if extra is not None:
            loss = loss + extra
    optimizer.step()
    return loss, output


def make_train_step(model, loss_fn, optimizer, *, grad_hook=None, cuda_graph: bool = False):
    """``step(x, y) -> (loss, output)``: ``train_step`` with these objects bound.

    With ``cuda_graph=True`` (a model on a CUDA device) the step is replayed as one
    captured CUDA graph per call (``backend.graphed``), which refuses, naming the part,
    an optimizer, layer or hook it cannot capture.
    """
    def step(x, y):
        return train_step(model, loss_fn, optimizer, x, y, grad_hook)

    reason = getattr(grad_hook, "graph_unsafe_reason", None)
    if grad_hook is not None and reason is None and not getattr(grad_hook, "graph_safe", False):
        reason = "its gradient hook is not marked graph_safe (it may read values to the host)"
    step.graph_unsafe_reason = reason
    if cuda_graph:
        return _model_backend(model).graphed(step, model, optimizer)
    return step


def _compose_hooks(hooks):
    """One gradient hook calling ``hooks`` in order, summing what they return."""
    hooks = [h for h in hooks if h is not None]
    if len(hooks) <= 1:
        return hooks[0] if hooks else None

    def hook(model):
        total = None
        for h in hooks:
            extra = h(model)
            if extra is not None:
                total = extra if total is None else total + extra
        return total

    hook.graph_safe = all(getattr(h, "graph_safe", False) for h in hooks)
    return hook


# ---------------------------------------------------------------------- fit
def fit(model, loss_fn, optimizer, train_loader, val_loader=None, epochs: int = 1,
        scheduler=None, callbacks=(), verbose: int = 1, initial_epoch: int = 0,
        cuda_graph: bool = False, clip_grad_norm: float | None = None,
        grad_hook=None) -> History:
    """Train ``model`` up to epoch ``epochs`` and return its History.

    Each epoch: one pass over ``train_loader`` (``train_step``: zero_grad, forward, loss,
    backward, gradient hooks, update), then ``evaluate`` on ``val_loader``;
    ``scheduler.step()`` once per epoch (after every step for CyclicLR and OneCycleLR;
    ReduceLROnPlateau is given ``val_loss``). The penalties of ``tn.regularizers`` attached
    to the model join the gradients (a hook before any other) and the reported training loss
    (the validation loss leaves them out). With ``verbose`` >= 1 it prints one table row per
    epoch and, on a terminal, a progress bar. ``epochs`` is the total, as in Keras: epochs
    are numbered from 1 and ``initial_epoch`` counts those already done (a resumed
    checkpoint's), so ``epochs=10, initial_epoch=4`` trains epochs 5 to 10.
    ``cuda_graph=True`` (models on a CUDA device) replays each training step as one CUDA
    graph. ``clip_grad_norm``: scale the gradients so that their joint 2-norm is at most
    this, every step, on the device (``tn.optim.ClipGradNorm``; no host sync).
    ``grad_hook(model)``: your own hook between backward and the update (it runs after the
    penalties and before clipping; see ``train_step``).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative integer, got {epochs!r}")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) \
            or not 0 <= initial_epoch <= epochs:
        raise ValueError(f"fit: initial_epoch must be an integer in [0, epochs]; got "
                         f"initial_epoch={initial_epoch!r} with epochs={epochs!r}. epochs is "
                         f"the total (the last epoch's number, as in Keras): to train N more "
                         f"epochs after a checkpoint of epoch E pass epochs=E + N")
    checks.check_parts("fit", model, loss_fn, optimizer)
    checks.check_optimizer_params(model, optimizer)
    checks.check_scheduler(scheduler, optimizer)
    checks.check_options(verbose, grad_hook)
    backend = _model_backend(model)
    checks.check_loader(train_loader, backend, "train_loader", epochs - initial_epoch)
    checks.check_loader(val_loader, backend, "val_loader", epochs - initial_epoch)
    callbacks = checks.check_callbacks(callbacks)
    dist = _distributed(model, fitting=True)  # distributed (issue 18)
    if dist is not None:
        if cuda_graph:
            raise ValueError("fit: cuda_graph=True cannot capture the all-reduce of a "
                             "DataParallel over several ranks; leave it off")
        verbose, callbacks = dist.verbose(verbose), dist.callbacks(callbacks)
    if scheduler is not None:
        callbacks.insert(0, LearningRateScheduler(scheduler))
    else:
        scheduler = next((cb.scheduler for cb in callbacks
                          if isinstance(cb, LearningRateScheduler)), None)
    checks.check_schedulers_once(callbacks)
    run = TrainingRun(model, loss_fn, optimizer, train_loader, val_loader, scheduler, backend,
                      verbose)
    clip = ClipGradNorm(clip_grad_norm) if clip_grad_norm is not None else None
    penalties = regularizers.apply if regularizers.attached(model) else None
    hook = _compose_hooks([penalties, grad_hook, clip])
    train = make_train_step(model, loss_fn, optimizer, grad_hook=hook, cuda_graph=cuda_graph)
    xp = backend.xp

    ignore_index = run.ignore_index = _ignore_index(loss_fn)

    def step(xb, yb):
        loss, out = train(xb, yb)
        return loss, _correct_count(xp, out, yb, ignore_index)

    if dist is not None:  # distributed (issue 18)
        step = dist.wrap_step(step)
    run.dist = dist
    table = _Table(verbose)
    try:
        for cb in callbacks:
            cb.on_train_begin(run)
        if epochs > initial_epoch:  # no table for a run with no epoch to train
            table.header()
        for epoch in range(initial_epoch + 1, epochs + 1):
            run.epoch = epoch
            if not _one_epoch(run, step, callbacks, table):
                break
    except MemoryError as exc:  # CuPy's OutOfMemoryError is a MemoryError too
        size = getattr(train_loader, "batch_size", None)
        where = f"fit, epoch {run.epoch}"
        raise backend.out_of_memory_error(exc, batch_size=size, where=where) from exc
    for cb in callbacks:
        cb.on_train_end(run)
    return run.history


def _one_epoch(run, step, callbacks, table) -> bool:
    """Train and validate one epoch; False when training should stop."""
    model, backend, dist = run.model, run.backend, run.dist
    lr = run.optimizer.param_groups[0]["lr"] if getattr(run.optimizer, "param_groups", None) \
        else None
    for cb in callbacks:
        cb.on_epoch_begin(run)
    model.train()
    handles_nan = any(getattr(cb, "stops_on_nonfinite", False) for cb in callbacks)
    if dist is not None:  # distributed (issue 18)
        dist.check_loader(run.train_loader, "train_loader", run.optimizer, run)
    start = time.perf_counter()
    losses, corrects, sizes, labels = [], [], [], []
    bar = _progress(run, len(run.train_loader) if hasattr(run.train_loader, "__len__") else None)
    try:
        for i, batch in enumerate(run.train_loader, 1):
            xb, yb = checks.batch_pair(batch, "fit: train_loader", i, run.epoch)
            try:
                loss, correct = step(xb, yb)
            except NonFiniteError as exc:
                # A NonFiniteWatch error names epoch and step already: say them once.
                named = getattr(exc, "step", None) is not None
                message = str(exc) if named else f"epoch {run.epoch}, step {i}: {exc}"
                if handles_nan:
                    run.stop(f"TerminateOnNaN: {message}")
                    _keep_partial_epoch(run, losses, corrects, sizes, labels, lr, start)
                    return False
                if named:
                    raise
                raise NonFiniteError(message) from exc
            losses.append(loss)
            if correct is not None:
                corrects.append(correct)
                labels.append(yb)
            sizes.append(int(xb.shape[0]))
            for cb in callbacks:
                cb.on_batch_end(run, i, loss)
            if run.stop_training if dist is None else dist.stop_agreed(run, in_epoch=True):
                _keep_partial_epoch(run, losses, corrects, sizes, labels, lr, start)
                return False
            bar.update(1)
            if backend.sync_policy is SyncPolicy.EVERY_STEP and i % 20 == 0:
                bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
    finally:
        bar.close()
    if not losses:
        raise ValueError("fit: train_loader yielded no batches")
    train_loss, train_acc, run.step_losses, counted = _summarize(
        backend, losses, corrects, sizes, labels, run.ignore_index)
    samples = sum(sizes)
    if dist is not None:  # distributed (issue 18): global figures on every rank
        train_loss, train_acc, samples, run.step_losses = dist.summarize(
            train_loss, train_acc, samples, run.step_losses, sizes, counted)
    train_seconds = time.perf_counter() - start
    try:
        val = evaluate(model, run.loss_fn, run.val_loader) if run.val_loader is not None else {}
    except NonFiniteError as exc:
        raise NonFiniteError(f"epoch {run.epoch}, validation: {exc}") from exc
    logs = {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val.get("loss"),
            "val_acc": val.get("acc"), "lr": lr, "seconds": time.perf_counter() - start,
            "samples_per_s": samples / train_seconds if train_seconds > 0 else None}
    run.history.append(run.epoch, logs)
    table.row(run.epoch, logs)
    if dist is not None:  # distributed (issue 18): every rank's streams, for ModelCheckpoint
        dist.gather_rng_states(run)
    for cb in callbacks:
        cb.on_epoch_end(run, logs)
    return not (run.stop_training if dist is None else dist.stop_agreed(run))


def _keep_partial_epoch(run, losses, corrects, sizes, labels, lr, start) -> None:
    """Record the epoch training stopped in, with the figures of its steps before the first
    non-finite loss (``run.step_losses`` keeps them all, the bad one included)."""
    if not losses:
        return
    xp = run.backend.xp
    run.step_losses = run.backend.to_numpy(xp.stack(losses)).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(run.step_losses))
    keep = int(bad[0]) if bad.size else len(losses)
    if keep == 0:
        return
    corrects = corrects[:keep] if len(corrects) == len(losses) else []
    train_loss, train_acc, _, counted = _summarize(run.backend, losses[:keep], corrects,
                                                   sizes[:keep], labels[:keep],
                                                   run.ignore_index)
    samples = sum(sizes[:keep])
    if run.dist is not None:  # distributed (issue 18): every rank stops at the same step
        train_loss, train_acc, samples, _ = run.dist.summarize(train_loss, train_acc, samples,
                                                               counted=counted)
    seconds = time.perf_counter() - start
    run.history.append(run.epoch, {"train_loss": train_loss, "train_acc": train_acc, "lr": lr,
                                   "seconds": seconds,
                                   "samples_per_s": samples / seconds if seconds > 0 else None})


def _progress(run, total):
    from tqdm.auto import tqdm

    enabled = run.verbose > 0 and sys.stderr.isatty()
    return tqdm(total=total, desc=f"Epoch {run.epoch}", unit="batch", leave=False,
                file=sys.stderr, disable=not enabled, dynamic_ncols=True)


class _Table:
    COLUMNS = (("Epoch", 5), ("Train loss", 10), ("Valid loss", 10), ("Train acc", 9),
               ("Valid acc", 9), ("Time", 7))

    def __init__(self, verbose: int):
        self.verbose = verbose

    def _print(self, cells) -> None:
        if self.verbose:
            print("  ".join(c.rjust(w) for c, (_, w) in zip(cells, self.COLUMNS)), flush=True)

    def header(self) -> None:
        self._print([name for name, _ in self.COLUMNS])

    def row(self, epoch: int, logs: dict) -> None:
        def loss(v):
            return "-" if v is None else f"{v:.4f}"

        def acc(v):
            return "-" if v is None else f"{100.0 * v:.2f}%"

        self._print([str(epoch), loss(logs["train_loss"]), loss(logs["val_loss"]),
                     acc(logs["train_acc"]), acc(logs["val_acc"]), f"{logs['seconds']:.1f}s"])
