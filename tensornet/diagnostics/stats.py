"""``layer_stats``: one forward/backward pass with hooks on every layer, summarised per layer.

What it measures on one batch, per leaf module in forward order:
activation (output) mean/std, mean/std of the gradient w.r.t. that output, the fraction of
dead ReLU units (never positive anywhere in the batch), the fraction of saturated Tanh/Sigmoid
outputs, the norm of the layer's ``weight``, of its gradient, and of one optimizer step.
Across layers it fits how the activation and gradient std change with depth and turns a
steady fall or rise into a plain-language hint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tensornet.backends import get_backend
from tensornet.nn.activation import ReLU, Sigmoid, Tanh
from tensornet.nn.loss import NonFiniteError

from ._util import ModelSnapshot, clone, clone_tree, figure, is_array, on_device
from .hints import diagnose

MAX_NAMED_TICKS = 24


@dataclass
class LayerStat:
    """One row of :class:`LayerStats`. ``None`` means "does not apply" (e.g. no weight)."""

    name: str
    kind: str
    shape: tuple
    act_mean: float
    act_std: float
    grad_mean: float | None = None     # of d loss / d output
    grad_std: float | None = None
    dead_fraction: float | None = None         # ReLU only
    saturated_fraction: float | None = None    # Tanh / Sigmoid only
    weight_norm: float | None = None
    grad_norm: float | None = None     # of d loss / d weight
    update_norm: float | None = None   # of one optimizer step on the weight
    flags: list = field(default_factory=list)

    @property
    def update_ratio(self) -> float | None:
        if self.update_norm is None or not self.weight_norm:
            return None
        return self.update_norm / self.weight_norm


class LayerStats:
    """Result of :func:`layer_stats`.

    Attributes:
        layers: list of :class:`LayerStat` in forward order (``stats["3"]`` by name).
        loss: the batch loss (``nan`` when the loss itself was non-finite).
        flags: set of problem labels: ``"vanishing_activations"``,
            ``"exploding_activations"``, ``"vanishing_gradients"``, ``"exploding_gradients"``,
            ``"dead_relu"``, ``"saturated"``, ``"nonfinite"``, ``"large_update"``,
            ``"small_update"``.
        hints: one plain-language sentence per problem, with what to try.
        update_source: ``"optimizer"`` (a real step, undone), ``"lr * grad"`` or ``None``.
    """

    def __init__(self, layers, loss, flags, hints, update_source):
        self.layers, self.loss = layers, loss
        self.flags, self.hints, self.update_source = flags, hints, update_source

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, key):
        if isinstance(key, str):
            for row in self.layers:
                if row.name == key:
                    return row
            raise KeyError(f"no layer named {key!r}; layers: {[r.name for r in self.layers]}")
        return self.layers[key]

    def column(self, attr: str, kinds=None) -> list:
        """One statistic for every layer (optionally only layers whose type name is in
        ``kinds``), e.g. ``stats.column("act_std", kinds=("Tanh",))``."""
        return [getattr(r, attr) for r in self.layers if kinds is None or r.kind in kinds]

    def __str__(self) -> str:
        head = ("layer", "type", "output", "act mean", "act std", "grad mean", "grad std",
                "dead", "w norm", "g norm", "upd/w", "flags")
        body = [(r.name, r.kind, "x".join(str(d) for d in r.shape), _g(r.act_mean),
                 _g(r.act_std), _g(r.grad_mean), _g(r.grad_std), _pct(r.dead_fraction),
                 _g(r.weight_norm), _g(r.grad_norm), _g(r.update_ratio), ",".join(r.flags))
                for r in self.layers]
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                 for row in [head] + body]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"loss {self.loss:.4g}; update: {self.update_source or 'not measured'}")
        lines += [f"! {h}" for h in self.hints] or ["no problems found"]
        return "\n".join(lines)

    __repr__ = __str__

    def plot(self, path, title: str | None = None):
        """Save a 2x2 PNG: activation std, gradient std, dead/saturated fraction and
        update/weight ratio per layer. Needs matplotlib (``pip install 'tensornet[plot]'``)."""
        fig = figure(figsize=(11, 7.5))
        axes = fig.subplots(2, 2)
        names = [f"{r.name}\n{r.kind}" for r in self.layers]
        idx = np.arange(len(self.layers))
        for ax, attr, label in ((axes[0, 0], "act_std", "activation std"),
                                (axes[0, 1], "grad_std", "gradient std (d loss / d output)")):
            vals = np.array([np.nan if v is None else v for v in self.column(attr)])
            ax.semilogy(idx, np.where(vals > 0, vals, np.nan), "o-")
            ax.set_title(label)
        ax = axes[1, 0]
        dead = [r.dead_fraction if r.dead_fraction is not None else np.nan for r in self.layers]
        sat = [r.saturated_fraction if r.saturated_fraction is not None else np.nan
               for r in self.layers]
        ax.bar(idx - 0.2, dead, width=0.4, label="dead ReLU units")
        ax.bar(idx + 0.2, sat, width=0.4, label="saturated tanh/sigmoid")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("dead / saturated fraction")
        ax = axes[1, 1]
        ratio = np.array([np.nan if r.update_ratio is None else r.update_ratio
                          for r in self.layers])
        if np.any(ratio > 0):
            ax.semilogy(idx, np.where(ratio > 0, ratio, np.nan), "s", label="update / weight")
            ax.axhline(1e-3, color="gray", ls="--", lw=0.8, label="~1e-3 rule of thumb")
            ax.legend(loc="upper right", fontsize=8)
        else:
            wn = np.array([np.nan if r.weight_norm is None else r.weight_norm
                           for r in self.layers])
            ax.plot(idx, wn, "s")
        ax.set_title("update / weight norm" if np.any(ratio > 0) else "weight norm")
        for ax in axes.flat:
            if len(names) <= MAX_NAMED_TICKS:
                ax.set_xticks(idx, names, fontsize=6, rotation=90)
            else:  # hundreds of rotated labels are unreadable and slow to lay out
                ax.set_xlabel("layer index (forward order)", fontsize=8)
            ax.grid(alpha=0.3)
        named = len(names) <= MAX_NAMED_TICKS
        fig.subplots_adjust(left=0.07, right=0.98, top=0.92, bottom=0.12 if named else 0.08,
                            hspace=0.55 if named else 0.3, wspace=0.2)
        fig.suptitle(title or ("; ".join(sorted(self.flags)) or "no problems found"),
                     fontsize=10)
        fig.savefig(path, dpi=110)
        return path


def layer_stats(model, x, y, loss_fn, *, optimizer=None, lr: float | None = None,
                layers=None) -> LayerStats:
    """Per-layer activation, gradient and weight statistics on one batch.

    Args:
        model: a Module; every leaf module (one without children) is measured, or only
            those of the types in ``layers`` (a type or tuple of types).
        x, y: a batch (host NumPy arrays are moved to the model's device).
        loss_fn: a tensornet loss, ``loss_fn(model(x), y)``.
        optimizer: if given, one real ``optimizer.step()`` measures the update norm of each
            weight; the step and the optimizer state are then undone.
        lr: without an optimizer, the update norm is estimated as ``lr * ||grad||`` (SGD).

    The model is left exactly as it was: hooks are removed, and parameters, buffers
    (BatchNorm running stats), gradients, train/eval mode, forward caches and generator
    states restored.
    Runs in the model's current mode (``model.train()`` to see dropout and batch statistics).
    Gradient statistics are of d loss / d (layer output); "dead" means a ReLU output that is
    zero for every sample (and, for ``(N, C, H, W)`` outputs, every position) of the batch.

    The vanishing/exploding hints fit a line through log(activation std) and through
    log(per-sample RMS gradient) over the activation layers (ReLU, Tanh...; the weighted
    layers when there are fewer than 3) and fire when the fitted factor per layer leaves
    [1/TREND_FACTOR, TREND_FACTOR] and the change over the whole depth exceeds TREND_TOTAL.
    """
    backend = model.backend
    x, y = on_device(x, backend), on_device(y, backend)
    targets = [(name or type(model).__name__, m) for name, m in model.named_modules()
               if not list(m.children()) and (layers is None or isinstance(m, layers))]
    rows: dict[int, LayerStat] = {}
    snapshot = ModelSnapshot(model, loss_fn)
    opt_state = clone_tree(optimizer.state_dict()) if optimizer is not None else None
    handles = []
    loss = math.nan
    try:
        for param in model.parameters():
            param.grad = None
        for name, module in targets:
            handles.append(module.register_forward_hook(_forward_recorder(rows, name)))
            handles.append(module.register_backward_hook(_backward_recorder(rows)))
        pred = model(x)
        try:
            loss = float(loss_fn(pred, y))
            finite_loss = math.isfinite(loss)
        except NonFiniteError:
            finite_loss = False
        if finite_loss:
            model.backward(loss_fn.backward())
            update_source = _weight_stats(rows, targets, optimizer, lr)
        else:
            update_source = None
    finally:
        for handle in handles:
            handle.remove()
        if optimizer is not None:
            optimizer.load_state_dict(opt_state)
        snapshot.restore()
    ordered = list(rows.values())
    flags, hints = diagnose(ordered, [m for _, m in targets], loss)
    return LayerStats(ordered, loss, flags, hints, update_source)


def _forward_recorder(rows, name):
    def hook(module, inputs, output):
        if not is_array(output):
            return None
        xp = module.backend.xp
        row = LayerStat(name, type(module).__name__, tuple(output.shape),
                        float(xp.mean(output)), float(xp.std(output)))
        if isinstance(module, ReLU):
            axes = (0,) + tuple(range(2, output.ndim))
            active = xp.any(output > 0, axis=axes)
            row.dead_fraction = 1.0 - float(xp.mean(xp.astype(active, output.dtype)))
        elif isinstance(module, (Tanh, Sigmoid)):
            low, high = (-0.99, 0.99) if isinstance(module, Tanh) else (0.01, 0.99)
            saturated = xp.logical_or(output <= low, output >= high)
            row.saturated_fraction = float(xp.mean(xp.astype(saturated, output.dtype)))
        rows[id(module)] = row
        return None
    return hook


def _backward_recorder(rows):
    def hook(module, grad_input, grad_output):
        row = rows.get(id(module))
        if row is not None and is_array(grad_output):
            xp = module.backend.xp
            row.grad_mean = float(xp.mean(grad_output))
            row.grad_std = float(xp.std(grad_output))
        return None
    return hook


def _norm(a) -> float:
    xp = get_backend(a).xp
    return math.sqrt(float(xp.sum(a * a)))


def _weight_of(module):
    params = dict(module.named_parameters(recurse=False))
    return params.get("weight", next(iter(params.values()), None))


def _weight_stats(rows, targets, optimizer, lr):
    """Fill weight/grad/update norms; returns how the update was measured."""
    weights = []
    for _, module in targets:
        param = _weight_of(module)
        row = rows.get(id(module))
        if param is None or row is None:
            continue
        row.weight_norm = _norm(param.data)
        if param.grad is not None:
            row.grad_norm = _norm(param.grad)
        weights.append((row, param))
    if optimizer is not None:
        before = [clone(p.data) for _, p in weights]
        optimizer.step()
        for (row, param), old in zip(weights, before):
            row.update_norm = _norm(param.data - old)
        return "optimizer"
    if lr is not None:
        for row, _ in weights:
            if row.grad_norm is not None:
                row.update_norm = lr * row.grad_norm
        return "lr * grad"
    return None


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0%}"
