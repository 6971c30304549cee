"""Reading any safetensors file, however damaged or hostile, without surprises.

``read_safetensors(path)`` returns ``(metadata, tensors)`` (NumPy arrays) or raises
``CheckpointError`` naming the file; no other exception type leaves it.

The parsing itself is safetensors' ``safe_open`` (Rust, serde): it rejects malformed
``data_offsets`` (an int, ``[0]``, strings), overlapping, out-of-bounds or gappy ranges,
shapes that do not match their byte ranges, and JSON nested deeper than 128 levels, and it
memory-maps the file instead of reading it whole. Two things it cannot give, hence the small
bounded pre-check of our own before it runs:

- it opens whatever path it is given: a FIFO blocks it forever and a character device
  (``/dev/zero``) is read as if it were a file; we refuse anything but a regular file;
- its header limit is 100 MB and its errors do not name the file; we read only the 8-byte
  length and then at most ``MAX_HEADER_BYTES`` of header, checked against the file size,
  and every message starts with the path.

Dtypes: what NumPy holds is loaded as is (BOOL, U8..U64, I8..I64, F16, F32, F64); BF16
(PyTorch / Hugging Face) becomes float32 exactly, with a warning saying so; anything else
(F8_*, ...) raises "unsupported dtype F8_E4M3 in tensor 'x'".
"""
from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from .errors import CheckpointError

MAX_HEADER_BYTES = 64 << 20   # 64 MiB: ~500,000 tensors' worth of header
NUMPY_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2",
                "U32": "<u4", "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2",
                "F32": "<f4", "F64": "<f8"}


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """``(metadata, {name: np.ndarray})`` of the safetensors file at ``path``."""
    header_size, header = _bounded_header(path)
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="np") as f:
            metadata = dict(f.metadata() or {})
            dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}
            unsupported = [n for n, d in dtypes.items() if d not in NUMPY_DTYPES and d != "BF16"]
            if unsupported:
                name = unsupported[0]
                raise CheckpointError(
                    f"{path}: unsupported dtype {dtypes[name]} in tensor {name!r} (tensornet "
                    f"reads {', '.join(NUMPY_DTYPES)} and BF16, which becomes float32)")
            tensors = {n: f.get_tensor(n) for n, d in dtypes.items() if d in NUMPY_DTYPES}
    except CheckpointError:
        raise
    except Exception as exc:  # SafetensorError, OSError, ...: the file is damaged
        raise CheckpointError(f"{path}: not a valid safetensors file: the header or the "
                              f"tensor data is corrupted or truncated ({exc})") from exc
    bf16 = [n for n, d in dtypes.items() if d == "BF16"]
    if bf16:
        try:
            tensors.update(_read_bf16(path, header_size, header, bf16))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: cannot read its BF16 tensors ({exc})") from exc
        shown = ", ".join(repr(n) for n in bf16[:3]) + (", ..." if len(bf16) > 3 else "")
        warnings.warn(f"{path}: {len(bf16)} BF16 tensor(s) ({shown}) loaded as float32 "
                      f"(exactly: NumPy has no bfloat16)", UserWarning, stacklevel=3)
    return metadata, {n: tensors[n] for n in dtypes}


def _bounded_header(path: Path) -> tuple[int, bytes]:
    """The header's length and bytes, having read nothing else of the file."""
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint "
                              f"({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path}: not a regular file (a folder, device or pipe); a "
                                  f"checkpoint must be a safetensors file")
        size = info.st_size
        if size < 8:
            raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors "
                                  f"file (truncated?)")
        header_size = int.from_bytes(_read_exactly(fd, 8), "little")
        if header_size > min(MAX_HEADER_BYTES, size - 8):
            limit = "the file holds" if header_size > size - 8 else "the limit is"
            raise CheckpointError(
                f"{path}: not a safetensors file, or truncated: the header claims "
                f"{header_size} bytes but {limit} "
                f"{size - 8 if header_size > size - 8 else MAX_HEADER_BYTES}")
        header = _read_exactly(fd, header_size)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc})") from exc
    finally:
        os.close(fd)
    if not header.lstrip(b" ").startswith(b"{"):
        raise CheckpointError(f"{path}: not a safetensors file: the header is not a JSON "
                              f"object")
    return header_size, header


def _read_exactly(fd: int, count: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = os.read(fd, min(count, 1 << 24))
        if not chunk:
            raise OSError("unexpected end of file")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_bf16(path: Path, header_size: int, header: bytes, names: list) -> dict:
    """BF16 tensors as float32: a bfloat16 is the upper half of a float32's bits."""
    # safe_open has validated this header (offsets in bounds, shapes consistent, depth
    # <= 128), so Python's parser meets only a well-formed object here.
    entries = json.loads(header)
    out = {}
    with open(path, "rb") as f:
        for name in names:
            start, stop = entries[name]["data_offsets"]
            f.seek(8 + header_size + start)
            raw = f.read(stop - start)
            if len(raw) != stop - start:
                raise CheckpointError(f"{path}: truncated inside tensor {name!r}")
            halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
            out[name] = (halves << 16).view(np.float32).reshape(entries[name]["shape"])
    return out
