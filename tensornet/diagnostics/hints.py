"""Turn per-layer statistics into flags and plain-language hints (used by ``layer_stats``)."""
from __future__ import annotations

import math

import numpy as np

from tensornet.nn.activation import ELU, LeakyReLU, ReLU, Sigmoid, SoftPlus, Tanh

_TREND_ACTIVATIONS = (ReLU, LeakyReLU, ELU, Tanh, Sigmoid, SoftPlus)
# A trend is flagged when the fitted per-layer factor leaves [1/FACTOR, FACTOR] AND the
# change across the whole depth exceeds TOTAL: one odd layer or a slow drift is no alarm.
TREND_FACTOR = 1.25
TREND_TOTAL = 10.0
DEAD_ALARM = 0.5        # fraction of dead ReLU units in a layer
SATURATION_ALARM = 0.5  # fraction of Tanh/Sigmoid outputs within 0.01 of their bounds
UPDATE_RATIO_HIGH = 0.1  # one step moving a weight by 10% of its norm
UPDATE_RATIO_LOW = 1e-6


def diagnose(rows, modules, loss):
    """``(flags, hints)`` for the :class:`LayerStat` ``rows`` of ``modules``; also appends
    short labels to each row's ``flags``. The thresholds are the constants above."""
    flags, hints = set(), []
    relu = any(isinstance(m, (ReLU, LeakyReLU, ELU)) for m in modules)
    squash = any(isinstance(m, (Tanh, Sigmoid)) for m in modules)
    if relu and not squash:
        init_hint = ("try He (kaiming) init for ReLU: "
                     "tn.nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')")
    elif squash and not relu:
        init_hint = ("try Xavier/Glorot init for tanh/sigmoid: "
                     "tn.nn.init.xavier_normal_(layer.weight)")
    else:
        init_hint = "try Xavier/Glorot init for tanh/sigmoid or He (kaiming) init for ReLU"
    if not math.isfinite(loss):
        flags.add("nonfinite")
        hints.append(f"the loss is {loss}: no gradients were measured; find the first "
                     f"non-finite layer with tn.diagnostics.watch_nonfinite(model)")
    trend = [r for r in rows if r.kind in {t.__name__ for t in _TREND_ACTIVATIONS}]
    if len(trend) < 3:
        trend = [r for r in rows if r.weight_norm is not None or r.kind in ("Linear", "Conv2d")]
    _trend(trend, _act_size, "activation", flags, hints, init_hint)
    _trend(trend, _grad_size, "gradient", flags, hints, init_hint)
    bad = {"nonfinite": [], "dead": [], "saturated": [], "big step": [], "tiny step": []}
    for r in rows:
        ratio = r.update_ratio
        checks = {"nonfinite": any(v is not None and not math.isfinite(v)
                                   for v in (r.act_std, r.grad_std)),
                  "dead": r.dead_fraction is not None and r.dead_fraction >= DEAD_ALARM,
                  "saturated": (r.saturated_fraction is not None
                                and r.saturated_fraction >= SATURATION_ALARM),
                  "big step": ratio is not None and ratio > UPDATE_RATIO_HIGH,
                  "tiny step": ratio is not None and ratio < UPDATE_RATIO_LOW}
        for label, hit in checks.items():
            if hit:
                r.flags.append(label)
                bad[label].append(r)
    if bad["nonfinite"] and "nonfinite" not in flags:
        flags.add("nonfinite")
        hints.append(f"{_names(bad['nonfinite'])} hold NaN/Inf; find where it starts with "
                     f"tn.diagnostics.watch_nonfinite(model)")
    if bad["dead"]:
        flags.add("dead_relu")
        hints.append(f"ReLU {_names(bad['dead'])}: {_span(bad['dead'], 'dead_fraction')} of "
                     f"units never fire on this batch, so their weights get no gradient; lower "
                     f"the learning rate, use He init with zero bias, or LeakyReLU")
    if bad["saturated"]:
        flags.add("saturated")
        hints.append(f"{_names(bad['saturated'])}: {_span(bad['saturated'], 'saturated_fraction')}"
                     f" of outputs are saturated, where the gradient is ~0; scale the init "
                     f"down (Xavier) or normalise the inputs")
    if bad["big step"]:
        flags.add("large_update")
        hints.append(f"{_names(bad['big step'])}: one step changes the weight by "
                     f"{_span(bad['big step'], 'update_ratio')} of its norm (healthy is ~0.1%); "
                     f"the learning rate is probably too high")
    if bad["tiny step"]:
        flags.add("small_update")
        hints.append(f"{_names(bad['tiny step'])}: one step changes the weight by only "
                     f"{_span(bad['tiny step'], 'update_ratio', '.1e')} of its norm; the layer "
                     f"barely learns (learning rate too low, or its gradient vanishes)")
    return flags, hints


