"""Data: IDX datasets (Fashion-MNIST, MNIST), toy sets, array datasets, splits, DataLoader.

    x, y = tn.data.fashion_mnist("train")            # (60000, 1, 28, 28) float32, int64
    train, val = tn.data.random_split(tn.data.ArrayDataset(x, y), [0.8, 0.2], seed=0)
    loader = tn.data.DataLoader(train, batch_size=128, shuffle=True, seed=0, device="cuda")
    for train, val in tn.data.kfold(dataset, k=5, seed=0): ...   # cross-validation
Augmentation of image batches on their device: RandomCrop, RandomHorizontalFlip,
RandomAffine, RandomRotation (``augment.py``), as a DataLoader's ``transform``.
"""
from .augment import RandomAffine, RandomCrop, RandomHorizontalFlip, RandomRotation
from .datasets import (FASHION_MNIST, MNIST, DatasetNotFoundError, cache_dir, fashion_mnist,
                       mnist)
from .idx import DatasetError, read_idx, write_idx
from .kfold import kfold
from .loader import ArrayDataset, DataLoader, Dataset, Subset, random_split
from .toy import toy_blobs, toy_spirals
from .transforms import Compose, Normalize

__all__ = ["fashion_mnist", "mnist", "toy_blobs", "toy_spirals", "read_idx", "write_idx",
           "cache_dir", "DatasetError", "DatasetNotFoundError", "FASHION_MNIST", "MNIST",
           "Dataset", "ArrayDataset", "Subset", "random_split", "DataLoader",
           "Normalize", "Compose", "kfold", "RandomCrop", "RandomHorizontalFlip",
           "RandomAffine", "RandomRotation"]
