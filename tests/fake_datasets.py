"""Helpers for tests that stand small fake IDX files in for the real datasets."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from tensornet.data import datasets, write_idx


def write_fake_idx_folder(folder: Path, n_train=50, n_test=20, seed=0, compress=True) -> dict:
    """Four small, valid IDX files named like the real ones; ``{split: (images, labels)}``.

    ``compress=False`` writes raw IDX under the ``.gz`` names (the reader tells them by their
    magic bytes), so rewriting a file keeps its exact size."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels, compress)
        arrays[split] = (images, labels)
    return arrays


def isolate(tmp_path: Path, monkeypatch) -> Path:
    """No real dataset anywhere: empty cache and system folder, 50/20-sample splits, mirrors
    that refuse at once."""
    monkeypatch.delenv("TENSORNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(datasets, "SPLIT_SIZES", {"train": 50, "test": 20})
    refuse = dataclasses.replace(datasets.FASHION_MNIST, mirrors=("http://127.0.0.1:9/",))
    monkeypatch.setattr(datasets, "FASHION_MNIST", refuse)
    return tmp_path


def register_as_official(monkeypatch, folder: Path, spec: str = "FASHION_MNIST") -> None:
    """Make the files in ``folder`` count as the official ones: their SHA-256 become the
    known digests of ``datasets.<spec>``, so loading them passes verification."""
    original = getattr(datasets, spec)
    files = {key: dataclasses.replace(
        f, gz=hashlib.sha256((folder / f.name).read_bytes()).hexdigest(), idx=None)
        for key, f in original.files.items()}
    monkeypatch.setattr(datasets, spec, dataclasses.replace(original, files=files))
