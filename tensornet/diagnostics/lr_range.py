"""``lr_find``: the learning-rate range test (Smith, "Cyclical Learning Rates for Training
Neural Networks", 2017; popularised by fastai).

Train for ``num_steps`` mini-batches while the learning rate grows exponentially from
``start_lr`` to ``end_lr``, record the loss, and stop once it diverges. The loss falls where
the learning rate is useful and explodes where it is too large; a good learning rate sits
well before the explosion.
"""
from __future__ import annotations

import math

import numpy as np

from tensornet import train_checks as checks
from tensornet.nn.loss import NonFiniteError

from ._util import ModelSnapshot, clone_tree, figure, on_device

SUGGESTIONS = ("min/10", "steepest")


class LRFinderResult:
    """What :func:`lr_find` measured.

    Attributes:
        lrs, losses: the learning rate of each step and the raw mini-batch loss at it.
        smoothed: the bias-corrected exponential moving average of ``losses``.
        lr_min: learning rate at the lowest smoothed loss.
        lr_steepest: learning rate where the smoothed loss falls fastest per decade of lr
            (searched between the first 10% of steps and the minimum).
        suggested_lr: ``lr_min / 10`` (``method="min/10"``, the default) or ``lr_steepest``.
        diverged: True when the run stopped early because the loss blew up.
    """

    def __init__(self, lrs, losses, smoothed, method, diverged):
        self.lrs, self.losses, self.smoothed = list(lrs), list(losses), list(smoothed)
        self.method, self.diverged = method, diverged
        s = np.asarray(self.smoothed)
        best = int(np.argmin(s))
        self.lr_min = self.lrs[best]
        skip = len(s) // 10
        window = np.arange(skip, best + 1) if best >= skip + 1 else np.arange(len(s))
        slope = np.gradient(s, np.log10(self.lrs)) if len(s) > 1 else np.zeros(1)
        self.lr_steepest = self.lrs[int(window[np.argmin(slope[window])])]
        self.suggested_lr = self.lr_min / 10.0 if method == "min/10" else self.lr_steepest
        self.note = ""
        if best == 0 or s[best] > 0.99 * s[0]:
            self.note = ("the loss never fell: raise end_lr, train longer per step (larger "
                         "num_steps) or check the model; the suggestion is unreliable")
        elif best < skip:
            self.note = ("the lowest loss lies at the very start of the range, so the curve "
                         "is mostly noise or start_lr is already too large; lower start_lr or "
                         "use larger batches; the suggestion is unreliable")

    def __repr__(self) -> str:
        state = "diverged" if self.diverged else "did not diverge"
        text = (f"LRFinderResult({len(self.lrs)} steps, lr {self.lrs[0]:.2g}..{self.lrs[-1]:.2g}"
                f", {state}; suggested lr {self.suggested_lr:.3g} ({self.method}); "
                f"min loss at {self.lr_min:.3g}, steepest at {self.lr_steepest:.3g})")
        return text + (f"\n! {self.note}" if self.note else "")

    def plot(self, path, title: str | None = None):
        """Save loss vs learning rate (log x) with the suggestion marked, as a PNG."""
        fig = figure(figsize=(7, 4.5))
        ax = fig.subplots()
        ax.semilogx(self.lrs, self.losses, color="0.7", lw=0.8, label="mini-batch loss")
        ax.semilogx(self.lrs, self.smoothed, lw=2, label="smoothed loss")
        s = np.asarray(self.smoothed)
        low, high = float(s.min()), float(s[0])
        span = (high - low) or abs(high) * 0.1 or 1.0
        ax.set_ylim(low - 0.2 * span, high + 0.6 * span)
        ax.axvline(self.suggested_lr, color="C3", ls="--",
                   label=f"suggested lr {self.suggested_lr:.2g} ({self.method})")
        ax.axvline(self.lr_min, color="0.4", ls=":", label=f"min loss at {self.lr_min:.2g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title or ("LR range test" + (" (stopped at divergence)"
                                                 if self.diverged else "")))
        fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.12)
        fig.savefig(path, dpi=110)
        return path


