"""Training checkpoints: everything needed to resume bit-for-bit, restored all-or-nothing."""
from __future__ import annotations

import warnings

import numpy as np

from .errors import CheckpointError
from .store import load, save

# NumPy bit generators a checkpoint's RNG state may name (getattr(np.random, name) on
# anything else would let a file pick an arbitrary attribute).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def save_checkpoint(path, model, optimizer=None, *, scheduler=None, loader=None, epoch=None,
                    config=None, history=None, rng_per_rank=None) -> None:
    """Save everything needed to resume training bit-for-bit: model and optimizer state,
    the LR schedule, the training loader's epoch counter (and, saved mid-epoch, its place in
    that epoch), every RNG's state, the epoch, plus an optional JSON-friendly ``config``
    (how to rebuild the model) and ``history``.

    Distributed (one rank writes for all): ``rng_per_rank=tn.distributed.rng_states(comm)``
    (called on every rank) stores each rank's random streams, which ``load_checkpoint``
    gives back to each rank; ``fit``'s ``ModelCheckpoint`` passes it itself."""
    from tensornet.random import get_rng_state

    state = {"model": model.state_dict(), "rng": get_rng_state()}
    if rng_per_rank is not None:
        if not isinstance(rng_per_rank, (list, tuple)) or not rng_per_rank or not all(
                isinstance(r, dict) for r in rng_per_rank):
            raise TypeError(f"save_checkpoint: rng_per_rank must be the list "
                            f"tn.distributed.rng_states(comm) returns, got "
                            f"{str(rng_per_rank)[:100]}")
        state["rng_per_rank"] = list(rng_per_rank)
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if loader is not None and hasattr(loader, "state_dict"):
        state["loader"] = loader.state_dict()
    if epoch is not None:
        state["epoch"] = int(epoch)
    if config is not None:
        state["config"] = config
    if history is not None:
        state["history"] = history
    save(state, path)


