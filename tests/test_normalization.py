"""BatchNorm1d/2d and LayerNorm: gradchecks, hand-computed statistics, buffers, backends."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import dtype_name
from tensornet.nn import BatchNorm1d, BatchNorm2d, LayerNorm

BN_CASES = [  # layer class, input shape
    (BatchNorm1d, (6, 4)),
    (BatchNorm1d, (3, 4, 5)),
    (BatchNorm2d, (3, 4, 3, 5)),
]


def _randomise_affine(module, rng):
    module.weight.data = module.backend.asarray(rng.uniform(0.5, 2.0, module.weight.shape))
    module.bias.data = module.backend.asarray(rng.standard_normal(module.bias.shape))


@pytest.mark.parametrize("cls, shape", BN_CASES)
@pytest.mark.parametrize("mode", ["train", "eval", "untracked"])
def test_batchnorm_gradcheck(device, rng, cls, shape, mode):
    bn = cls(shape[1], track_running_stats=mode != "untracked", device=device, dtype="float64")
    _randomise_affine(bn, rng)
    if mode == "eval":
        bn.running_mean = bn.backend.asarray(rng.standard_normal(shape[1]))
        bn.running_var = bn.backend.asarray(rng.uniform(0.5, 2.0, shape[1]))
        bn.eval()
    elif mode == "untracked":
        bn.eval()  # no running stats: batch statistics even in eval, as PyTorch
    assert tn.gradcheck(bn, rng.standard_normal(shape) * 3.0 + 1.0)


def test_batchnorm_without_affine_gradchecks(device, rng):
    bn = BatchNorm2d(3, affine=False, device=device, dtype="float64")
    assert list(bn.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    assert tn.gradcheck(bn, rng.standard_normal((2, 3, 3, 3)))


@pytest.mark.parametrize("cls, shape", BN_CASES)
def test_batchnorm_train_steps_then_eval_match_hand_computed_statistics(device, rng, cls,
                                                                        shape):
    bn = cls(shape[1], momentum=0.1, device=device, dtype="float64")
    _randomise_affine(bn, rng)
    weight, bias = tn.asnumpy(bn.weight.data), tn.asnumpy(bn.bias.data)
    axes = (0,) + tuple(range(2, len(shape)))
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    running_mean, running_var = np.zeros(shape[1]), np.ones(shape[1])
    count = np.prod([shape[a] for a in axes])
    for step in range(3):
        x = rng.standard_normal(shape) * (step + 1) + step
        y = tn.asnumpy(bn(bn.backend.asarray(x)))
        mean, var = x.mean(axis=axes), x.var(axis=axes)  # biased, for normalising
        want = ((x - mean.reshape(per_channel)) / np.sqrt(var.reshape(per_channel) + 1e-5)
                * weight.reshape(per_channel) + bias.reshape(per_channel))
        np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * var * count / (count - 1)  # unbiased
    np.testing.assert_allclose(tn.asnumpy(bn.running_mean), running_mean, rtol=1e-12)
    np.testing.assert_allclose(tn.asnumpy(bn.running_var), running_var, rtol=1e-12)
    assert int(tn.asnumpy(bn.num_batches_tracked)) == 3
    bn.eval()
    x = rng.standard_normal(shape)
    want = ((x - running_mean.reshape(per_channel)) / np.sqrt(running_var.reshape(per_channel)
                                                              + 1e-5)
            * weight.reshape(per_channel) + bias.reshape(per_channel))
    np.testing.assert_allclose(tn.asnumpy(bn(bn.backend.asarray(x))), want, rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(tn.asnumpy(bn.running_mean), running_mean, rtol=1e-12)


def test_momentum_none_is_a_cumulative_average(rng):
    bn = BatchNorm1d(3, momentum=None, dtype="float64")
    batches = [rng.standard_normal((5, 3)) + i for i in range(4)]
    for x in batches:
        bn(x)
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(0) for x in batches], axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(bn.running_var,
                               np.mean([x.var(0, ddof=1) for x in batches], axis=0), rtol=1e-12)


def test_untracked_batchnorm_has_no_buffers_and_uses_batch_stats_in_eval(rng):
    bn = BatchNorm2d(2, track_running_stats=False, affine=False).eval()
    assert list(bn.state_dict()) == [] and bn.running_mean is None
    x = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-6)


def test_running_stats_are_buffers_saved_loaded_and_moved(rng):
    model = tn.nn.Sequential(tn.nn.Conv2d(1, 2, 3), BatchNorm2d(2), tn.nn.Flatten(),
                             BatchNorm1d(2 * 3 * 3))
    model(rng.standard_normal((4, 1, 5, 5)).astype(np.float32))
    state = model.state_dict()
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked",
                "3.running_mean", "3.running_var"):
        assert key in state
    assert int(state["1.num_batches_tracked"]) == 1
    twin = tn.nn.Sequential(tn.nn.Conv2d(1, 2, 3), BatchNorm2d(2), tn.nn.Flatten(),
                            BatchNorm1d(2 * 3 * 3))
    twin.load_state_dict(state)
    np.testing.assert_array_equal(twin[1].running_var, model[1].running_var)
    model.to("strict")
    bn = model[1]
    assert bn.backend.owns(bn.running_mean) and bn.backend.owns(bn.num_batches_tracked)
    assert dtype_name(bn.running_var.dtype) == "float32"
    assert dtype_name(bn.num_batches_tracked.dtype) == "int64"
    x = bn.backend.asarray(rng.standard_normal((4, 1, 5, 5)).astype(np.float32))
    model.eval()
    np.testing.assert_allclose(tn.asnumpy(model(x)), twin.eval()(tn.asnumpy(x)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("shape, normalized", [((4, 6), 6), ((2, 3, 4), (3, 4)),
                                               ((2, 3, 5), 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_reference_and_gradcheck(device, rng, shape, normalized, affine):
    ln = LayerNorm(normalized, elementwise_affine=affine, device=device, dtype="float64")
    if affine:
        _randomise_affine(ln, rng)
    x = rng.standard_normal(shape) * 2.0 + 0.5
    k = 1 if isinstance(normalized, int) else len(normalized)
    axes = tuple(range(len(shape) - k, len(shape)))
    want = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True)
                                                             + 1e-5)
    if affine:
        want = want * tn.asnumpy(ln.weight.data) + tn.asnumpy(ln.bias.data)
    np.testing.assert_allclose(tn.asnumpy(ln(ln.backend.asarray(x))), want, rtol=1e-10,
                               atol=1e-10)
    ln.eval()  # same statistics in eval
    np.testing.assert_allclose(tn.asnumpy(ln(ln.backend.asarray(x))), want, rtol=1e-10,
                               atol=1e-10)
    assert tn.gradcheck(ln, x)


@pytest.mark.parametrize("make, shape", [(lambda d: BatchNorm2d(4, device=d), (6, 4, 5, 3)),
                                         (lambda d: BatchNorm1d(5, device=d), (8, 5)),
                                         (lambda d: LayerNorm((4, 3), device=d), (5, 4, 3))])
def test_backends_agree_float32(any_device, rng, make, shape):
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    ref, layer = make("cpu"), make(any_device)
    y_ref, y = ref(x), layer(layer.backend.asarray(x))
    dx_ref, dx = ref.backward(grad), layer.backward(layer.backend.asarray(grad))
    for arr in (y, dx, layer.weight.grad, layer.bias.grad):
        assert dtype_name(arr.dtype) == "float32"
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(layer.weight.grad), ref.weight.grad, rtol=1e-4,
                               atol=1e-5)
    for name in ("running_mean", "running_var"):
        if hasattr(ref, name):
            np.testing.assert_allclose(tn.asnumpy(getattr(layer, name)), getattr(ref, name),
                                       rtol=1e-5, atol=1e-6)


def test_errors_name_layer_and_expected_shape():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16\) got input of shape \(8, 8, 5, 5\); "
                                         r"expected \(N, 16, H, W\)"):
        BatchNorm2d(16)(np.zeros((8, 8, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\) got input of shape \(8, 4, 2, 2\); "
                                         r"expected \(N, 4\) or \(N, 4, L\)"):
        BatchNorm1d(4)(np.zeros((8, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm1d(4)(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"LayerNorm\(\(6,\)\) got input of shape \(2, 5\)"):
        LayerNorm(6)(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        LayerNorm(6)(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm1d(3, momentum=1.5)


def test_a_user_assigned_weight_of_another_size_gets_an_error_naming_the_layer():
    bn = BatchNorm2d(3)
    bn.weight.data = np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): weight, bias, running_mean and "
                                         r"running_var must have 3 values.*shape \(2,\)"):
        bn(np.ones((2, 3, 4, 4), np.float32))
