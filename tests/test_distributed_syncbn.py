"""SyncBatchNorm without a second process: gradchecks, statistics that span the ranks
(against a stand-in communicator whose other rank holds the same values), eval, the
conversion of a model, and CUDA graphs refusing its host all-reduce. Over real ranks:
test_distributed.py."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from distributed_twin import TwinComm


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5)])
def test_syncbatchnorm_gradcheck_and_equals_batchnorm_alone(rng, shape):
    x = rng.standard_normal(shape)
    sync = nn.SyncBatchNorm(3, dtype="float64")
    tn.gradcheck(sync, x)
    plain = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(3, dtype="float64")
    g = rng.standard_normal(shape)
    np.testing.assert_array_equal(sync(x), plain(x))
    np.testing.assert_array_equal(sync.backward(g), plain.backward(g))


def test_syncbatchnorm_statistics_span_the_ranks(rng):
    """With a twin rank holding the same batch, the global statistics are the local ones
    (and the global count twice the local one): the all-reduced path must agree with
    BatchNorm, and the running variance must use the global count's Bessel factor."""
    x, g = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    comm = TwinComm()
    sync = nn.SyncBatchNorm(3, comm=comm, dtype="float64")
    plain = nn.BatchNorm2d(3, dtype="float64")
    np.testing.assert_allclose(sync(x), plain(x), rtol=1e-13)
    np.testing.assert_allclose(sync.backward(g), plain.backward(g), rtol=1e-12, atol=1e-14)
    assert comm.reductions == 3  # sums, squared deviations, the two backward sums
    var = x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1)
    np.testing.assert_allclose(sync.running_var, 0.9 + 0.1 * var * 32 / 31, rtol=1e-13)
    np.testing.assert_array_equal(sync.weight.grad, plain.weight.grad)  # local sums


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1)])
def test_syncbatchnorm_takes_one_sample_per_rank_when_the_global_count_is_larger(rng, shape):
    """A rank with a batch of one value per channel trains, as PyTorch's SyncBatchNorm: the
    statistics need two values over all ranks, not on each (the check was local, so this
    rank raised while the others waited in the all-reduce). The twin holds the same sample:
    the global batch is it twice."""
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    sync = nn.SyncBatchNorm(3, comm=TwinComm(), dtype="float64")
    plain = nn.BatchNorm1d(3, dtype="float64")
    np.testing.assert_allclose(sync(x), plain(np.concatenate([x, x]))[:1], atol=1e-12)
    np.testing.assert_allclose(sync.backward(g), plain.backward(np.concatenate([g, g]))[:1],
                               atol=1e-12)
    np.testing.assert_allclose(sync.running_mean, plain.running_mean, rtol=1e-13)
    np.testing.assert_allclose(sync.running_var, plain.running_var, rtol=1e-13)
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.SyncBatchNorm(3, dtype="float64")(x)  # alone, one value is one value


def test_syncbatchnorm_eval_without_running_stats_stays_on_this_rank(rng):
    """Eval with track_running_stats=False normalises with this rank's batch and does not
    communicate (PyTorch alike): ranks evaluating different numbers of batches
    (shard_tail="uneven") would otherwise wait for each other for ever."""
    x = rng.standard_normal((5, 3, 4))
    comm = TwinComm()
    sync = nn.SyncBatchNorm(3, track_running_stats=False, comm=comm, dtype="float64").eval()
    plain = nn.BatchNorm1d(3, track_running_stats=False, dtype="float64").eval()
    sums = []
    comm.sum = lambda values: sums.append(values) or np.array(values, np.float64) * 2
    np.testing.assert_array_equal(sync(x), plain(x))
    np.testing.assert_array_equal(sync.backward(x), plain.backward(x))
    assert comm.reductions == 0 and not sums


def test_convert_sync_batchnorm_keeps_parameters_and_keys():
    tn.manual_seed(0)
    model = tn.models.cnn(image_size=8)
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == 2
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_syncbatchnorm_over_several_ranks_is_refused_by_cuda_graphs():
    """A CUDA graph cannot capture its host all-reduce: graph steps must refuse it (they
    did not, outside DataParallel); over one process it is BatchNorm."""
    class TwoRanks:
        rank, size = 0, 2

    norm = nn.SyncBatchNorm(3)
    assert norm.graph_unsafe_reason is None  # no communicator: one process
    norm.comm = TwoRanks()
    assert "all-reduced over the ranks through MPI" in norm.graph_unsafe_reason
    assert norm.eval().graph_unsafe_reason is None  # eval uses the running statistics
