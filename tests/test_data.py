"""Data: IDX reading and damage detection, dataset look-up and download, splits, DataLoader,
transforms and toy sets. No test touches the network: downloads come from a local server."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import asnumpy, get_backend
from tensornet.data import (ArrayDataset, DataLoader, DatasetError, DatasetNotFoundError,
                            Normalize, random_split, read_idx, write_idx)
from tensornet.data import datasets

from fake_datasets import isolate, write_fake_idx_folder

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(not (DEBIAN / "t10k-labels-idx1-ubyte.gz").is_file(),
                                  reason="Debian package dataset-fashion-mnist not installed")


# ---------------------------------------------------------------------- fixtures
_fake_idx_folder = write_fake_idx_folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    return isolate(tmp_path, monkeypatch)


# ---------------------------------------------------------------------- IDX
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32"])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype) if dtype != "uint8" \
        else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated-gz":
        path.write_bytes(data[: len(data) // 2])
    elif how == "corrupted-gz":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64])
                         + data[middle + 64:])
    elif how == "bad-magic":
        raw = gzip.decompress(data)
        path.write_bytes(gzip.compress(b"\x12\x34" + raw[2:]))
    elif how == "short-payload":
        raw = gzip.decompress(data)
        path.write_bytes(gzip.compress(raw[:-100]))
    elif how == "trailing-bytes":
        path.write_bytes(gzip.compress(gzip.decompress(data) + b"\0" * 10))


@pytest.mark.parametrize("how", ["truncated-gz", "corrupted-gz", "bad-magic", "short-payload",
                                 "trailing-bytes"])
def test_damaged_file_names_the_file(isolated, how):
    folder = isolated / "data"
    _fake_idx_folder(folder)
    victim = folder / "train-images-idx3-ubyte.gz"
    _damage(victim, how)
    with pytest.raises(DatasetError) as info:
        tn.data.fashion_mnist("train", root=folder)
    assert str(victim) in str(info.value)
    assert not isinstance(info.value, DatasetNotFoundError)


def test_counts_and_labels_are_checked(isolated):
    folder = isolated / "data"
    _fake_idx_folder(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(49, np.uint8))
    with pytest.raises(DatasetError, match="49 labels but .* 50 images"):
        tn.data.fashion_mnist("train", root=folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(50, 10, np.uint8))
    with pytest.raises(DatasetError, match=r"labels must be in \[0, 9\]"):
        tn.data.fashion_mnist("train", root=folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros((50, 1, 1), np.uint8))
    with pytest.raises(DatasetError, match="expected 1 dimensions"):
        tn.data.fashion_mnist("train", root=folder)


def test_fake_dataset_loads_scaled(isolated):
    folder = isolated / "data"
    arrays = _fake_idx_folder(folder)
    x, y = tn.data.fashion_mnist("train", root=folder, verify=False)   # not the official files
    assert x.shape == (50, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0], arrays["train"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, arrays["train"][1])
    xt, yt = tn.data.mnist("test", root=folder, verify=False)
    assert xt.shape == (20, 1, 28, 28)
    with pytest.raises(ValueError, match="split"):
        tn.data.fashion_mnist("valid", root=folder)


# ---------------------------------------------------------------------- look-up order
def test_lookup_order(isolated, monkeypatch):
    env, explicit = isolated / "env", isolated / "explicit"
    cache = isolated / "cache" / "tensornet" / "fashion-mnist"
    system = isolated / "system" / "fashion-mnist"
    for i, folder in enumerate((env / "fashion-mnist", explicit, cache, system)):
        _fake_idx_folder(folder, seed=i)
    find = functools.partial(datasets.find, datasets.FASHION_MNIST, download=False)
    assert find() == cache                       # the user cache before the Debian folder
    shutil.rmtree(cache)
    assert find() == system
    monkeypatch.setenv("TENSORNET_DATA", str(env))
    assert find() == env / "fashion-mnist"        # $TENSORNET_DATA/<name> works too
    assert find(root=explicit) == explicit        # root= beats $TENSORNET_DATA


def test_offline_and_nowhere_lists_places_and_remedies(isolated, monkeypatch):
    monkeypatch.setenv("TENSORNET_DATA", str(isolated / "nothing-here"))
    with pytest.raises(DatasetNotFoundError) as info:
        tn.data.fashion_mnist()
    message = str(info.value)
    for needle in ("nothing-here", str(isolated / "cache" / "tensornet" / "fashion-mnist"),
                   str(isolated / "system" / "fashion-mnist"), "127.0.0.1:9",
                   "apt-get install dataset-fashion-mnist", "TENSORNET_DATA"):
        assert needle in message
    assert not list((isolated / "cache").rglob("*.part"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@needs_debian
def test_download_verifies_sha256(isolated, monkeypatch, file_server):
    """The Debian files were recompressed: their .gz hash differs from the official one but
    their content hash matches, so a mirror serving them is accepted; a wrong file is not."""
    served, url = file_server
    spec = dataclasses.replace(datasets.FASHION_MNIST, mirrors=(url,))
    monkeypatch.setattr(datasets, "FASHION_MNIST", spec)
    cache = isolated / "cache" / "tensornet" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        os.symlink(DEBIAN / name, cache / name)   # only the small label files get downloaded
    (served / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    shutil.copy(DEBIAN / "t10k-labels-idx1-ubyte.gz", served)
    with pytest.raises(DatasetNotFoundError, match="SHA-256 mismatch"):
        datasets.find(spec)
    # nothing half-downloaded or unverified is left in the cache
    assert sorted(p.name for p in cache.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"]
    shutil.copy(DEBIAN / "train-labels-idx1-ubyte.gz", served)
    assert datasets.find(spec) == cache
    monkeypatch.setattr(datasets, "SPLIT_SIZES", {"train": 60000, "test": 10000})
    _, y = tn.data.fashion_mnist("test")
    assert np.bincount(y).tolist() == [1000] * 10


@needs_debian
def test_real_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))   # the verdict cache goes here
    x, y = tn.data.fashion_mnist("test", root=DEBIAN)      # verified against the digests
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 == x.min() and x.max() == 1.0
    assert np.bincount(y).tolist() == [1000] * 10


# ---------------------------------------------------------------------- splits
def test_random_split_partitions():
    ds = ArrayDataset(np.arange(103, dtype=np.float32)[:, None], np.arange(103))
    a, b = random_split(ds, [0.8, 0.2], seed=3)
    assert (len(a), len(b)) == (83, 20)
    ids = np.concatenate([a[np.arange(len(a))][1], b[np.arange(len(b))][1]])
    assert sorted(ids.tolist()) == list(range(103))
    a2, _ = random_split(ds, [0.8, 0.2], seed=3)
    np.testing.assert_array_equal(a.indices, a2.indices)
    assert not np.array_equal(a.indices, random_split(ds, [0.8, 0.2], seed=4)[0].indices)
    assert [len(p) for p in random_split(ds, [50, 53], seed=0)] == [50, 53]
    with pytest.raises(ValueError, match="sum"):
        random_split(ds, [50, 50])
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(ds, [0.5, 0.6])


# ---------------------------------------------------------------------- DataLoader
def _ids(loader):
    return [asnumpy(yb).tolist() for _, yb in loader]


@pytest.mark.parametrize("resident", [None, False])
def test_loader_covers_every_sample_once(device, resident):
    n, bs = 103, 10
    ds = ArrayDataset(np.arange(n, dtype=np.float32)[:, None].repeat(3, 1), np.arange(n))
    loader = DataLoader(ds, bs, shuffle=True, seed=1, device=device, resident=resident)
    assert len(loader) == 11
    backend = get_backend(device)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert all(backend.owns(xb) and backend.owns(yb) for xb, yb in batches)
        assert [int(yb.shape[0]) for _, yb in batches] == [10] * 10 + [3]
        for xb, yb in batches:  # inputs travel with their labels
            np.testing.assert_array_equal(asnumpy(xb)[:, 0], asnumpy(yb))
        ids = np.concatenate([asnumpy(yb) for _, yb in batches])
        assert sorted(ids.tolist()) == list(range(n))
        epochs.append(ids)
    assert not np.array_equal(epochs[0], epochs[1])     # a new order each epoch


def test_loader_drop_last_and_no_shuffle(device):
    ds = ArrayDataset(np.zeros((103, 2), np.float32), np.arange(103))
    loader = DataLoader(ds, 10, drop_last=True, device=device)
    assert len(loader) == 10 and loader.num_samples == 100
    assert np.concatenate(_ids(loader)).tolist() == list(range(100))
    shuffled = DataLoader(ds, 10, shuffle=True, drop_last=True, seed=0, device=device)
    ids = np.concatenate(_ids(shuffled))
    assert len(ids) == 100 and len(set(ids.tolist())) == 100
    with pytest.raises(ValueError, match="no batches"):
        DataLoader(ds, 200, drop_last=True)


def test_loader_seed_reproducible_and_same_on_every_path(device):
    ds = ArrayDataset(np.zeros((50, 1), np.float32), np.arange(50))
    runs = [_ids(DataLoader(ds, 7, shuffle=True, seed=5, device=dev, resident=res))
            for dev, res in ((device, None), (device, False), ("cpu", None))]
    assert runs[0] == runs[1] == runs[2]
    assert _ids(DataLoader(ds, 7, shuffle=True, seed=6)) != runs[0]


def test_unseeded_shuffle_follows_manual_seed():
    ds = ArrayDataset(np.zeros((50, 1), np.float32), np.arange(50))
    tn.manual_seed(11)
    first = _ids(DataLoader(ds, 8, shuffle=True))
    tn.manual_seed(11)
    assert _ids(DataLoader(ds, 8, shuffle=True)) == first


def test_loader_resident_copy_made_once(device):
    ds = random_split(ArrayDataset(np.arange(40, dtype=np.float32)[:, None]), [0.5, 0.5],
                      seed=0)[0]
    loader = DataLoader(ds, 8, shuffle=True, seed=0, device=device)
    list(loader)
    resident = loader._on_device
    assert resident is not None and resident[1] is None     # y=None: the input is its target
    list(loader)
    assert loader._on_device is resident
    for xb, yb in loader:
        assert yb is xb


def test_loader_streams_when_the_device_is_short_of_memory(monkeypatch):
    x = np.arange(80, dtype=np.float32).reshape(40, 2)  # 320 bytes + 320 of labels
    loader = DataLoader(ArrayDataset(x, np.arange(40)), 8, shuffle=True, seed=0)
    monkeypatch.setattr(loader.backend, "memory_info", lambda: {"device_free": 500})
    streamed = _ids(loader)
    assert loader._on_device is None and loader.resident is False
    resident = DataLoader(ArrayDataset(x, np.arange(40)), 8, shuffle=True, seed=0)
    monkeypatch.setattr(resident.backend, "memory_info", lambda: {"device_free": 2000})
    assert _ids(resident) == streamed and resident._on_device is not None


def test_loader_rejects_bad_arguments():
    ds = ArrayDataset(np.zeros((5, 1), np.float32), np.zeros(5, np.int64))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            DataLoader(ds, bad)
    with pytest.raises(ValueError, match="same length"):
        ArrayDataset(np.zeros((5, 1)), np.zeros(4))


# ---------------------------------------------------------------------- transforms, toys
def test_normalize_per_channel(device, rng):
    x = rng.normal(3.0, 2.0, (6, 3, 4, 4)).astype(np.float32)
    norm = Normalize.from_data(x, per_channel=True)
    backend = get_backend(device)
    out = norm(backend.asarray(x))
    assert backend.owns(out) and asnumpy(out).dtype == np.float32
    expected = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(asnumpy(out), expected, rtol=1e-5, atol=1e-5)
    scalar = Normalize(0.5, 0.25)(backend.asarray(x))
    np.testing.assert_allclose(asnumpy(scalar), (x - 0.5) * 4.0, rtol=1e-6)
    with pytest.raises(ValueError, match="3 channels"):
        norm(backend.asarray(x[:, :2]))
    with pytest.raises(ValueError, match="positive"):
        Normalize(0.0, 0.0)


def test_normalize_as_loader_transform():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    loader = DataLoader(ArrayDataset(x, np.zeros(6, np.int64)), 4, transform=Normalize(1.0, 2.0))
    np.testing.assert_allclose(np.concatenate([xb for xb, _ in loader]), (x - 1.0) / 2.0)


@pytest.mark.parametrize("make", [tn.data.toy_spirals, tn.data.toy_blobs])
def test_toy_sets(make):
    x, y = make(n=301, seed=2)
    assert x.shape == (301, 2) and x.dtype == np.float32 and y.dtype == np.int64
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1
    x2, y2 = make(n=301, seed=2)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, make(n=301, seed=3)[0])


def test_normalize_refuses_integer_images_and_bad_constants(device):
    """uint8 images went through with the constants cast to uint8 (mean 0.13 -> 0,
    1 / 0.31 -> 3) and wrapped around: silently wrong inputs (torchvision refuses them)."""
    backend = get_backend(device)
    images = backend.asarray(np.full((2, 1, 4, 4), 200, dtype=np.uint8))
    with pytest.raises(TypeError, match=r"Normalize expects floating-point input, got uint8; "
                                        r"convert it first \(e.g. x.astype\('float32'\) / 255\)"):
        Normalize(0.1307, 0.3081)(images)
    with pytest.raises(ValueError, match="Normalize: mean must be finite"):
        Normalize(float("nan"), 1.0)
    with pytest.raises(ValueError, match=r"Normalize.from_data: x holds no values \(shape "
                                         r"\(0, 3\)\)"):
        Normalize.from_data(np.zeros((0, 3), np.float32))


@pytest.mark.parametrize("dataset", [np.arange(10.0), np.zeros((10, 4)),
                                     (np.zeros((10, 4)), np.zeros(10)), [np.zeros(4)] * 10])
def test_loader_refuses_bare_arrays_and_tuples(dataset):
    """An array's ds[indices] is one array, unpacked into (x, y) along the batch: batch
    size 2 silently yielded (row 0, row 1) as (input, target)."""
    with pytest.raises(TypeError, match=r"DataLoader expects a Dataset .*wrap arrays in "
                                        r"ArrayDataset\(x, y\)"):
        DataLoader(dataset, 2)
