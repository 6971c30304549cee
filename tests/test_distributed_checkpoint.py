"""``load_checkpoint`` under several ranks: each rank gets its own random streams back from
``rng_per_rank`` (a stand-in world communicator; the two-process run is in
test_distributed_failures.py); and ``bcast_many_``, which eval() sends the buffers with."""
from __future__ import annotations

import warnings

import pytest

import tensornet as tn
from tensornet import nn
from tensornet.distributed import comm as comm_module


class _RankOf(tn.distributed.Communicator):
    def __init__(self, rank, size):
        super().__init__()
        self.rank, self.size = rank, size


def _states(n):
    """n distinct RNG states (one per 'rank'), and the draws each gives next."""
    states, draws = [], []
    for rank in range(n):
        tn.manual_seed(50 + rank)
        states.append(tn.get_rng_state())
        draws.append(tn.random.host_rng().random())
    return states, draws


@pytest.mark.parametrize("rank, size, expected, warned", [
    (1, 2, 1, None), (0, 2, 0, None), (0, 3, 0, "holds the random streams of 2 ranks"),
    (2, 3, 0, None),
    (None, None, 0, None)])  # None: a single process takes the saved 'rng' (rank 0's)
def test_load_checkpoint_gives_each_rank_its_own_random_streams(tmp_path, monkeypatch, rank,
                                                                size, expected, warned):
    states, draws = _states(2)
    model, path = nn.Linear(2, 2), tmp_path / "c.safetensors"
    tn.set_rng_state(states[0])  # this process is rank 0
    tn.save_checkpoint(path, model, rng_per_rank=states)
    tn.manual_seed(7)  # something else
    if rank is not None:
        monkeypatch.setattr(comm_module, "_world", _RankOf(rank, size))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tn.load_checkpoint(path, model)
    assert tn.random.host_rng().random() == draws[expected]
    messages = [str(w.message) for w in caught]
    assert any(warned in m for m in messages) if warned else not messages, messages


def test_a_checkpoint_of_one_process_warns_that_every_rank_repeats_its_streams(
        tmp_path, monkeypatch):
    tn.manual_seed(3)
    path = tmp_path / "c.safetensors"
    tn.save_checkpoint(path, nn.Linear(2, 2))
    monkeypatch.setattr(comm_module, "_world", _RankOf(0, 2))
    with pytest.warns(RuntimeWarning, match="all 2 ranks continue the same ones"):
        tn.load_checkpoint(path, nn.Linear(2, 2))


def test_damaged_or_wrong_rng_per_rank_is_refused(tmp_path):
    with pytest.raises(TypeError, match="rng_per_rank must be the list"):
        tn.save_checkpoint(tmp_path / "a.safetensors", nn.Linear(2, 2), rng_per_rank={})
    states, _ = _states(2)
    states[1] = {**states[1], "host": {**states[1]["host"], "bit_generator": "os.system"}}
    tn.save_checkpoint(tmp_path / "b.safetensors", nn.Linear(2, 2), rng_per_rank=states)
    with pytest.raises(tn.CheckpointError, match="'rng_per_rank/1' entry is damaged"):
        tn.load_checkpoint(tmp_path / "b.safetensors", nn.Linear(2, 2))


def test_bcast_many_gives_every_array_the_roots_values_in_its_own_dtype_and_shape():
    """eval()'s one-message broadcast of a model's buffers: float32, int64 and a 0-d array
    packed as bytes, sent once, unpacked in place."""
    import numpy as np

    roots = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(7, dtype=np.int64),
             np.linspace(0, 1, 4)]
    ours = [np.zeros((2, 3), np.float32), np.array(0, dtype=np.int64), np.zeros(4)]

    class FakeWorld:  # MPI's Bcast as the root's bytes arriving
        calls = 0

        def Bcast(self, buffer, root=0):
            FakeWorld.calls += 1
            buffer[...] = np.concatenate([a.reshape(-1).view(np.uint8) for a in roots])

        def Barrier(self):
            pass

    comm = tn.distributed.Communicator()
    comm.size, comm._comm = 2, FakeWorld()
    comm.bcast_many_(ours)
    assert FakeWorld.calls == 1
    for got, want in zip(ours, roots):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