def _act_size(row):
    return row.act_std


def _grad_size(row):
    """RMS gradient per sample, ``grad_std * sqrt(values per sample)``: unlike the
    per-element std it stays put through layers of different widths (a conv map of
    8x28x28 values vs a 128-unit layer) under a variance-preserving init."""
    if row.grad_std is None:
        return None
    per_sample = 1
    for d in row.shape[1:]:
        per_sample *= d
    return row.grad_std * math.sqrt(per_sample)


def _trend(rows, size, what, flags, hints, init_hint) -> None:
    """Fit log10(size(row)) against depth; flag a steady fall or rise (see TREND_*)."""
    pairs = [(i, size(r)) for i, r in enumerate(rows)]
    pairs = [(i, v) for i, v in pairs if v is not None and math.isfinite(v) and v > 0]
    if len(pairs) < 3:
        return
    depth = np.array([i for i, _ in pairs], dtype=np.float64)
    logs = np.log10([v for _, v in pairs])
    slope = float(np.polyfit(depth, logs, 1)[0])
    factor = 10.0 ** slope               # per layer, in forward order
    total = factor ** (depth[-1] - depth[0])
    first, last = rows[pairs[0][0]], rows[pairs[-1][0]]
    span = f"{size(first):.2g} at '{first.name}' -> {size(last):.2g} at '{last.name}'"
    if what == "activation":
        if factor < 1 / TREND_FACTOR and total < 1 / TREND_TOTAL:
            flags.add("vanishing_activations")
            hints.append(f"activation std falls ~{1 / factor:.1f}x per layer ({span}): the "
                         f"signal vanishes with depth; {init_hint}")
        elif factor > TREND_FACTOR and total > TREND_TOTAL:
            flags.add("exploding_activations")
            hints.append(f"activation std grows ~{factor:.1f}x per layer ({span}): the "
                         f"weights are too large for this depth; {init_hint}, or add "
                         f"BatchNorm/LayerNorm")
        return
    # Gradients flow backwards: growth towards the input means factor < 1 in forward order.
    if factor < 1 / TREND_FACTOR and total < 1 / TREND_TOTAL:
        flags.add("exploding_gradients")
        hints.append(f"gradients grow ~{1 / factor:.1f}x per layer towards the input "
                     f"(per-sample RMS {span}): "
                     f"the first layers take huge steps; lower the learning rate or use "
                     f"Xavier (tanh) / He (ReLU) init; tn.optim.clip_grad_norm_ limits the damage")
    elif factor > TREND_FACTOR and total > TREND_TOTAL:
        flags.add("vanishing_gradients")
        hints.append(f"gradients shrink ~{factor:.1f}x per layer towards the input "
                     f"(per-sample RMS {span}): "
                     f"the first layers barely learn; {init_hint}; saturating tanh/sigmoid make "
                     f"it worse, BatchNorm or residual connections help")


def _names(rows) -> str:
    shown = ", ".join(f"'{r.name}'" for r in rows[:4])
    more = f" and {len(rows) - 4} more" if len(rows) > 4 else ""
    return f"layer{'s' if len(rows) > 1 else ''} {shown}{more}"


def _span(rows, attr, fmt=".0%") -> str:
    vals = [getattr(r, attr) for r in rows]
    low, high = f"{min(vals):{fmt}}", f"{max(vals):{fmt}}"
    return low if low == high else f"{low}-{high}"
