"""What ``tn.fit`` and ``tn.evaluate`` do differently when the model is a DataParallel over
several ranks (issue 18). ``for_model(model)`` is None otherwise, and fit runs as always.

- Figures: each rank's loss sum, correct count and sample count (and the per-step losses)
  are summed over the ranks once per epoch, so every rank holds the true global figures.
- Output: only rank 0 prints (the table, the progress bar, callback messages) and writes
  files: ``ModelCheckpoint`` (subclasses too) and callbacks with ``writes_files = True``
  run there alone. When there is a ModelCheckpoint, fit gathers every rank's RNG state
  before the epoch's end callbacks (``run.rng_per_rank``), for rank 0's file: a collective
  inside a callback would need every rank to run it and decide alike whether to save.
- Decisions: a stop asked for on any rank (a callback, a non-finite loss) stops every rank
  at the same step, so no rank is left waiting in a collective.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from tensornet.callbacks import Callback, ModelCheckpoint
from tensornet.nn.loss import NonFiniteError

from .data_parallel import DataParallel


def for_model(model):
    """A DistributedFit when ``model`` is a DataParallel over more than one rank, else None."""
    if isinstance(model, DataParallel) and model.comm.size > 1:
        return DistributedFit(model)
    return None


def check_not_in_no_sync(model) -> None:
    """``fit`` inside ``DataParallel.no_sync()`` would never average the gradients."""
    if isinstance(model, DataParallel) and not model._sync:
        raise RuntimeError("fit inside DataParallel.no_sync(): the gradients would never be "
                           "averaged and the ranks would drift apart; no_sync is for the "
                           "extra backwards of a hand-written accumulation loop")


class DistributedFit:
    def __init__(self, model: DataParallel):
        self.model, self.comm = model, model.comm
        self.is_main = self.comm.rank == 0
        self.stops_in_epoch = True  # whether a callback may stop between two steps
        self.checkpoints = False  # whether rank 0 runs a ModelCheckpoint

    def verbose(self, verbose: int) -> int:
        return verbose if self.is_main else 0

    def callbacks(self, callbacks: list) -> list:
        """The callbacks this rank runs: those that write files (ModelCheckpoint among
        them) run on rank 0 only. Notes whether any may stop mid-epoch (else the per-step
        stop agreement is skipped) and whether rank 0 may save a checkpoint."""
        self.stops_in_epoch = any(type(cb).on_batch_end is not Callback.on_batch_end
                                  or type(cb).on_epoch_begin is not Callback.on_epoch_begin
                                  for cb in callbacks)
        self.checkpoints = any(isinstance(cb, ModelCheckpoint) for cb in callbacks)
        return [cb for cb in callbacks if self.is_main or not (
            isinstance(cb, ModelCheckpoint) or getattr(cb, "writes_files", False))]

    def gather_rng_states(self, run) -> None:
        """``run.rng_per_rank``: every rank's RNG state, in rank order, where rank 0 has a
        ModelCheckpoint (one all-gather, on every rank, before the epoch's end callbacks)."""
        from . import rng_states
        run.rng_per_rank = rng_states(self.comm) if self.checkpoints else None

    def wrap_step(self, step):
        """``step`` that, when this rank's loss is not finite, still joins the gradient
        average (as failed), so every rank raises at the same step."""
        def distributed_step(xb, yb):
            try:
                return step(xb, yb)
            except NonFiniteError as exc:
                if not getattr(exc, "agreed", False):
                    self.model.report_failure()
                raise
        return distributed_step

    def check_loader(self, loader, name: str, optimizer=None, run=None) -> None:
        """Every rank must take the same number of steps per epoch, and step the same
        optimizer with the same settings (else the weights drift apart, silently: the
        gradients are averaged, the updates are not), from the same weights (checked at
        fit's first epoch: a checkpoint loaded on rank 0 alone after wrapping); one
        all-gather per epoch checks all three. With ``run``, the same all-gather makes a
        stop asked for on some rank before the epoch's first step (``on_train_begin``,
        ``on_epoch_begin``) every rank's: the per-step agreement may be off.
        A DataLoader without ``shard`` gives every rank the same batches: rank 0 warns
        (once per fit)."""
        from tensornet.data import DataLoader
        if isinstance(loader, DataLoader) and loader.shard is None and self.is_main \
                and not getattr(self, "_warned_unsharded", False):
            self._warned_unsharded = True
            warnings.warn(f"fit: {name} is not sharded, so each of the {self.comm.size} ranks "
                          f"trains on the same batches ({self.comm.size} copies of one "
                          f"process's run); build it with DataLoader(..., shard=comm.shard)",
                          UserWarning, stacklevel=4)
        if getattr(loader, "shard", None) is not None and \
                getattr(loader, "shard_tail", None) == "uneven":
            raise ValueError(f"fit: {name} has shard_tail='uneven', which is for evaluation: "
                             f"its ranks hold different numbers of samples, so their "
                             f"gradients would not average as one batch; train with "
                             f"shard_tail='pad' (default) or 'drop'")
        first = not getattr(self, "_weights_checked", False)
        self._weights_checked = True
        gathered = self.comm.allgather((len(loader) if hasattr(loader, "__len__") else None,
                                        _settings(optimizer),
                                        _weight_sums(self.model.module) if first else None,
                                        run is not None and run.stop_training))
        if first:
            _check_same_weights([sums for _, _, sums, _ in gathered])
        if run is not None:
            _stop_as_others(run, any(stop for *_, stop in gathered))
        gathered = [(count, settings) for count, settings, _, _ in gathered]
        counts = [count for count, _ in gathered]
        if len(set(counts)) > 1:
            raise ValueError(f"fit: {name} yields {counts} batches per epoch on ranks "
                             f"0..{self.comm.size - 1}; every rank must take the same number "
                             f"of steps: build it with DataLoader(..., shard=comm.shard)")
        for rank, (_, settings) in enumerate(gathered):
            if settings != gathered[0][1]:
                ours, theirs = _difference(gathered[0][1], settings)
                raise ValueError(f"fit: the ranks' optimizers differ: rank 0 has {ours}, rank "
                                 f"{rank} {theirs}; every rank must step the same optimizer "
                                 f"with the same settings, or their weights drift apart")

    def stop_agreed(self, run, in_epoch: bool = False) -> bool:
        """True on every rank when some rank's callbacks asked to stop (one tiny
        all-reduce; skipped between steps when no callback can stop there)."""
        if in_epoch and not self.stops_in_epoch:
            return run.stop_training
        _stop_as_others(run, self.comm.any(run.stop_training))
        return run.stop_training

    def summarize(self, loss: float, acc, samples: int, step_losses=None, sizes=None,
                  counted=None):
        """Global ``(loss, acc, samples, step_losses)`` from this rank's figures: sums over
        the ranks of loss * samples, correct predictions, the labels the accuracy counted
        (``counted``; default ``samples``) and samples (one all-reduce)."""
        scored = acc is not None or bool(counted == 0)  # a rank may count no label at all
        counted = samples if counted is None else counted
        local = [loss * samples if loss is not None else 0.0,
                 acc * counted if acc is not None else 0.0, float(samples), float(counted)]
        if step_losses is not None:
            weights = np.asarray(sizes, dtype=np.float64)
            local += list(step_losses * weights) + list(weights)
        total = self.comm.sum(local)
        n = total[2]
        loss = None if loss is None else float(total[0] / n)
        acc = float(total[1] / total[3]) if scored and total[3] else None
        if step_losses is not None:
            k = len(step_losses)
            step_losses = total[4:4 + k] / total[4 + k:]
        return loss, acc, int(n), step_losses


def _stop_as_others(run, some_rank_stops: bool) -> None:
    if some_rank_stops and not run.stop_training:
        run.stop("stopped because another rank stopped")


def _weight_sums(model) -> list:
    """Per trainable parameter: its name, and the float64 sum and sum of squares of its
    values (one host read), to compare the ranks' weights without sending them."""
    xp = model.backend.xp
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        return []
    sums = []
    for _, param in named:
        values = xp.astype(param.data, xp.float64)
        sums += [xp.sum(values), xp.sum(values * values)]
    host = model.backend.to_numpy(xp.stack(sums)).tolist()
    return [(name, host[2 * i], host[2 * i + 1]) for i, (name, _) in enumerate(named)]


def _check_same_weights(per_rank: list) -> None:
    """Raise where some rank's weights are not rank 0's: a sum of squares off by more than
    1e-5 of itself, or a sum by more than 1e-4 of the weights' norm (round-off in float32
    stays far below both; a checkpoint loaded on one rank, or other initial weights, do
    not)."""
    for rank, sums in enumerate(per_rank[1:], 1):
        for (name, total, squares), (_, total0, squares0) in zip(sums, per_rank[0]):
            if abs(squares - squares0) > 1e-5 * abs(squares0) + 1e-12 \
                    or abs(total - total0) > 1e-4 * abs(squares0) ** 0.5 + 1e-12:
                raise ValueError(
                    f"fit: the ranks start from different weights: rank {rank}'s {name!r} is "
                    f"not rank 0's (sum of squares {squares:.6g} against {squares0:.6g}); "
                    f"load a checkpoint on every rank, or call model.broadcast_from_rank0() "
                    f"after loading on rank 0")


def _settings(optimizer) -> tuple | None:
    """What every rank's optimizer must agree on: its class and, per parameter group, the
    number of parameters and every hyper-parameter (as text, so that floats compare
    exactly and a NumPy scalar equals the Python number, bool or str of its value)."""
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        return None
    return (type(optimizer).__name__, tuple(
        (("parameters", str(len(group["params"]))),) + tuple(sorted(
            (key, _text(value)) for key, value in group.items() if key != "params"))
        for group in groups))


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_text(v) for v in value) + ")"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return repr(float(value))
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))  # NumPy 2 writes np.True_
    if isinstance(value, str):
        return repr(str(value))  # np.str_('x') too
    if value is None:
        return "None"
    return f"<{type(value).__name__}>"  # an object of the user's: its repr may hold an address


def _difference(first, other) -> tuple[str, str]:
    """The first setting in which two ``_settings`` differ, as text for each side."""
    def outline(settings):
        return "no optimizer" if settings is None else \
            f"{settings[0]} with {len(settings[1])} parameter group(s)"

    if first is None or other is None or outline(first) != outline(other):
        return outline(first), outline(other)
    index, a, b = next((i, dict(a), dict(b)) for i, (a, b) in enumerate(zip(first[1], other[1]))
                       if a != b)
    key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
    return f"{key}={a.get(key, '(none)')} in group {index}", f"{key}={b.get(key, '(none)')}"
