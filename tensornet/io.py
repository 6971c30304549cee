"""Saving and loading: nested state dicts as safetensors files, never pickle.

``save(obj, path)`` takes nested dicts/lists/tuples whose leaves are arrays (any device),
numbers, strings, booleans or None. Arrays become safetensors tensors named by their path
(``model/0.weight``, ``optimizer/state/0/exp_avg``); everything else, and the nesting
itself, goes into the file's JSON metadata. Any safetensors reader can open the tensors;
``load(path)`` rebuilds the nested object with NumPy arrays.

Writes are atomic: the bytes go to a temporary file in the same folder, which replaces
``path`` only once complete, so a crash mid-save leaves the previous file intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "tensornet"
FORMAT_VERSION = "1"
_MARKERS = ("__tensor__", "__scalar__", "__tuple__", "__dict__")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupted, or does not fit the model it is loaded into."""


# ---------------------------------------------------------------------- save / load
def save(obj, path) -> None:
    """Write ``obj`` (nested dicts/lists of arrays and plain values) to ``path`` (safetensors)."""
    from safetensors.numpy import save as st_save

    tensors: dict[str, np.ndarray] = {}
    structure = _encode(obj, "", tensors)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "structure": json.dumps(structure, allow_nan=True)}
    data = st_save(tensors, metadata=metadata)
    _atomic_write(Path(path), data)


def load(path):
    """Read a file written by ``save`` (arrays come back as NumPy arrays on the host).

    A plain safetensors file (e.g. from another framework) loads as a flat
    ``{name: array}`` dict. Raises ``CheckpointError`` naming the file when it is
    truncated, corrupted or not safetensors.
    """
    from safetensors.numpy import load as st_load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc})") from exc
    metadata = _read_metadata(data, path)
    try:
        tensors = st_load(data)
    except Exception as exc:  # SafetensorError and friends: the file is damaged
        raise CheckpointError(f"{path}: the checkpoint is corrupted or truncated ({exc})") from exc
    if metadata.get("format") != FORMAT:
        return tensors
    try:
        structure = json.loads(metadata["structure"])
        return _decode(structure, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's metadata is damaged ({exc})") from exc


def _read_metadata(data: bytes, path: Path) -> dict:
    """The ``__metadata__`` of a safetensors header, checking the header fits in the file."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: {len(data)} bytes is too short for a safetensors "
                              f"checkpoint (truncated?)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise CheckpointError(f"{path}: not a safetensors file, or truncated: the header "
                              f"claims {size} bytes but the file holds {len(data)}")
    try:
        header = json.loads(data[8:8 + size])
    except ValueError as exc:
        raise CheckpointError(f"{path}: the safetensors header is corrupted ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    if ends and 8 + size + max(ends) > len(data):
        raise CheckpointError(f"{path}: truncated: the tensors need "
                              f"{8 + size + max(ends)} bytes but the file holds {len(data)}")
    return header.get("__metadata__") or {}


def _write_all(f, data: bytes) -> None:
    f.write(data)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------- nesting <-> JSON
def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic)


def _tensor_name(prefix: str, tensors: dict) -> str:
    name = prefix or "value"
    unique, i = name, 1
    while unique in tensors:
        unique, i = f"{name}#{i}", i + 1
    return unique


def _encode(value, prefix: str, tensors: dict):
    from tensornet.backends import asnumpy
    from tensornet.nn.parameter import Parameter

    if isinstance(value, Parameter):
        value = value.data
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        name = _tensor_name(prefix, tensors)
        tensors[name] = np.asarray(value, order="C")
        return {"__scalar__": name}
    if _is_array(value):
        name = _tensor_name(prefix, tensors)
        # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
        tensors[name] = np.asarray(asnumpy(value), order="C")
        return {"__tensor__": name}
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and "/" not in k for k in value) \
            and not any(k in _MARKERS for k in value)
        if plain:
            return {k: _encode(v, f"{prefix}/{k}" if prefix else k, tensors)
                    for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int, bool)) and k is not None:
                raise TypeError(f"tn.save: dict keys must be str or int, got "
                                f"{type(k).__name__} at {prefix or 'the top level'}")
            items.append([k, _encode(v, f"{prefix}/{k}" if prefix else str(k), tensors)])
        return {"__dict__": items}
    if isinstance(value, (list, tuple)):
        encoded = [_encode(v, f"{prefix}/{i}" if prefix else str(i), tensors)
                   for i, v in enumerate(value)]
        return {"__tuple__": encoded} if isinstance(value, tuple) else encoded
    raise TypeError(f"tn.save cannot store a {type(value).__name__} (at "
                    f"{prefix or 'the top level'}); only dicts, lists, tuples, arrays, numbers, "
                    f"strings, booleans and None (tensornet never pickles)")


def _decode(node, tensors: dict):
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__scalar__" in node:
        return tensors[node["__scalar__"]][()]
    if "__tuple__" in node:
        return tuple(_decode(v, tensors) for v in node["__tuple__"])
    if "__dict__" in node:
        return {k: _decode(v, tensors) for k, v in node["__dict__"]}
    return {k: _decode(v, tensors) for k, v in node.items()}


# ---------------------------------------------------------------------- training checkpoints
def save_checkpoint(path, model, optimizer=None, *, scheduler=None, loader=None, epoch=None,
                    config=None, history=None) -> None:
    """Save everything needed to resume training bit-for-bit: model and optimizer state,
    the LR schedule, the training loader's epoch counter, every RNG's state, the epoch,
    plus an optional JSON-friendly ``config`` (how to rebuild the model) and ``history``."""
    from tensornet.random import get_rng_state

    state = {"model": model.state_dict(), "rng": get_rng_state()}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if loader is not None and hasattr(loader, "state_dict"):
        state["loader"] = loader.state_dict()
    if epoch is not None:
        state["epoch"] = int(epoch)
    if config is not None:
        state["config"] = config
    if history is not None:
        state["history"] = history
    save(state, path)


def load_checkpoint(path, model, optimizer=None, *, scheduler=None, loader=None,
                    restore_rng: bool = True) -> dict:
    """Restore what ``save_checkpoint`` wrote into fresh objects; returns the loaded dict
    (``epoch``, ``config``, ``history``...).

    All or nothing: if any part does not fit (another architecture, another optimizer),
    ``CheckpointError`` names the file and the mismatch, and the model and optimizer are
    left as they were.
    """
    from tensornet.backends import asnumpy
    from tensornet.random import set_rng_state

    state = load(path)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a tensornet training checkpoint (no 'model' entry)")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and name not in state:
            raise CheckpointError(f"{path}: the checkpoint holds no {name} state; pass "
                                  f"{name}=None to load only the model")
    model_backup = {k: np.array(asnumpy(v), copy=True) for k, v in model.state_dict().items()}
    optim_backup = _host_copy(optimizer.state_dict()) if optimizer is not None else None
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if restore_rng and "rng" in state:
            set_rng_state(state["rng"])  # all or nothing; a damaged state raises
    except (ValueError, TypeError, KeyError) as exc:
        model.load_state_dict(model_backup)
        if optimizer is not None:
            optimizer.load_state_dict(optim_backup)
        raise CheckpointError(f"{path}: the checkpoint does not fit: {exc}") from exc
    if loader is not None and "loader" in state:
        loader.load_state_dict(state["loader"])
    return state


def _host_copy(value):
    from tensornet.backends import asnumpy

    if isinstance(value, dict):
        return {k: _host_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(v) for v in value)
    if _is_array(value):
        return np.array(asnumpy(value), copy=True)
    return value
