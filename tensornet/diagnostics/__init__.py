"""Instruments for seeing why a network does not train.

- :func:`layer_stats`: per-layer activation/gradient statistics, dead ReLUs, weight and update
  norms on one batch, with plain-language hints (vanishing/exploding signals, dead units).
- :func:`lr_find`: the learning-rate range test, with a suggested learning rate.
- :func:`watch_nonfinite` / :class:`NonFiniteWatch`: names the first layer whose output or
  gradient became NaN/Inf, as a context manager or a ``tn.fit`` callback.
"""
from .lr_range import LRFinderResult, lr_find
from .nonfinite import NonFiniteLayerError, NonFiniteWatch, watch_nonfinite
from .stats import LayerStat, LayerStats, layer_stats

__all__ = ["layer_stats", "LayerStats", "LayerStat", "lr_find", "LRFinderResult",
           "watch_nonfinite", "NonFiniteWatch", "NonFiniteLayerError"]
