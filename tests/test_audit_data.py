"""Audit of tensornet.data (loader, Subset, augmentations) against what PyTorch /
torchvision users expect: hostile inputs and edge cases."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.data import RandomAffine, RandomRotation


@pytest.mark.parametrize("shape", [(2, 1, 2, 3000), (2, 1, 3000, 2)])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_float16_affine_keeps_wide_images_in_place(device, rng, shape, mode):
    # float16 holds whole numbers only up to 2048: coordinates computed in it moved pixels
    if device == "strict":
        pytest.skip("the array API standard has no float16")
    x = rng.standard_normal(shape).astype(np.float16)
    backend = get_backend(device)
    tn.manual_seed(0)
    out = RandomRotation(0, interpolation=mode)(backend.asarray(x))
    assert tn.asnumpy(out).dtype == np.float16
    np.testing.assert_array_equal(tn.asnumpy(out), x)
    tn.manual_seed(0)
    shifted = tn.asnumpy(RandomAffine(degrees=(180, 180), interpolation=mode)(
        backend.asarray(x)))
    # bilinear mixes in about |sin(float32(pi))| * 1500 ~ 1e-4 of the neighbour
    np.testing.assert_allclose(shifted.astype(np.float32), x[:, :, ::-1, ::-1],
                               rtol=0, atol=0 if mode == "nearest" else 2e-3)


def _dataset(n=10):
    return tn.data.ArrayDataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n))


@pytest.mark.parametrize("indices, error", [
    ([1.7, 2.0], TypeError),                        # was truncated to sample 1
    (np.array([True, False] * 5), TypeError),       # a mask was read as indices 0 and 1
    ([[1, 2], [3, 4]], TypeError),                  # gave 2-D batches
    ([12], IndexError),                             # failed only when a batch was drawn
    ([-11], IndexError),
])
def test_subset_refuses_indices_that_are_not_sample_numbers(indices, error):
    with pytest.raises(error, match="Subset: indices"):
        tn.data.Subset(_dataset(), indices)


def test_subset_keeps_duplicates_negatives_and_empty():
    sub = tn.data.Subset(_dataset(), [0, 0, 3, -1])
    for resident in (None, False):
        got = [tn.asnumpy(y).tolist() for _, y in tn.data.DataLoader(sub, 3, resident=resident)]
        assert got == [[0, 0, 3], [9]]
    assert len(tn.data.Subset(_dataset(), [])) == 0


def test_loader_refuses_a_transform_that_changes_the_batch_size(device):
    loader = tn.data.DataLoader(_dataset(), 4, device=device, transform=lambda x: x[:2, ...])
    with pytest.raises(ValueError, match="batch of 4 inputs into \\(2, 1\\)"):
        next(iter(loader))
    ok = tn.data.DataLoader(_dataset(), 4, device=device,
                            transform=lambda x: get_backend(x).xp.astype(x, get_backend(
                                x).xp.float64))
    assert [tn.asnumpy(x).dtype for x, _ in ok] == [np.float64] * 3


class _ListDataset:
    def __len__(self):
        return 5

    def __getitem__(self, indices):
        return [[float(i), 2.0 * i] for i in indices], [int(i) for i in indices]


class _ScalarDataset(_ListDataset):
    def __getitem__(self, indices):
        return 1.0, 2


def test_loader_takes_lists_and_names_a_dataset_that_returns_scalars(device):
    batches = list(tn.data.DataLoader(_ListDataset(), 2, device=device))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 2), (2, 2), (1, 2)]
    assert tn.asnumpy(batches[2][1]).tolist() == [4]
    with pytest.raises(ValueError, match="_ScalarDataset\\[indices\\] returned x of float"):
        next(iter(tn.data.DataLoader(_ScalarDataset(), 2, device=device)))


def _ids_and_inputs(batches):
    return [(tn.asnumpy(y).tolist(), tn.asnumpy(x).tobytes()) for x, y in batches]


def _augmenting_loader(device, seed, shuffle, resident, shard=None):
    x = np.random.default_rng(0).standard_normal((23, 1, 4, 4)).astype(np.float32)
    return tn.data.DataLoader(tn.data.ArrayDataset(x, np.arange(23)), 5, shuffle=shuffle,
                              seed=seed, device=device, resident=resident, shard=shard,
                              transform=tn.data.RandomCrop(4, padding=1))


@pytest.mark.parametrize("seed, shuffle, shard", [(None, True, None), (3, True, None),
                                                  (None, False, None), (3, True, (1, 2))],
                         ids=["unseeded", "seeded", "in-order", "sharded"])
@pytest.mark.parametrize("resident", [None, False])
def test_mid_epoch_state_resumes_the_rest_of_that_epoch(tmp_path, device, seed, shuffle,
                                                        shard, resident):
    def run(stop_after=None):
        tn.manual_seed(1)
        loader = _augmenting_loader(device, seed, shuffle, resident, shard)
        done = []
        for _ in range(3):
            for batch in loader:
                done.append(batch)
                if len(done) == stop_after:
                    return done, loader
        return done, loader

    whole, _ = run()
    first, loader = run(stop_after=7)  # in epoch 2 (5 or, sharded, 3 batches each)
    steps = len(first)
    per_epoch = len(loader)
    assert loader.state_dict()["batch"] == steps % per_epoch
    tn.save_checkpoint(tmp_path / "c.safetensors", tn.nn.Linear(1, 1), loader=loader)
    tn.manual_seed(99)  # the checkpoint's RNG state must take over
    fresh = _augmenting_loader(device, seed, shuffle, resident, shard)
    tn.load_checkpoint(tmp_path / "c.safetensors", tn.nn.Linear(1, 1), loader=fresh)
    rest = list(fresh)  # the rest of the interrupted epoch
    assert len(rest) == per_epoch - steps % per_epoch
    while fresh.epoch < 3:
        rest += list(fresh)
    assert _ids_and_inputs(first + rest) == _ids_and_inputs(whole)
    assert len(rest) == 3 * per_epoch - steps and fresh.epoch == 3


def test_a_loop_broken_off_does_not_make_the_next_one_resume():
    loader = tn.data.DataLoader(_dataset(), 4)
    next(iter(loader))
    assert [tn.asnumpy(y).tolist() for _, y in loader][0] == [0, 1, 2, 3]
    assert loader.epoch == 2


def test_mid_epoch_state_is_checked():
    loader = tn.data.DataLoader(_dataset(), 4, shuffle=True)
    for bad in ({"epoch": 1, "batch": 3}, {"epoch": 0, "batch": 1}, {"epoch": 1, "batch": 1},
                {"epoch": 1, "batch": 1, "order": np.zeros(10, np.int64)}):
        with pytest.raises(ValueError, match="DataLoader.load_state_dict"):
            loader.load_state_dict(bad)
    it = iter(loader)
    next(it), next(it), next(it)  # the last batch yielded: the epoch is complete
    assert "batch" not in loader.state_dict()
