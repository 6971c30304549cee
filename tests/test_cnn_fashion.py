"""A small CNN beats a same-size MLP on real Fashion-MNIST under the same training budget.

Both models have about 9.5k parameters, see the same 4,000 training images in the same
300 random batches of 64 with Adam (lr 2e-3), and are scored on 2,000 test images. The
convolutional inductive bias is worth several points of accuracy here (about 84% vs 78%
over seeds); a broken Conv2d, BatchNorm2d or MaxPool2d backward loses that edge.
"""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn

nn = tn.nn
TRAIN, TEST, STEPS, BATCH = 4000, 2000, 300, 64


@pytest.fixture(scope="module")
def fashion():
    try:
        x, y = tn.data.fashion_mnist("train", download=False)
        x_test, y_test = tn.data.fashion_mnist("test", download=False)
    except tn.data.DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): "
                    f"{exc}")
    return x[:TRAIN], y[:TRAIN], x_test[:TEST], y_test[:TEST]


def small_cnn():
    """conv-BN-ReLU-pool x2, then Linear: 9,146 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def same_size_mlp():
    """784-12-10 with ReLU: 9,550 parameters (slightly more than the CNN)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))


def train_and_score(model, data, seed=0):
    x, y, x_test, y_test = data
    optimizer = tn.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(STEPS):
        idx = rng.integers(0, len(x), BATCH)
        optimizer.zero_grad()
        loss_fn(model(x[idx]), y[idx])
        model.backward(loss_fn.backward())
        optimizer.step()
    model.eval()
    return float(np.mean(np.argmax(model(x_test), axis=1) == y_test))


@pytest.fixture
def one_blas_thread():
    """These GEMMs are small: on a busy 2-core CI machine a second BLAS thread mostly spins
    waiting for a core, making the test several times slower without changing a result."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def test_small_cnn_beats_same_size_mlp(fashion, one_blas_thread):
    tn.manual_seed(0)
    cnn, mlp = small_cnn(), same_size_mlp()
    assert abs(cnn.num_parameters() - mlp.num_parameters()) < 0.1 * mlp.num_parameters()
    cnn_acc = train_and_score(cnn, fashion)
    mlp_acc = train_and_score(mlp, fashion)
    assert mlp_acc > 0.65, f"the MLP baseline did not learn ({mlp_acc:.3f})"
    assert cnn_acc > mlp_acc + 0.02, f"CNN {cnn_acc:.3f} vs MLP {mlp_acc:.3f}"
