"""tensornet's checkpoint format: nested objects in a safetensors file, checksummed.

A file written by ``save`` is a plain safetensors file whose ``__metadata__`` holds:

- ``format`` ``"tensornet"``, ``format_version`` ``"2"``;
- ``structure``: the nesting as JSON, arrays replaced by ``{"__tensor__": name}`` (0-d NumPy
  scalars ``{"__scalar__": name}``, tuples ``{"__tuple__": [...]}``, dicts whose keys are
  not plain strings ``{"__dict__": [[key, value], ...]}``);
- ``tensor_sha256``: JSON ``{name: SHA-256}`` of every tensor's dtype, shape and bytes;
- ``metadata_sha256``: the SHA-256 of all the other metadata entries.

``load`` checks every one of them, so a flipped bit anywhere in the file (data, shapes,
dtypes, offsets, metadata) raises ``CheckpointError`` naming the file (and the tensor,
when it is a tensor's bytes), instead of loading something else. Version-1 files (tensornet
before checksums) and safetensors files from other tools carry no checksums: they load as
they are, the latter as a flat ``{name: array}`` dict.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import CheckpointError

FORMAT = "tensornet"
FORMAT_VERSION = "2"
MAX_DEPTH = 100          # nesting levels save writes and load accepts
_MARKERS = ("__tensor__", "__scalar__", "__tuple__", "__dict__")
_CHECKSUM_KEYS = ("tensor_sha256", "metadata_sha256")
_DICT_KEY_TYPES = (str, int, bool, type(None))


class _Malformed(Exception):
    """The structure metadata does not describe a valid object (reported as CheckpointError)."""


# ---------------------------------------------------------------------- save / load
def save(obj, path) -> None:
    """Write ``obj`` (nested dicts/lists of arrays and plain values) to ``path`` (safetensors).

    Atomic: a crash or a full disk leaves any previous file at ``path`` intact (see
    ``tensornet.io.atomic``); write failures raise ``CheckpointError`` naming the file.
    """
    from safetensors.numpy import save as st_save

    from .atomic import atomic_write

    tensors: dict[str, np.ndarray] = {}
    structure = _encode(obj, "", tensors, 0)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "structure": json.dumps(structure, allow_nan=True),
                "tensor_sha256": json.dumps({name: tensor_sha256(array)
                                             for name, array in tensors.items()},
                                            sort_keys=True)}
    metadata["metadata_sha256"] = metadata_sha256(metadata)
    atomic_write(Path(path), st_save(tensors, metadata=metadata))


def load(path):
    """Read a file written by ``save`` (arrays come back as NumPy arrays on the host).

    A plain safetensors file (e.g. from another framework) loads as a flat
    ``{name: array}`` dict. Raises ``CheckpointError`` naming the file when it is
    truncated, corrupted, fails its checksums or is not safetensors.
    """
    from .reader import read_safetensors

    path = Path(path)
    metadata, tensors = read_safetensors(path)
    version = _format_version(metadata, path)
    if version is None:
        return tensors
    if version == "2":
        _verify(metadata, tensors, path)
    try:
        structure = json.loads(metadata["structure"])
        return _decode(structure, tensors, 0)
    except (KeyError, TypeError, ValueError, RecursionError, _Malformed) as exc:
        raise CheckpointError(f"{path}: the checkpoint's structure metadata is damaged "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


def tensor_sha256(array) -> str:
    """SHA-256 of an array's dtype, shape and little-endian bytes."""
    array = np.asarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    digest = hashlib.sha256(json.dumps([little.dtype.str, list(array.shape)]).encode())
    digest.update(np.ascontiguousarray(little).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def metadata_sha256(metadata: dict) -> str:
    """SHA-256 of every metadata entry but ``metadata_sha256`` itself, in a canonical form."""
    entries = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _format_version(metadata: dict, path: Path) -> str | None:
    """``"1"`` or ``"2"`` for tensornet files, ``None`` for other tools' files."""
    ours = metadata.get("format") == FORMAT
    if not ours and not any(k in metadata for k in _CHECKSUM_KEYS):
        return None
    version = metadata.get("format_version")
    if not ours:
        raise CheckpointError(f"{path}: the checkpoint's metadata is damaged: it carries "
                              f"tensornet checksums but its format is "
                              f"{metadata.get('format')!r}")
    if version == "1" and not any(k in metadata for k in _CHECKSUM_KEYS):
        return "1"
    if version == "2":
        missing = [k for k in ("structure", *_CHECKSUM_KEYS) if k not in metadata]
        if missing:
            raise CheckpointError(f"{path}: the checkpoint's metadata is damaged: "
                                  f"{', '.join(missing)} missing")
        return "2"
    raise CheckpointError(f"{path}: format version {version!r} is not one this tensornet "
                          f"reads (1, 2): the file is damaged or was written by a newer "
                          f"tensornet")


def _verify(metadata: dict, tensors: dict, path: Path) -> None:
    if metadata_sha256(metadata) != metadata["metadata_sha256"]:
        raise CheckpointError(f"{path}: the checkpoint's metadata is damaged: its SHA-256 "
                              f"does not match (a flipped bit or an edited header)")
    try:   # covered by the digest just checked, so only a forged file fails here
        sums = json.loads(metadata["tensor_sha256"])
    except (ValueError, RecursionError):
        sums = None
    if not isinstance(sums, dict) or set(sums) != set(tensors):
        raise CheckpointError(f"{path}: the checkpoint's tensors do not match its checksum "
                              f"table (tensors were added, removed or renamed)")
    for name, array in tensors.items():
        if tensor_sha256(array) != sums[name]:
            raise CheckpointError(f"{path}: tensor {name!r} is damaged: its SHA-256 does not "
                                  f"match the one stored when it was saved")


# ---------------------------------------------------------------------- nesting <-> JSON
def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic)