def lr_find(model, loss_fn, optimizer, loader, *, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_steps: int = 100, smoothing: float = 0.9,
            diverge_factor: float = 4.0, suggest: str = "min/10") -> LRFinderResult:
    """Learning-rate range test; the model and optimizer are restored afterwards.

    Args:
        model, loss_fn, optimizer: as for training (``optimizer.param_groups[*]["lr"]`` is
            overwritten at every step).
        loader: an iterable of ``(x, y)`` batches; restarted when exhausted.
        start_lr, end_lr: the range, swept exponentially over ``num_steps`` steps.
        smoothing: weight of the past in the exponential moving average of the loss.
        diverge_factor: stop once the smoothed loss exceeds this times its minimum (or the
            loss is NaN/Inf).
        suggest: ``"min/10"`` (default): one tenth of the learning rate at the lowest smoothed
            loss, a robust choice; ``"steepest"``: where the smoothed loss falls fastest, more
            aggressive and noisier. Both are on the result.

    Parameters, buffers, gradients, train/eval mode, generator states, the optimizer's
    state (its momentum buffers and learning rates) and a DataLoader's epoch count are all
    put back as they were.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find: need 0 < start_lr < end_lr, got start_lr={start_lr}, "
                         f"end_lr={end_lr}")
    if not math.isfinite(end_lr):
        raise ValueError(f"lr_find: end_lr must be finite, got {end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) \
            or num_steps < 10:
        raise ValueError(f"lr_find: num_steps must be an integer >= 10 to see a trend, got "
                         f"{num_steps!r}")
    if not 1.0 < diverge_factor < math.inf:
        # <= 1 stops at the first step, whose smoothed loss is its own minimum
        raise ValueError(f"lr_find: diverge_factor must be a finite number > 1, got "
                         f"{diverge_factor}")
    if suggest not in SUGGESTIONS:
        raise ValueError(f"lr_find: suggest must be one of {SUGGESTIONS}, got {suggest!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"lr_find: smoothing must be in [0, 1), got {smoothing}")
    snapshot = ModelSnapshot(model, loss_fn)
    opt_state = clone_tree(optimizer.state_dict())
    # A DataLoader counts epochs (its shuffling order depends on the count): put it back too.
    loader_state = loader.state_dict() if hasattr(loader, "load_state_dict") else None
    lrs, losses, smoothed = [], [], []
    average, best, diverged = 0.0, math.inf, False
    ratio = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    try:
        model.train()
        batches = _cycle(loader)
        for step in range(num_steps):
            lr = start_lr * ratio ** step
            for group in optimizer.param_groups:
                group["lr"] = lr
            xb, yb = checks.batch_pair(next(batches), "lr_find", step + 1)
            xb, yb = on_device(xb, model.backend), on_device(yb, model.backend)
            optimizer.zero_grad()
            try:
                loss = float(loss_fn(model(xb), yb))
            except NonFiniteError:
                loss = math.nan
            if not math.isfinite(loss):
                diverged = True
                break
            model.backward(loss_fn.backward())
            optimizer.step()
            average = smoothing * average + (1.0 - smoothing) * loss
            value = average / (1.0 - smoothing ** (step + 1))
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(value)
            best = min(best, value)
            if best > 0 and value > diverge_factor * best:
                diverged = True
                break
    finally:
        optimizer.load_state_dict(opt_state)
        snapshot.restore()
        if loader_state is not None:
            loader.load_state_dict(loader_state)
    if len(lrs) < 2:
        raise NonFiniteError(f"lr_find: the loss was non-finite within {len(lrs) + 1} steps "
                             f"from lr={start_lr:g}; lower start_lr or check the model/data")
    return LRFinderResult(lrs, losses, smoothed, suggest, diverged)


def _cycle(loader):
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_find: the loader yielded no batches")
