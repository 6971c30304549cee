"""Datasets of arrays, random splits, and the DataLoader that batches them onto a device."""
from __future__ import annotations

import math
import warnings

import numpy as np

from tensornet.backends import asnumpy, dtype_name, get_backend, to_device
from tensornet.random import host_rng

from .shard import check_resumed_shard, check_shard, shard_indices, shard_length


class Dataset:
    """The protocol the DataLoader needs: ``len(ds)`` and ``ds[indices] -> (x, y)`` where
    ``indices`` is a 1-D int64 NumPy array and ``x``, ``y`` hold those samples (host or
    device arrays). Datasets backed by whole arrays also offer ``arrays() -> (x, y)``
    so the loader can keep them resident on the device."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, indices):
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Samples along axis 0 of ``x`` and ``y`` (NumPy or device arrays of equal length).

    ``y=None`` makes each input its own target (an autoencoder's data).
    """

    def __init__(self, x, y=None):
        if not hasattr(x, "shape") or len(x.shape) == 0:
            raise TypeError(f"ArrayDataset: x must be an array with a sample axis, got "
                            f"{type(x).__name__}")
        if y is not None and (not hasattr(y, "shape") or len(y.shape) == 0
                              or y.shape[0] != x.shape[0]):
            got = tuple(y.shape) if hasattr(y, "shape") else type(y).__name__
            raise ValueError(f"ArrayDataset: x has {x.shape[0]} samples but y has shape {got}; "
                             f"they must have the same length along axis 0")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, indices):
        x = _take(self.x, indices)
        return x, (x if self.y is None else _take(self.y, indices))

    def arrays(self):
        return self.x, self.y

    def __repr__(self) -> str:
        ys = "x" if self.y is None else f"{tuple(self.y.shape)} {dtype_name(self.y.dtype)}"
        return f"ArrayDataset(x={tuple(self.x.shape)} {dtype_name(self.x.dtype)}, y={ys})"


