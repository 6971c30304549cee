"""Are these the official dataset files? SHA-256 checks, with the verdict remembered.

A file matches when the SHA-256 of its bytes equals the official ``.gz`` digest, or the
SHA-256 of its decompressed IDX content equals the content digest (Debian recompressed the
files, so their ``.gz`` bytes differ while the content is identical).

A local file is hashed once: a match is remembered in ``<cache_dir>/verified-files.json``
under its absolute path with its size, mtime and ctime, and later runs skip the hashing
while all three are unchanged. Rewriting, relabelling or replacing the file changes them
(``touch`` can set the mtime back, not the ctime), so an altered file is hashed again and
caught. The cache is best effort: when it cannot be read or written, files are hashed
every time.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

VERDICTS_FILE = "verified-files.json"


def matching_digest(raw: bytes, content: bytes, spec_file) -> str | None:
    """The official digest that ``raw`` (the file's bytes) or ``content`` (its decompressed
    bytes) matches, else None."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest == spec_file.gz:
        return digest
    if spec_file.idx is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest == spec_file.idx:
            return digest
    return None


def is_verified(path: str, spec_file) -> bool:
    """Whether ``path`` was found official before and has not changed since."""
    entry = _load_verdicts().get(os.path.abspath(path))
    return (isinstance(entry, dict) and entry.get("stamp") == file_stamp(path)
            and entry.get("sha256") in (spec_file.gz, spec_file.idx))


def remember_verified(path: str, digest: str) -> None:
    from tensornet.io import CheckpointError
    from tensornet.io.atomic import atomic_write

    verdicts = _load_verdicts()
    verdicts[os.path.abspath(path)] = {"stamp": file_stamp(path), "sha256": digest}
    try:
        atomic_write(_verdicts_path(), json.dumps(verdicts, indent=0).encode())
    except (CheckpointError, OSError):
        pass  # a read-only cache: the file is simply hashed again next time


def file_stamp(path: str) -> list[int]:
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _verdicts_path() -> Path:
    from .datasets import cache_dir

    return cache_dir() / VERDICTS_FILE


def _load_verdicts() -> dict:
    try:
        verdicts = json.loads(_verdicts_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return verdicts if isinstance(verdicts, dict) else {}
