"""Building and taking apart safetensors files byte by byte, for the hostile-file tests."""
from __future__ import annotations

import json

from tensornet.io.store import metadata_sha256


def pack(header, data: bytes = b"") -> bytes:
    """A safetensors file: 8-byte little-endian header length, header (dict or raw bytes),
    data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def unpack(blob: bytes) -> tuple[dict, bytes]:
    """``(header dict, data bytes)`` of a well-formed safetensors file."""
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + size]), blob[8 + size:]


def with_metadata(blob: bytes, **changes) -> bytes:
    """``blob`` with metadata entries changed and its metadata checksum recomputed, i.e. a
    file that passes verification but says something else (what a forger would write)."""
    header, data = unpack(blob)
    meta = {**header["__metadata__"], **changes}
    meta["metadata_sha256"] = metadata_sha256(meta)
    header["__metadata__"] = meta
    return pack(header, data)
