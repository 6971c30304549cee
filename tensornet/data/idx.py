"""Reading IDX files (the MNIST family's format), gzip-compressed or raw.

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, ``ndim`` big-endian
int32 dimensions, then the values in C order. Every check happens before an array is
returned, so a damaged file gives an error naming it and never a half-loaded array.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

# type code -> big-endian dtype (the IDX specification)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(RuntimeError):
    """A dataset file is missing, damaged or not the file it should be."""


def read_idx_bytes(path) -> bytes:
    """The bytes of an IDX file, decompressed when it is gzip (told by its magic bytes)."""
    return decompress(read_file_bytes(path), path)


def read_file_bytes(path) -> bytes:
    """The file's bytes as stored (still compressed), or DatasetError naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DatasetError(f"{os.fspath(path)}: cannot read the file ({exc})") from exc


def decompress(data: bytes, path) -> bytes:
    """``data`` gunzipped when it starts with gzip's magic bytes, else unchanged."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{os.fspath(path)}: the gzip stream is truncated or corrupted "
                           f"({exc}); delete the file and download it again") from exc


def parse_idx(data: bytes, path="<bytes>", ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a NumPy array (native byte order, a fresh writable copy).

    ``ndim`` (3 for images, 1 for labels) is checked against the header when given.
    """
    if len(data) < 4:
        raise DatasetError(f"{path}: {len(data)} bytes is too short for an IDX file")
    zero1, zero2, code, dims = data[0], data[1], data[2], data[3]
    if zero1 or zero2 or code not in _IDX_TYPES or dims == 0:
        raise DatasetError(f"{path}: bad magic number 0x{data[:4].hex()}; not an IDX file "
                           f"(expected 0x0000 then a type code and the number of dimensions)")
    if ndim is not None and dims != ndim:
        raise DatasetError(f"{path}: holds a {dims}-dimensional array; expected {ndim} "
                           f"dimensions (images have 3, labels 1)")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DatasetError(f"{path}: truncated inside the header ({len(data)} bytes)")
    shape = struct.unpack(f">{dims}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    count = 1
    for d in shape:
        count *= d
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {what}: the header promises shape {shape} "
                           f"({expected} bytes) but the file holds {len(data)} bytes")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a NumPy array."""
    return parse_idx(read_idx_bytes(path), os.fspath(path), ndim)


def write_idx(path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file.

    Used to build small test fixtures; gzip-compressed when ``path`` ends in ``.gz``.
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("=").str: k for k, v in _IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str
    if key not in codes:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX type code")
    code = codes[key]
    payload = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
               + array.astype(_IDX_TYPES[code]).tobytes())
    path = os.fspath(path)
    compress = path.endswith(".gz") if compress is None else compress
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(payload)
