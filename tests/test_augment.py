"""Batch augmentation on the device (RandomCrop, RandomHorizontalFlip, RandomAffine,
RandomRotation) and tn.data.kfold."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.data import (RandomAffine, RandomCrop, RandomHorizontalFlip, RandomRotation,
                            kfold)


def _images(rng, n=6, c=2, h=7, w=7):
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


def _apply(transform, x, device, seed=0):
    tn.manual_seed(seed)
    out = transform(get_backend(device).asarray(x))
    assert get_backend(device).owns(out)
    return tn.asnumpy(out)


def test_flip(device, rng):
    x = _images(rng, n=400)
    np.testing.assert_array_equal(_apply(RandomHorizontalFlip(1.0), x, device), x[..., ::-1])
    np.testing.assert_array_equal(_apply(RandomHorizontalFlip(0.0), x, device), x)
    y = _apply(RandomHorizontalFlip(0.5), x, device)
    flipped = np.array([np.array_equal(a, b[..., ::-1]) for a, b in zip(y, x)])
    kept = np.array([np.array_equal(a, b) for a, b in zip(y, x)])
    assert np.all(flipped | kept) and abs(flipped.mean() - 0.5) < 0.08


def test_crop_is_a_window_of_the_padded_image(device, rng):
    x = _images(rng, n=30, h=6, w=5)
    y = _apply(RandomCrop((4, 5), padding=2), x, device)
    assert y.shape == (30, 2, 4, 5) and y.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for a, p in zip(y, padded):
        hits = [(i, j) for i in range(p.shape[1] - 3) for j in range(p.shape[2] - 4)
                if np.array_equal(p[:, i:i + 4, j:j + 5], a)]
        assert hits, "each crop is one window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets vary from sample to sample
    full = _images(rng)
    np.testing.assert_array_equal(_apply(RandomCrop(7), full, device), full)  # no freedom


def test_rotation_by_quarter_turns_and_identity(device, rng):
    x = _images(rng)
    np.testing.assert_array_equal(_apply(RandomAffine(degrees=(90, 90)), x, device),
                                  np.rot90(x, 1, axes=(2, 3)))
    np.testing.assert_array_equal(_apply(RandomAffine(degrees=(180, 180)), x, device),
                                  x[:, :, ::-1, ::-1])
    for mode in ("nearest", "bilinear"):
        np.testing.assert_allclose(_apply(RandomRotation(0, interpolation=mode), x, device), x,
                                   atol=1e-6)
    np.testing.assert_allclose(_apply(RandomAffine((90, 90), interpolation="bilinear"), x,
                                      device), np.rot90(x, 1, axes=(2, 3)), atol=1e-5)


def test_small_rotation_keeps_the_centre_and_moves_the_rest(device, rng):
    x = _images(rng, n=200, h=29, w=29)
    y = _apply(RandomRotation(15), x, device)
    np.testing.assert_array_equal(y[:, :, 14, 14], x[:, :, 14, 14])
    # Angles below about atan(1/14) (3.8 of the 30 degrees) move no pixel of a nearest-
    # neighbour rotation of a 29 x 29 image: about 87% of the images change.
    changed = np.mean([not np.array_equal(a, b) for a, b in zip(y, x)])
    assert changed > 0.75


def test_translation_is_an_integer_shift_with_zero_fill(device, rng):
    x = _images(rng, n=40, h=8, w=10) + 10.0  # no zeros inside the image
    y = _apply(RandomAffine(translate=(0.2, 0.25)), x, device)
    shifts = set()
    for a, b in zip(y, x):
        found = None
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = np.zeros_like(b)
                src = b[:, max(0, -dy):8 - max(0, dy), max(0, -dx):10 - max(0, dx)]
                shifted[:, max(0, dy):max(0, dy) + src.shape[1],
                        max(0, dx):max(0, dx) + src.shape[2]] = src
                if np.array_equal(shifted, a):
                    found = (dy, dx)
        assert found is not None
        shifts.add(found)
    assert len(shifts) > 5


def test_seeded_runs_are_bit_reproducible_and_epochs_differ(device, rng):
    x = _images(rng, n=20)
    augment = tn.data.Compose(RandomCrop(7, padding=1), RandomHorizontalFlip(),
                              RandomAffine(10, (0.1, 0.1), interpolation="bilinear"),
                              tn.data.Normalize(0.5, 2.0))
    data = tn.data.ArrayDataset(x, np.arange(20))

    def epochs(seed):
        tn.manual_seed(seed)
        loader = tn.data.DataLoader(data, 8, shuffle=True, seed=0, device=device,
                                    transform=augment)
        return [np.concatenate([tn.asnumpy(xb) for xb, _ in loader]) for _ in range(2)]

    first, second = epochs(4), epochs(4)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], epochs(5)[0])


def test_bad_inputs_and_arguments(rng):
    with pytest.raises(ValueError, match=r"RandomCrop expects an image batch \(N, C, H, W\), "
                                         r"got \(3, 4\)"):
        RandomCrop(2)(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="floating-point images"):
        RandomHorizontalFlip()(np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"smaller than the crop \(9, 9\)"):
        RandomCrop(9, padding=1)(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="translate fractions"):
        RandomAffine(translate=(2.0, 0.0))
    with pytest.raises(ValueError, match="interpolation"):
        RandomRotation(5, interpolation="cubic")


@pytest.mark.parametrize("make", [lambda: RandomAffine(float("nan")),
                                  lambda: RandomRotation((0.0, float("inf"))),
                                  lambda: RandomAffine(5, translate=(float("nan"), 0.1)),
                                  lambda: RandomHorizontalFlip("half")])
def test_non_finite_or_non_numeric_settings_are_refused_naming_the_transform(make):
    # a NaN angle passed the >= checks and made every output pixel the fill value
    with pytest.raises(ValueError, match=r"^Random(Affine|Rotation|HorizontalFlip): "):
        make()


# ---------------------------------------------------------------------- kfold
def test_kfold_partitions_and_every_sample_validates_once():
    data = tn.data.ArrayDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    folds = list(kfold(data, k=3, seed=0))
    assert [len(v) for _, v in folds] == [4, 3, 3]
    seen = []
    for train, val in folds:
        t, v = set(train.indices.tolist()), set(val.indices.tolist())
        assert not t & v and t | v == set(range(10))
        seen += sorted(v)
        x, y = train.arrays()
        assert np.array_equal(x[:, 0], y.astype(np.float32))
    assert sorted(seen) == list(range(10))
    again = [v.indices.tolist() for _, v in kfold(data, 3, seed=0)]
    assert again == [v.indices.tolist() for _, v in folds]
    assert [v.indices.tolist() for _, v in kfold(data, 5, shuffle=False)][1] == [2, 3]


def test_kfold_without_seed_follows_manual_seed():
    data = tn.data.ArrayDataset(np.zeros((12, 1), np.float32))
    tn.manual_seed(3)
    a = [v.indices.tolist() for _, v in kfold(data, 4)]
    tn.manual_seed(3)
    assert a == [v.indices.tolist() for _, v in kfold(data, 4)]
    with pytest.raises(ValueError, match=r"k must be an integer in \[2, 12\]"):
        list(kfold(data, 13))
