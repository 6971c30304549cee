"""Fashion-MNIST and MNIST: find the IDX files locally, or download and verify them.

Look-up order (the first folder holding all four files wins):

1. ``root=`` if given, else ``$TENSORNET_DATA`` (the folder itself or its ``<name>/`` subfolder);
2. the user cache ``$XDG_CACHE_HOME/tensornet/<name>`` (``~/.cache/tensornet/<name>``);
3. the Debian package folder ``/usr/share/datasets/<name>`` (``apt-get install
   dataset-fashion-mnist`` installs Fashion-MNIST there);
4. otherwise download from the official mirrors into the cache, with a progress bar,
   checking each file's SHA-256 before it is moved into place.

``root=`` must name an existing folder (a typo is an error, not a silent fall-back to
another copy).

Checksums: ``gz`` is the SHA-256 of the official ``.gz`` file (Fashion-MNIST: as served by
zalandoresearch's GitHub repository and S3 bucket; MNIST: the files of the original site,
mirrored on ossci-datasets and cvdf-datasets). ``idx`` is the SHA-256 of the decompressed
IDX bytes, computed from the Debian package's files (Debian recompressed them, so their
``.gz`` bytes differ while the content is identical); a download is accepted when either
matches. Files found locally are checked for structure (magic number, shape, dtype, counts,
every label in ``[0, classes)``) and then, unless ``verify=False``, against the same
digests; the verdict is cached by (path, size, mtime, ctime), see ``integrity``.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import integrity
from .idx import DatasetError, decompress, parse_idx, read_file_bytes, read_idx_bytes


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset is in none of the places searched and could not be downloaded."""


@dataclass(frozen=True)
class _File:
    name: str
    gz: str                  # SHA-256 of the official .gz file
    idx: str | None = None   # SHA-256 of the decompressed IDX bytes


@dataclass(frozen=True)
class _Spec:
    name: str
    title: str
    mirrors: tuple
    files: dict
    classes: tuple
    how_to_get: str