def load_checkpoint(path, model, optimizer=None, *, scheduler=None, loader=None,
                    restore_rng: bool = True) -> dict:
    """Restore what ``save_checkpoint`` wrote into fresh objects; returns the loaded dict
    (``epoch``, ``config``, ``history``...).

    All or nothing: the file is verified (checksums), the RNG and loader entries are
    checked, and only then is anything changed; if a part still does not fit (another
    architecture, another optimizer), every object restored so far is rolled back and
    ``CheckpointError`` names the file and the mismatch.
    """
    from tensornet.random import get_rng_state, set_rng_state

    state = load(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: not a tensornet training checkpoint (no 'model' entry)")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and name not in state:
            raise CheckpointError(f"{path}: the checkpoint holds no {name} state; pass "
                                  f"{name}=None to load only the model")
    use_loader = loader is not None and "loader" in state and hasattr(loader, "load_state_dict")
    use_rng = restore_rng and "rng" in state
    if use_rng:
        rng = _rng_for_this_rank(state, path)
    if use_loader:
        _check_loader_state(state["loader"], loader, path)

    # (object, its state before, load function): applied in order, undone in reverse
    steps = [(model, _host_copy(model.state_dict()), state["model"])]
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            steps.append((obj, _host_copy(obj.state_dict()), state[name]))
    if use_loader:
        steps.append((loader, _host_copy(loader.state_dict()), state["loader"]))
    rng_before = get_rng_state() if use_rng else None
    done = []
    try:
        for obj, before, saved in steps:
            done.append((obj, before))
            obj.load_state_dict(saved)
        if use_rng:
            set_rng_state(rng)
    except Exception as exc:  # any part that does not fit: undo everything
        for obj, before in reversed(done):
            obj.load_state_dict(before)
        if rng_before is not None:
            set_rng_state(rng_before)
        raise CheckpointError(f"{path}: the checkpoint does not fit: {exc}") from exc
    return state


def _rng_for_this_rank(state: dict, path):
    """The RNG state this process restores, checked: under ``tensornet.distributed`` with
    several ranks, its own rank's from ``rng_per_rank`` where the file has it (rank r of a
    run with more ranks than the file continues rank r % n's streams, with a warning);
    otherwise (one process, or a file with one process's streams) the saved ``rng``."""
    from tensornet.distributed import world

    per_rank, comm = state.get("rng_per_rank"), world()
    if per_rank is not None and not (isinstance(per_rank, list) and per_rank):
        raise CheckpointError(f"{path}: the checkpoint's 'rng_per_rank' entry is damaged: "
                              f"expected a list of RNG states, got {str(per_rank)[:100]}")
    for index, rng in enumerate(per_rank or []):
        _check_rng_state(rng, path, f"rng_per_rank/{index}")
    _check_rng_state(state["rng"], path)
    if comm is None or comm.size == 1:
        return state["rng"]
    if per_rank is None:
        if comm.rank == 0:
            warnings.warn(f"load_checkpoint: {path} holds one process's random streams, so "
                          f"all {comm.size} ranks continue the same ones (the same Dropout "
                          f"masks on every rank); save it with rng_per_rank="
                          f"tn.distributed.rng_states(comm), or call tn.manual_seed(seed + "
                          f"comm.rank) after loading", RuntimeWarning, stacklevel=3)
        return state["rng"]
    if len(per_rank) != comm.size and comm.rank == 0:
        warnings.warn(f"load_checkpoint: {path} holds the random streams of {len(per_rank)} "
                      f"ranks and this run has {comm.size}: rank r continues rank "
                      f"r % {len(per_rank)}'s streams" + (
                          " (so some ranks draw the same Dropout masks); call "
                          "tn.manual_seed(seed + comm.rank) after loading for distinct ones"
                          if comm.size > len(per_rank) else ""), RuntimeWarning, stacklevel=3)
    return per_rank[comm.rank % len(per_rank)]


def _check_rng_state(rng, path, entry: str = "rng") -> None:
    """Raise unless ``rng`` is what ``tn.get_rng_state()`` returns, trying every NumPy
    bit-generator state on a throwaway generator."""
    fail = f"{path}: the checkpoint's '{entry}' entry is damaged"
    if not isinstance(rng, dict) or "host" not in rng \
            or not isinstance(rng.get("backends", {}), dict):
        raise CheckpointError(f"{fail}: expected {{'host': ..., 'backends': {{...}}}}, got "
                              f"{str(rng)[:100]}")
    states = [("host", rng["host"])] + [(f"backends/{k}", v)
                                        for k, v in rng.get("backends", {}).items()]
    for where, bit_state in states:
        if where != "host" and not (isinstance(bit_state, dict) and "bit_generator" in bit_state):
            if not isinstance(bit_state, dict):
                raise CheckpointError(f"{fail}: {entry}/{where} is a {type(bit_state).__name__}")
            continue  # a device generator of its own format: restored (or undone) as a whole
        name = bit_state.get("bit_generator") if isinstance(bit_state, dict) else None
        if name not in _BIT_GENERATORS:
            raise CheckpointError(f"{fail}: {entry}/{where} names bit generator "
                                  f"{str(name)[:50]!r}")
        try:
            getattr(np.random, name)().state = bit_state
        except Exception as exc:  # TypeError, ValueError, KeyError, OverflowError...
            raise CheckpointError(f"{fail}: {entry}/{where}: {exc}") from exc


def _check_loader_state(saved, loader, path) -> None:
    from tensornet.data import DataLoader

    if not isinstance(loader, DataLoader):
        return  # another loader class: its own load_state_dict judges (and is undone)
    epoch = saved.get("epoch") if isinstance(saved, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise CheckpointError(f"{path}: the checkpoint's 'loader' entry is damaged: expected "
                              f"{{'epoch': int >= 0, ...}}, got {str(saved)[:100]}")


def _host_copy(value):
    """A deep copy with every array copied to the host (state dicts hold live buffers)."""
    from tensornet.backends import asnumpy

    from .store import _is_array

    if isinstance(value, dict):
        return {k: _host_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(v) for v in value)
    if _is_array(value):
        return np.array(asnumpy(value), copy=True)
    return value
