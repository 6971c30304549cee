"""Saving and loading: nested state dicts as checksummed safetensors files, never pickle.

``save(obj, path)`` takes nested dicts/lists/tuples whose leaves are arrays (any device),
numbers, strings, booleans or None. Arrays become safetensors tensors named by their path
(``model/0.weight``, ``optimizer/state/0/exp_avg``); everything else, and the nesting
itself, goes into the file's JSON metadata together with a SHA-256 of every tensor and of
the metadata. Any safetensors reader can open the tensors; ``load(path)`` verifies the
checksums and rebuilds the nested object with NumPy arrays.

- ``store``: the file format (encode/decode the nesting, checksums, save/load);
- ``reader``: bounded, hostile-proof reading of any safetensors file (via ``safe_open``);
- ``atomic``: crash-safe writes (temp file + rename, stale temp files removed, mode kept);
- ``checkpoint``: training checkpoints restored all-or-nothing.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import CheckpointError
from .store import FORMAT, FORMAT_VERSION, load, save

__all__ = ["save", "load", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "FORMAT", "FORMAT_VERSION"]