def _tensor_name(prefix: str, tensors: dict) -> str:
    name = prefix or "value"
    unique, i = name, 1
    while unique in tensors:
        unique, i = f"{name}#{i}", i + 1
    return unique


def _store_array(array: np.ndarray, prefix: str, tensors: dict) -> str:
    from .reader import NUMPY_DTYPES

    if array.dtype.newbyteorder("<").str not in NUMPY_DTYPES.values():
        raise TypeError(f"tn.save: the array at {prefix or 'the top level'} has dtype "
                        f"{array.dtype}, which safetensors cannot store (bool, integers, "
                        f"float16/32/64)")
    name = _tensor_name(prefix, tensors)
    tensors[name] = array
    return name


def _encode(value, prefix: str, tensors: dict, depth: int):
    from tensornet.backends import asnumpy
    from tensornet.nn.parameter import Parameter

    if depth > MAX_DEPTH:
        raise ValueError(f"tn.save: the object is nested more than {MAX_DEPTH} levels deep "
                         f"(at {prefix[:200]})")
    if isinstance(value, Parameter):
        value = value.data
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return {"__scalar__": _store_array(np.asarray(value, order="C"), prefix, tensors)}
    if _is_array(value):
        # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
        return {"__tensor__": _store_array(np.asarray(asnumpy(value), order="C"), prefix,
                                           tensors)}
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and "/" not in k for k in value) \
            and not any(k in _MARKERS for k in value)
        if plain:
            return {k: _encode(v, f"{prefix}/{k}" if prefix else k, tensors, depth + 1)
                    for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, _DICT_KEY_TYPES):
                raise TypeError(f"tn.save: dict keys must be str or int, got "
                                f"{type(k).__name__} at {prefix or 'the top level'}")
            items.append([k, _encode(v, f"{prefix}/{k}" if prefix else str(k), tensors,
                                     depth + 1)])
        return {"__dict__": items}
    if isinstance(value, (list, tuple)):
        encoded = [_encode(v, f"{prefix}/{i}" if prefix else str(i), tensors, depth + 1)
                   for i, v in enumerate(value)]
        return {"__tuple__": encoded} if isinstance(value, tuple) else encoded
    raise TypeError(f"tn.save cannot store a {type(value).__name__} (at "
                    f"{prefix or 'the top level'}); only dicts, lists, tuples, arrays, numbers, "
                    f"strings, booleans and None (tensornet never pickles)")


def _decode(node, tensors: dict, depth: int):
    """The object ``node`` (parsed structure JSON) describes; ``_Malformed`` if none."""
    if depth > MAX_DEPTH:
        raise _Malformed(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, list):
        return [_decode(v, tensors, depth + 1) for v in node]
    if not isinstance(node, dict):
        return node
    marker = next((k for k in _MARKERS if k in node), None)
    if marker is None:
        return {k: _decode(v, tensors, depth + 1) for k, v in node.items()}
    if len(node) != 1:
        raise _Malformed(f"a {marker} entry with other keys")
    body = node[marker]
    if marker in ("__tensor__", "__scalar__"):
        if not isinstance(body, str) or body not in tensors:
            raise _Malformed(f"it refers to a tensor {str(body)[:100]!r} the file does not hold")
        if marker == "__tensor__":
            return tensors[body]
        if tensors[body].ndim != 0:
            raise _Malformed(f"scalar {body!r} has shape {tensors[body].shape}")
        return tensors[body][()]
    if not isinstance(body, list):
        raise _Malformed(f"a {marker} entry that is not a list")
    if marker == "__tuple__":
        return tuple(_decode(v, tensors, depth + 1) for v in body)
    if not all(isinstance(i, list) and len(i) == 2 and isinstance(i[0], _DICT_KEY_TYPES)
               for i in body):
        raise _Malformed("a __dict__ entry that is not a list of [key, value] pairs")
    return {k: _decode(v, tensors, depth + 1) for k, v in body}
