"""Dataset files are what they claim to be: label dtype and range, root= that exists,
SHA-256 against the official digests with the verdict cached by (path, size, mtime, ctime)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import tensornet as tn
from tensornet.data import DatasetError, DatasetNotFoundError, datasets, integrity, write_idx

from fake_datasets import isolate, register_as_official, write_fake_idx_folder

NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    return isolate(tmp_path, monkeypatch)


@pytest.mark.parametrize("labels, needle", [
    (np.resize(np.array([0, 1, -1], np.int8), 50), "labels must be uint8 (IDX type 0x08), the file holds "
                                          "int8"),
    (np.resize(np.array([0.0, 0.5, 1.0], np.float32), 50), "labels must be uint8"),
    (np.resize(np.array([0, 1, 10], np.uint8), 50), r"labels must be in [0, 9], found 10"),
])
def test_label_dtype_and_range_are_checked(isolated, labels, needle):
    folder = isolated / "data"
    write_fake_idx_folder(folder)
    write_idx(folder / NAMES["train"][1], labels)
    with pytest.raises(DatasetError) as info:
        tn.data.fashion_mnist("train", root=folder, verify=False)
    assert str(folder / NAMES["train"][1]) in str(info.value) and needle in str(info.value)


def test_root_naming_a_missing_folder_is_an_error(isolated):
    write_fake_idx_folder(isolated / "system" / "fashion-mnist")   # a copy the look-up could fall back to
    assert datasets.find(datasets.FASHION_MNIST) == isolated / "system" / "fashion-mnist"
    with pytest.raises(DatasetNotFoundError, match=r"root='.*typo' is not an existing folder"):
        tn.data.fashion_mnist("test", root=isolated / "typo")


def test_local_files_are_verified_once_and_the_verdict_cached(isolated, monkeypatch):
    folder = isolated / "data"
    write_fake_idx_folder(folder, compress=False)
    register_as_official(monkeypatch, folder)
    hashed = []
    real = integrity.matching_digest
    monkeypatch.setattr(integrity, "matching_digest",
                        lambda raw, *a: hashed.append(len(raw)) or real(raw, *a))

    def fresh_load():   # as a new process would: no in-memory cache
        datasets._read_pair_cached.cache_clear()
        return tn.data.fashion_mnist("train", root=folder)

    x, y = fresh_load()
    assert len(hashed) == 2                        # images and labels, hashed once
    assert (isolated / "cache" / "tensornet" / integrity.VERDICTS_FILE).is_file()
    np.testing.assert_array_equal(fresh_load()[1], y)
    assert len(hashed) == 2                        # unchanged files: not hashed again

    labels_path = folder / NAMES["train"][1]
    before = os.stat(labels_path)
    relabelled = y.astype(np.uint8).copy()
    relabelled[[0, 1]] = (relabelled[[0, 1]] + 1) % 10
    write_idx(labels_path, relabelled, compress=False)     # same size ...
    os.utime(labels_path, ns=(before.st_atime_ns, before.st_mtime_ns))   # ... and mtime
    assert os.stat(labels_path).st_size == before.st_size
    with pytest.raises(DatasetError, match=rf"{labels_path}: not the official Fashion-MNIST "
                                           r"file: its SHA-256"):
        fresh_load()
    assert len(hashed) == 3                        # the changed file was hashed again


def test_an_unofficial_file_is_refused_unless_verify_false(isolated):
    folder = isolated / "data"
    write_fake_idx_folder(folder)
    with pytest.raises(DatasetError, match="pass verify=False to load your own files"):
        tn.data.fashion_mnist("test", root=folder)
    x, y = tn.data.fashion_mnist("test", root=folder, verify=False)
    assert x.shape == (20, 1, 28, 28)
    assert datasets.MNIST.files["test_labels"].idx is None   # only the .gz digest to match
    with pytest.raises(DatasetError, match="not the official MNIST file"):
        tn.data.mnist("test", root=folder)


def test_a_folder_missing_some_files_is_named_with_what_it_lacks(isolated):
    folder = isolated / "data"
    write_fake_idx_folder(folder)
    (folder / NAMES["test"][1]).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        tn.data.fashion_mnist("test", root=folder, download=False)
    message = str(info.value)
    assert f"{folder} (root=): has 3 of the 4 files; missing {NAMES['test'][1]}" in message
    assert f"{folder / 'fashion-mnist'} (root=): no such folder" in message


def test_split_must_be_a_string(isolated):
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got \['train'\]"):
        tn.data.mnist(["train"], download=False)   # was "unhashable type: 'list'"
