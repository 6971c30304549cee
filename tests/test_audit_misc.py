"""The smaller public APIs under hostile or PyTorch/Keras/scikit-learn-minded use: model
builders, toy datasets, predict, the LR range test, summary, regularizers, kfold. Each misuse
fails at once with one error naming what was expected, never a silent wrong result."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import models, nn


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("sizes", ["784", 784, [4.7, 3], [4, True, 3], [4, "8", 3], [4, None]])
def test_mlp_and_autoencoder_refuse_sizes_that_are_not_positive_integers(sizes):
    # "784" used to build Linear(7 -> 8) -> Linear(8 -> 4), [4.7, 3] a Linear(4 -> 3)
    for builder in (models.mlp, models.autoencoder):
        with pytest.raises((TypeError, ValueError), match="sizes"):
            builder(sizes=sizes)


def test_build_names_bad_specs():
    with pytest.raises(ValueError, match="unknown model"):
        models.build({"name": ["mlp"]})
    with pytest.raises(TypeError, match="kwargs"):
        models.build({"name": "mlp", "kwargs": [1]})
    with pytest.raises(ValueError, match="unknown activation"):
        models.mlp((4, 3, 2), activation=["relu"])
    with pytest.raises(ValueError, match="image_size"):
        models.cnn(image_size=3)
    assert models.build({"name": "mlp", "kwargs": {"sizes": [4.0, 3]}})[1].in_features == 4
