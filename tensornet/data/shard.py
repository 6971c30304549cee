"""Which samples each rank of a data-parallel run takes (``DataLoader(shard=...)``, issue 18).

Every rank holds the same epoch order (drawn from the shared seed). When the number of
samples does not divide by the number of ranks, the tail is made even on every rank in the
same way: ``"pad"`` (default, as PyTorch's DistributedSampler) repeats the first samples
of the order until it divides, ``"drop"`` leaves out the last ``n % size`` samples. Then
rank ``r`` takes positions ``r, r + size, r + 2 * size, ...``, so every rank has the same
number of samples and batches, and the ``size`` per-rank batches of step ``i`` together
are exactly the global batch ``i`` of a single process with ``size`` times the batch size.

``"uneven"`` is for evaluation: rank ``r`` takes positions ``r, r + size, ...`` of the
order itself, so every sample is counted once and the first ``n % size`` ranks hold one
more than the others (their batch counts may differ; ``fit`` refuses it for training).
"""
from __future__ import annotations

import numpy as np

SHARD_TAILS = ("pad", "drop", "uneven")


def check_shard(shard, tail: str, n: int) -> tuple[int, int]:
    """``(rank, size)`` from ``shard``, or a ValueError that says what is wrong."""
    try:
        rank, size = (int(v) for v in shard)
        valid = 0 <= rank < size and all(float(v) == int(v) for v in shard)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"DataLoader: shard must be (rank, size) with 0 <= rank < size, "
                         f"e.g. comm.shard; got {shard!r}")
    if tail not in SHARD_TAILS:
        raise ValueError(f"DataLoader: shard_tail must be one of {SHARD_TAILS}, got {tail!r}")
    if tail in ("drop", "uneven") and n < size:
        raise ValueError(f"DataLoader: {n} samples cannot be shared by {size} ranks with "
                         f"shard_tail={tail!r}; use shard_tail='pad'")
    return rank, size


def shard_length(n: int, size: int, tail: str, rank: int = 0) -> int:
    """Samples per rank per epoch (``rank``'s, for ``"uneven"``)."""
    if tail == "uneven":
        return len(range(rank, n, size))
    return -(-n // size) if tail == "pad" else n // size


def shard_indices(order: np.ndarray, rank: int, size: int, tail: str) -> np.ndarray:
    """Rank ``rank``'s part of the epoch ``order`` (host int64, the same on every rank)."""
    n = int(order.shape[0])
    if tail == "uneven":
        return np.ascontiguousarray(order[rank::size])
    even = shard_length(n, size, tail) * size
    if even > n:
        order = np.concatenate([order, np.resize(order, even - n)])
    return np.ascontiguousarray(order[rank:even:size])


def check_resumed_shard(saved, shard) -> None:
    """A mid-epoch ``DataLoader`` state counts batches of the number of ranks it was saved
    with (rank 0's state resumes every rank: rank 0 writes the checkpoint), so it must be
    loaded with as many: another number would skip or repeat samples of that epoch."""
    size = None if shard is None else shard[1]
    try:
        saved_size = None if saved is None else int(saved[1])
    except (TypeError, ValueError, IndexError):
        saved_size = repr(saved)
    if saved_size == size:
        return

    def ranks(n):
        return "no shard" if n is None else n if isinstance(n, str) else f"shards of {n} ranks"

    raise ValueError(f"DataLoader.load_state_dict: this mid-epoch state was saved with "
                     f"{ranks(saved_size)}, this loader takes {ranks(size)}: the batches it "
                     f"would skip are not the ones already taken; resume with as many ranks, "
                     f"or from an end-of-epoch state (as fit's ModelCheckpoint writes)")
