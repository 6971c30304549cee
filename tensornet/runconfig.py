"""The ``config`` entry of a checkpoint: how ``tensornet eval`` rebuilds and tests a model.

``tensornet train`` writes it; ``tn.save_checkpoint(..., config=...)`` may too. Only
``model`` and ``dataset`` are required::

    {"model": {"name": "mlp", "kwargs": {"sizes": [784, 256, 10], "init": "he"}},
     "dataset": "fashion-mnist",                       # or mnist, blobs, spirals
     "seed": 0,                                        # toy sets: test split is seed + 10000
     "flatten": False,                                 # flatten images to vectors
     "normalize": {"mean": [0.29], "std": [0.35]}}     # or None

``validate_config`` checks every field against this schema before anything is built, and
hands back only what the model builder and the evaluation accept: an unknown model kwarg,
a missing key, an unknown dataset or a value of the wrong type is a ``CheckpointError``
naming the file. The other entries ``train`` writes (optimizer, lr, test, ...) are
informational and not used.
"""
from __future__ import annotations

import math

from .data.transforms import Normalize
from .io import CheckpointError
from .models import ACTIVATIONS, INITS

DATASETS = ("fashion-mnist", "mnist", "blobs", "spirals")


class _Invalid(Exception):
    pass


def _positive_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Invalid(f"expected a positive integer, got {value!r}")
    return value


def _sizes(value):
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise _Invalid(f"expected a list of at least 2 positive integers, got {value!r}")
    return [_positive_int(v) for v in value]


def _choice(options, optional=False):
    def check(value):
        if (value is None and optional) or (isinstance(value, str) and value in options):
            return value
        raise _Invalid(f"expected one of {', '.join(options)}"
                       f"{' or null' if optional else ''}, got {value!r}")
    return check


def _fraction(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 <= value < 1.0:
        raise _Invalid(f"expected a number in [0, 1), got {value!r}")
    return float(value)


def _numbers(value):
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             and math.isfinite(v) for v in values):
        raise _Invalid(f"expected a finite number or a list of them, got {value!r}")
    return [float(v) for v in values]


MODEL_KWARGS = {
    "mlp": {"sizes": _sizes, "activation": _choice(ACTIVATIONS),
            "init": _choice(INITS, optional=True), "dropout": _fraction},
    "cnn": {"in_channels": _positive_int, "num_classes": _positive_int,
            "image_size": _positive_int, "init": _choice(INITS, optional=True),
            "dropout": _fraction},
    "autoencoder": {"sizes": _sizes, "activation": _choice(ACTIVATIONS),
                    "init": _choice(INITS, optional=True), "output": _choice(ACTIVATIONS)},
}


def validate_config(config, source) -> dict:
    """``{"model": {"name", "kwargs"}, "dataset", "seed", "flatten", "normalize"}`` checked
    and completed with defaults; ``CheckpointError`` naming ``source`` otherwise."""
    fail = f"{source}: the checkpoint's config"
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: no model config in this checkpoint; write one with "
                              f"'tensornet train' or tn.save_checkpoint(..., config={{'model': "
                              f"{{'name': ..., 'kwargs': ...}}, 'dataset': ...}})")
    missing = [k for k in ("model", "dataset") if k not in config]
    if missing:
        raise CheckpointError(f"{fail} lacks {' and '.join(repr(k) for k in missing)}")
    try:
        model = _model_spec(config["model"])
        dataset = _choice(DATASETS)(config["dataset"])
    except _Invalid as exc:
        raise CheckpointError(f"{fail}: {exc}") from None
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CheckpointError(f"{fail}: seed: expected an integer >= 0, got {seed!r}")
    flatten = config.get("flatten", False)
    if not isinstance(flatten, bool):
        raise CheckpointError(f"{fail}: flatten: expected true or false, got {flatten!r}")
    normalize = config.get("normalize")
    if normalize is not None:
        if not isinstance(normalize, dict) or set(normalize) != {"mean", "std"}:
            raise CheckpointError(f"{fail}: normalize: expected null or {{'mean': ..., "
                                  f"'std': ...}}, got {str(normalize)[:100]}")
        try:
            normalize = {k: _numbers(normalize[k]) for k in ("mean", "std")}
            Normalize(normalize["mean"], normalize["std"])  # lengths agree, std > 0
        except (_Invalid, ValueError) as exc:
            raise CheckpointError(f"{fail}: normalize: {exc}") from None
    return {"model": model, "dataset": dataset, "seed": seed, "flatten": flatten,
            "normalize": normalize}


def _model_spec(spec) -> dict:
    if not isinstance(spec, dict) or not isinstance(spec.get("kwargs", {}), dict):
        raise _Invalid(f"model: expected {{'name': ..., 'kwargs': {{...}}}}, got "
                       f"{str(spec)[:100]}")
    name = spec.get("name")
    if name not in MODEL_KWARGS:
        raise _Invalid(f"model: unknown model {str(name)[:50]!r}; expected one of "
                       f"{', '.join(MODEL_KWARGS)}")
    schema, kwargs = MODEL_KWARGS[name], spec.get("kwargs", {})
    unknown = [k for k in kwargs if k not in schema]
    if unknown:
        raise _Invalid(f"model: unknown {name} kwarg(s) {', '.join(map(repr, unknown))}; "
                       f"{name} takes {', '.join(schema)}")
    checked = {}
    for key, value in kwargs.items():
        try:
            checked[key] = schema[key](value)
        except _Invalid as exc:
            raise _Invalid(f"model: {name} kwarg {key!r}: {exc}") from None
    return {"name": name, "kwargs": checked}