FASHION_MNIST = _Spec(
    name="fashion-mnist", title="Fashion-MNIST",
    mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
             "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    files={
        "train_images": _File("train-images-idx3-ubyte.gz",
                              "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                              "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train_labels": _File("train-labels-idx1-ubyte.gz",
                              "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                              "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test_images": _File("t10k-images-idx3-ubyte.gz",
                             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                             "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test_labels": _File("t10k-labels-idx1-ubyte.gz",
                             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                             "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    how_to_get=("  - Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
                "  - or download the four .gz files from "
                "https://github.com/zalandoresearch/fashion-mnist (data/fashion/) and set "
                "TENSORNET_DATA=<that folder> (or pass root=)"),
)

MNIST = _Spec(
    name="mnist", title="MNIST",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    files={
        "train_images": _File("train-images-idx3-ubyte.gz",
                              "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train_labels": _File("train-labels-idx1-ubyte.gz",
                              "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "test_images": _File("t10k-images-idx3-ubyte.gz",
                             "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "test_labels": _File("t10k-labels-idx1-ubyte.gz",
                             "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    classes=tuple(str(d) for d in range(10)),
    how_to_get=("  - download the four .gz files from "
                "https://ossci-datasets.s3.amazonaws.com/mnist/ and set "
                "TENSORNET_DATA=<that folder> (or pass root=)"),
)

# Module-level so tests can point them elsewhere.
SYSTEM_DIR = Path("/usr/share/datasets")
SPLIT_SIZES = {"train": 60000, "test": 10000}
IMAGE_SHAPE = (28, 28)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tensornet`` (default ``~/.cache/tensornet``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "tensornet"


def fashion_mnist(split: str = "train", root=None, download: bool = True,
                  verify: bool = True):
    """Fashion-MNIST ``(x, y)``: x float32 ``(N, 1, 28, 28)`` in [0, 1], y int64 ``(N,)``.

    ``split`` is ``"train"`` (60,000 images) or ``"test"`` (10,000). See the module
    docstring for where the files are looked for. ``verify=False`` skips the SHA-256 check
    (for your own files in the same format); the structure is checked regardless.
    """
    return _load(FASHION_MNIST, split, root, download, verify)


def mnist(split: str = "train", root=None, download: bool = True, verify: bool = True):
    """MNIST ``(x, y)``: x float32 ``(N, 1, 28, 28)`` in [0, 1], y int64 ``(N,)``."""
    return _load(MNIST, split, root, download, verify)


def find(spec: _Spec, root=None, download: bool = True) -> Path:
    """The folder holding all four files of ``spec``, downloading them when needed."""
    if root is not None and not Path(root).expanduser().is_dir():
        raise DatasetNotFoundError(f"{spec.title}: root={os.fspath(root)!r} is not an existing "
                                   f"folder (pass the folder holding the .gz files, or no root "
                                   f"to search the usual places)")
    searched = []
    for label, folder in _candidates(spec, root):
        missing = [f.name for f in spec.files.values() if not (folder / f.name).is_file()]
        if not missing:
            return folder
        if not folder.is_dir():
            searched.append(f"{folder} ({label}): no such folder")
        elif len(missing) < len(spec.files):  # a partial copy: say which files it lacks
            searched.append(f"{folder} ({label}): has {len(spec.files) - len(missing)} of "
                            f"the {len(spec.files)} files; missing {', '.join(missing)}")
        else:
            searched.append(f"{folder} ({label}): none of the files")
    target = cache_dir() / spec.name
    failures = []
    if download:
        try:
            _download_all(spec, target, failures)
            return target
        except _AllMirrorsFailed:
            pass
    names = ", ".join(f.name for f in spec.files.values())
    tried = ("\ndownloading failed:\n" + "\n".join(f"  - {f}" for f in failures)) \
        if failures else "\ndownloading was turned off (download=False)"
    raise DatasetNotFoundError(
        f"{spec.title} not found. Looked for {names} in:\n"
        + "\n".join(f"  - {s}" for s in searched) + tried
        + f"\nGet the files with one of:\n{spec.how_to_get}")


def _candidates(spec: _Spec, root):
    """(label, folder) pairs in look-up order."""
    if root is not None:
        explicit, label = Path(root).expanduser(), "root="
    elif os.environ.get("TENSORNET_DATA"):
        explicit, label = Path(os.environ["TENSORNET_DATA"]).expanduser(), "$TENSORNET_DATA"
    else:
        explicit = None
    if explicit is not None:
        yield label, explicit
        yield label, explicit / spec.name
    yield "user cache", cache_dir() / spec.name
    yield "Debian package", SYSTEM_DIR / spec.name


def _load(spec: _Spec, split: str, root, download: bool, verify: bool):
    if not isinstance(split, str) or split not in SPLIT_SIZES:
        raise ValueError(f"{spec.title}: split must be 'train' or 'test', got {split!r}")
    folder = find(spec, root, download)
    files = (spec.files[f"{split}_images"], spec.files[f"{split}_labels"])
    images, labels = _read_pair(str(folder / files[0].name), str(folder / files[1].name),
                                SPLIT_SIZES[split], len(spec.classes),
                                (spec.title, *files) if verify else None)
    x = images.reshape(images.shape[0], 1, *IMAGE_SHAPE).astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x, labels.astype(np.int64)


def _read_pair(image_path: str, label_path: str, count: int, num_classes: int, official):
    stat = tuple(tuple(integrity.file_stamp(p)) for p in (image_path, label_path))
    return _read_pair_cached(image_path, label_path, count, num_classes, official, stat)


@functools.lru_cache(maxsize=4)
def _read_pair_cached(image_path, label_path, count, num_classes, official, _stat):
    """Validated uint8 images and labels, kept (read-only) so a second load is instant.

    ``official``: ``(title, images _File, labels _File)`` to check the SHA-256 against, or
    None."""
    raw = {p: read_file_bytes(p) for p in (image_path, label_path)}
    content = {p: decompress(data, p) for p, data in raw.items()}
    images = parse_idx(content[image_path], image_path, ndim=3)
    labels = parse_idx(content[label_path], label_path, ndim=1)
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(f"{image_path}: expected uint8 images of shape (N, 28, 28), got "
                           f"{images.dtype} {images.shape}")
    if images.shape[0] != count:
        raise DatasetError(f"{image_path}: holds {images.shape[0]} images; this split has "
                           f"{count}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(f"{label_path}: holds {labels.shape[0]} labels but "
                           f"{image_path} holds {images.shape[0]} images")
    if labels.dtype != np.uint8:
        raise DatasetError(f"{label_path}: labels must be uint8 (IDX type 0x08), the file "
                           f"holds {labels.dtype}")
    if labels.size and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
        raise DatasetError(f"{label_path}: labels must be in [0, {num_classes - 1}], found "
                           f"{bad}")
    if official is not None:
        title, *files = official
        for path, spec_file in zip((image_path, label_path), files):
            _verify_local(path, raw[path], content[path], spec_file, title)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


# ---------------------------------------------------------------------- downloading
class _AllMirrorsFailed(Exception):
    pass


def _download_all(spec: _Spec, target: Path, failures: list) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for f in spec.files.values():
        if (target / f.name).is_file():
            continue
        for mirror in spec.mirrors:
            url = mirror + f.name
            try:
                _download(url, target / f.name, f)
                break
            except (urllib.error.URLError, OSError, DatasetError) as exc:
                reason = getattr(exc, "reason", None) or exc
                failures.append(f"{url}: {reason}")
        else:
            raise _AllMirrorsFailed()


def _download(url: str, dest: Path, spec_file: _File) -> None:
    """Fetch ``url`` into a temporary file next to ``dest``; verify; move into place."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr,
                      disable=None, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        _verify(tmp, digest.hexdigest(), spec_file, url)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _verify(path: str, gz_sha256: str, spec_file: _File, url: str) -> None:
    if gz_sha256 == spec_file.gz:
        return
    if spec_file.idx is not None:
        content = hashlib.sha256(read_idx_bytes(path)).hexdigest()
        if content == spec_file.idx:
            return
    raise DatasetError(f"{url}: SHA-256 mismatch (got {gz_sha256}, expected {spec_file.gz}); "
                       f"the download is damaged or the mirror serves other files")


def _verify_local(path: str, raw: bytes, content: bytes, spec_file: _File, title: str) -> None:
    """DatasetError unless ``path`` is the official file (hashed once, then remembered)."""
    if integrity.is_verified(path, spec_file):
        return
    digest = integrity.matching_digest(raw, content, spec_file)
    if digest is None:
        content_digest = f" nor (decompressed) {spec_file.idx}" if spec_file.idx else ""
        raise DatasetError(f"{path}: not the official {title} file: its SHA-256 "
                           f"{hashlib.sha256(raw).hexdigest()} matches neither {spec_file.gz}"
                           f"{content_digest}; it was altered, relabelled "
                           f"or belongs to another dataset. Delete it to download the "
                           f"official one, or pass verify=False to load your own files")
    integrity.remember_verified(path, digest)