class Subset(Dataset):
    """The samples ``indices`` (host int64) of another dataset."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        given = np.asarray(indices)
        n = len(dataset)
        # int64 casting would truncate 1.7 to 1 and read a boolean mask as indices 0 and 1
        if given.ndim != 1 or (given.size and (given.dtype == np.bool_
                                               or not np.issubdtype(given.dtype, np.integer))):
            hint = " (for a mask use np.flatnonzero(mask))" if given.dtype == np.bool_ else ""
            raise TypeError(f"Subset: indices must be a 1-D sequence of integers{hint}, got "
                            f"{given.dtype} of shape {given.shape}")
        if given.size and (given.min() < -n or given.max() >= n):
            raise IndexError(f"Subset: indices must be in [-{n}, {n}) for a dataset of {n} "
                             f"samples, got {given.min()}..{given.max()}")
        self.indices = given.astype(np.int64)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, indices):
        return self.dataset[self.indices[np.asarray(indices, dtype=np.int64)]]

    def arrays(self):
        if not hasattr(self.dataset, "arrays"):
            raise TypeError(f"{type(self.dataset).__name__} has no arrays()")
        x, y = self.dataset.arrays()
        x_sub = _take(x, self.indices)
        return x_sub, (None if y is None else _take(y, self.indices))


def random_split(dataset, lengths, seed=None):
    """Split ``dataset`` into disjoint random Subsets.

    ``lengths`` are sample counts summing to ``len(dataset)``, or fractions summing to 1
    (``[0.8, 0.2]``; the remainder of the rounding goes to the first parts, as in PyTorch).
    ``seed`` fixes the split; without it the generator ``tensornet.manual_seed`` seeds is used.
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(v, float) for v in lengths):
        if any(v < 0 for v in lengths) or not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
            raise ValueError(f"random_split: fractions must be >= 0 and sum to 1, got {lengths}")
        counts = [int(math.floor(n * v)) for v in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = [int(v) for v in lengths]
        if any(c < 0 for c in counts) or sum(counts) != n:
            raise ValueError(f"random_split: lengths {lengths} must be >= 0 and sum to the "
                             f"dataset's {n} samples")
    rng = np.random.default_rng(seed) if seed is not None else host_rng()
    order = rng.permutation(n).astype(np.int64)
    parts, start = [], 0
    for c in counts:
        parts.append(Subset(dataset, order[start:start + c]))
        start += c
    return parts


class DataLoader:
    """Batches of ``(x, y)`` already on ``device``.

    Args:
        dataset: an ArrayDataset, a Subset of one, or anything with the Dataset protocol.
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        shuffle: a new random order every epoch. Each sample appears exactly once per epoch.
        drop_last: skip the last incomplete batch.
        seed: with ``shuffle``, epoch ``e`` uses the order drawn from ``(seed, e)``, so a
            seed gives the same sequence of epochs on every run and device; without it the
            device backend's generator (seeded by ``tensornet.manual_seed``) draws the order.
        device: where batches are produced (``"cpu"``, ``"cuda"``, ``"strict"``...).
        transform: applied to each input batch on the device (e.g. ``Normalize``).
        resident: keep the whole dataset on the device and slice batches there (one
            host->device copy in total). ``None`` (default) does so whenever the dataset
            has ``arrays()`` and fits; otherwise batches are gathered on the host and copied.
        shard: ``(rank, size)`` (e.g. ``comm.shard``) for data-parallel training: each
            epoch every rank draws the same order (``shuffle`` then needs ``seed``) and
            takes its disjoint 1/size of it; see ``tensornet.data.shard``.
        shard_tail: ``"pad"`` (default: repeat the first samples of the order so the
            samples divide by ``size``), ``"drop"`` (leave out the last ``n % size``) or,
            for evaluation only, ``"uneven"`` (each sample once; some ranks have one more).

    ``len(loader)`` is the number of batches per epoch. ``loader.epoch`` counts started
    epochs; ``state_dict()`` / ``load_state_dict()`` carry it in checkpoints. Taken in the
    middle of an epoch, the state also holds how many of its batches were yielded (and,
    for an unseeded shuffle, the epoch's order, which cannot be drawn again): the next
    iteration after ``load_state_dict`` yields exactly that epoch's remaining batches,
    then the epochs after it as an uninterrupted run would.
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None, device="cpu",
                 transform=None, resident: bool | None = None, shard=None,
                 shard_tail: str = "pad"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}")
        if hasattr(dataset, "shape") or isinstance(dataset, (tuple, list)):
            # an array's ds[indices] is one array, unpacked into (x, y) along the batch
            raise TypeError(f"DataLoader expects a Dataset (ds[indices] -> (x, y)), got "
                            f"{type(dataset).__name__}; wrap arrays in ArrayDataset(x, y) "
                            f"(or ArrayDataset(x) for x as its own target)")
        if len(dataset) == 0:
            raise ValueError("DataLoader: the dataset is empty")
        self.dataset = dataset
        self.shard, self.shard_tail = None, shard_tail
        if shard is not None:  # data-parallel (issue 18)
            self.shard = check_shard(shard, shard_tail, len(dataset))
            if shuffle and seed is None:
                raise ValueError("DataLoader: shard= with shuffle=True needs seed= (the same "
                                 "on every rank) so that all ranks draw the same order")
        if drop_last and batch_size > self._samples():
            raise ValueError(f"DataLoader: batch_size {batch_size} is larger than the dataset "
                             f"({self._samples()} samples) and drop_last=True, so an epoch "
                             f"would have no batches")
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.seed = bool(shuffle), bool(drop_last), seed
        self.backend = get_backend(device)
        self.device = self.backend.device
        self.transform = transform
        self.resident = resident
        self.epoch = 0
        self._on_device = None  # (x, y) resident on the device, y None when it is x
        # the latest epoch while it is being iterated: [epoch, batches yielded, its order
        # when it cannot be drawn again, else None]
        self._position = None
        self._resume = None  # the same, from load_state_dict: where the next __iter__ starts

    def _samples(self) -> int:
        """Samples this loader draws per epoch before batching (this rank's share)."""
        if self.shard is None:
            return len(self.dataset)
        return shard_length(len(self.dataset), self.shard[1], self.shard_tail, self.shard[0])

    def __len__(self) -> int:
        n = self._samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch (fewer than ``len(dataset)`` with ``drop_last`` or ``shard``)."""
        n = self._samples()
        return len(self) * self.batch_size if self.drop_last else n

    def batch_sizes(self) -> list[int]:
        """Sizes of the batches of one epoch, in order."""
        n, bs = self._samples(), self.batch_size
        return [min(bs, n - start) for start in range(0, len(self) * bs, bs)]

    def __iter__(self):
        resident = self._resident_arrays()
        on_device = resident is not None
        resumed, self._resume = self._resume, None
        if resumed is not None:  # a mid-epoch state: the rest of that epoch
            epoch, first, saved = resumed
            order = self._order(epoch, on_device) if saved is None else (
                self.backend.asarray(saved) if on_device else saved)
        else:
            epoch, first = self.epoch, 0
            self.epoch += 1
            order = self._order(epoch, on_device)
        redrawable = not self.shuffle or self.seed is not None or self.shard is not None
        position = self._position = [epoch, first, None if redrawable else order]
        for start in range(first * self.batch_size, len(self) * self.batch_size,
                           self.batch_size):
            stop = min(start + self.batch_size, self._samples())
            if resident is not None:
                xb, yb = self._slice(resident, order, start, stop)
            else:
                idx = np.arange(start, stop, dtype=np.int64) if order is None else order[start:stop]
                x_host, y_host = self._gathered(idx)
                xb = to_device(x_host, self.backend)
                yb = xb if y_host is x_host else to_device(y_host, self.backend)
            if self.transform is not None:
                xb = self.transform(xb)
                got = _rows_mismatch(xb, yb.shape[0])
                if got is not None:
                    raise ValueError(f"DataLoader: transform {self.transform!r} turned a batch "
                                     f"of {yb.shape[0]} inputs into {got}; a transform must "
                                     f"keep one input per target")
            position[1] += 1
            yield xb, yb
        if self._position is position:
            self._position = None

    def _gathered(self, idx):
        """``dataset[idx]`` as arrays of ``len(idx)`` samples (lists become host arrays)."""
        x, y = self.dataset[idx]
        pair = []
        for name, part in (("x", x), ("y", y)):
            if part is x and name == "y":
                pair.append(pair[0])
                continue
            if isinstance(part, (list, tuple)):
                part = np.asarray(part)
            got = _rows_mismatch(part, idx.shape[0])
            if got is not None:
                raise ValueError(f"DataLoader: {type(self.dataset).__name__}[indices] returned "
                                 f"{name} of {got} for {idx.shape[0]} indices; a dataset "
                                 f"returns (x, y) arrays with one row per index")
            pair.append(part)
        return pair[0], pair[1]

    def _slice(self, resident, order, start, stop):
        x, y = resident
        if order is None:  # the array API needs the trailing ellipsis on n-d arrays
            xb = x[start:stop, ...]
            return xb, (xb if y is None else y[start:stop, ...])
        idx = order[start:stop]
        xp = self.backend.xp
        xb = xp.take(x, idx, axis=0)
        return xb, (xb if y is None else xp.take(y, idx, axis=0))

    def _order(self, epoch: int, on_device: bool):
        """This epoch's permutation (device array when resident, else host), or None."""
        if self.shard is not None:
            return self._shard_order(epoch, on_device)
        if not self.shuffle:
            return None
        n = len(self.dataset)
        if self.seed is not None:
            host = np.random.default_rng([self.seed, epoch]).permutation(n).astype(np.int64)
            return self.backend.asarray(host) if on_device else host
        perm = self.backend.permutation(n)
        return perm if on_device else asnumpy(perm)

    def _shard_order(self, epoch: int, on_device: bool):
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n).astype(np.int64)
                 if self.shuffle else np.arange(n, dtype=np.int64))
        part = shard_indices(order, *self.shard, self.shard_tail)
        return self.backend.asarray(part) if on_device else part

    def _resident_arrays(self):
        if self._on_device is not None:
            return self._on_device
        if self.resident is False or not hasattr(self.dataset, "arrays"):
            if self.resident:
                raise TypeError(f"DataLoader(resident=True) needs a dataset with arrays(); "
                                f"{type(self.dataset).__name__} has none")
            return None
        x, y = self.dataset.arrays()
        if self.resident is None and not self._fits(x, y):
            self.resident = False
            return None
        try:
            x_dev = to_device(x, self.backend)
            y_dev = None if y is None or y is x else to_device(y, self.backend)
        except MemoryError as exc:
            if self.resident:
                raise
            warnings.warn(f"DataLoader: the dataset does not fit on {self.device} ({exc}); "
                          f"copying batch by batch instead", RuntimeWarning, stacklevel=3)
            self.resident = False
            return None
        self._on_device = (x_dev, y_dev)
        return self._on_device

    def _fits(self, x, y) -> bool:
        """Whether the arrays take at most half the device's free memory (always on CPU,
        where the data already lives in host memory)."""
        free = getattr(self.backend, "memory_info", dict)().get("device_free")
        if free is None:
            return True
        arrays = [x] if y is None or y is x else [x, y]
        return sum(int(a.nbytes) for a in arrays) <= free // 2

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "seed": self.seed}
        if self.shard is not None:
            state["shard"] = list(self.shard)
        position = self._resume or self._position
        if position is not None and position[0] == self.epoch - 1 \
                and 0 < position[1] < len(self):
            state["batch"] = position[1]  # batches of epoch `epoch - 1` already yielded
            if position[2] is not None:
                state["order"] = np.array(asnumpy(position[2]), dtype=np.int64, copy=True)
        return state

    def load_state_dict(self, state: dict) -> None:
        epoch = int(state["epoch"])
        position = None
        if state.get("batch") is not None:
            batch = state["batch"]
            if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) \
                    or epoch < 1 or not 0 < batch < len(self):
                raise ValueError(f"DataLoader.load_state_dict: 'batch' must be an integer in "
                                 f"[1, {len(self) - 1}] (this loader has {len(self)} batches "
                                 f"per epoch) with "
                                 f"'epoch' >= 1; got batch={batch!r}, epoch={epoch!r}")
            check_resumed_shard(state.get("shard"), self.shard)
            order = state.get("order")
            if self.shuffle and self.seed is None and self.shard is None:
                order = None if order is None else np.asarray(asnumpy(order))
                n = len(self.dataset)
                if order is None or order.shape != (n,) or order.dtype.kind not in "iu" \
                        or not np.array_equal(np.sort(order), np.arange(n)):
                    raise ValueError(f"DataLoader.load_state_dict: a mid-epoch state of an "
                                     f"unseeded shuffle needs 'order', a permutation of the "
                                     f"{n} samples")
                order = order.astype(np.int64)
            else:
                order = None
            position = [epoch - 1, int(batch), order]
        self.epoch, self._resume, self._position = epoch, position, None

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device!r})")


def _take(array, indices):
    """Rows ``indices`` of a host or device array (indices: host int array)."""
    if isinstance(array, np.ndarray):
        return array[np.asarray(indices)]
    backend = get_backend(array)
    return backend.xp.take(array, backend.asarray(np.asarray(indices, dtype=np.int64)), axis=0)


def _rows_mismatch(part, rows: int):
    """None when ``part`` is an array of ``rows`` rows, else what it is instead (a shape or
    a type name), for the error."""
    if len(getattr(part, "shape", ())) and part.shape[0] == rows:
        return None
    return tuple(part.shape) if hasattr(part, "shape") else type(part).__name__
