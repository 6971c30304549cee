"""MarginRankingLoss, CosineEmbeddingLoss and TripletMarginLoss as torch's: the loss and the
gradient of every input (the first returned by backward, the others in ``input2_grad``,
``positive_grad``, ``negative_grad``) against torch on identical inputs, kinks included,
every reduction, batched and unbatched, float64 and float32, the CPU and strict backends;
gradchecks for every input; every backend; errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from finite_differences import central_differences
from tensornet import nn
from torch_reference import torch_or_skip

REDUCTIONS = ["mean", "sum", "none", "batchmean"]


def _case(name, rng, dtype, unbatched=False):
    """(tensornet loss class, torch class, options, inputs, target or None)."""
    shape = (5,) if unbatched else (6, 5)
    if name == "ranking":
        x1, x2 = rng.standard_normal(7), rng.standard_normal(7)
        x2[:2] = x1[:2] - np.array([0.0, 0.5])  # the hinge's kink at margin 0.5 ... and 0
        y = np.array([1.0, -1.0] + list(rng.choice([-1.0, 1.0], 5)))
        return nn.MarginRankingLoss, "MarginRankingLoss", dict(margin=0.5), [x1, x2], y
    if name == "cosine":
        x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
        y = np.array(-1.0) if unbatched else rng.choice([-1.0, 1.0], 6)
        if not unbatched:
            x2[0] = x1[0]  # cos 1
            x2[1] = -x1[1]  # cos -1, below the margin: inactive
        return nn.CosineEmbeddingLoss, "CosineEmbeddingLoss", dict(margin=0.2), [x1, x2], y
    p, swap = {"triplet": (2.0, False), "triplet-p1-swap": (1.0, True),
               "triplet-p3": (3.0, False)}[name]
    inputs = [rng.standard_normal(shape) for _ in range(3)]
    return (nn.TripletMarginLoss, "TripletMarginLoss", dict(margin=2.0, p=p, swap=swap),
            inputs, None)


NAMES = ["ranking", "cosine", "triplet", "triplet-p1-swap", "triplet-p3"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_pair_losses_match_torch(name, reduction, unbatched, dtype, tol, device, rng):
    torch = torch_or_skip()
    if unbatched and name == "ranking":
        pytest.skip("MarginRankingLoss is elementwise: every shape is batched")
    ours_cls, torch_name, options, inputs, target = _case(name, rng, dtype, unbatched)
    inputs = [a.astype(dtype) for a in inputs]
    backend = tn.get_backend(device)
    loss_fn = ours_cls(reduction=reduction, **options)
    args = [backend.asarray(a) for a in inputs]
    if target is not None:
        args.append(backend.asarray(target.astype(dtype)))
    loss = loss_fn(*args)
    tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
    extra = [] if target is None else [torch.tensor(target.astype(dtype))]
    twin = getattr(torch.nn, torch_name)(reduction="sum" if reduction == "batchmean"
                                         else reduction, **options)
    expected = twin(*tensors, *extra)
    if reduction == "batchmean":  # the base class's: the sum over the batch axis's length
        expected = expected / (1 if unbatched else inputs[0].shape[0])
    upstream = rng.standard_normal(tuple(expected.shape)).astype(dtype)
    (expected * torch.tensor(upstream)).sum().backward()
    grad = loss_fn.backward(backend.asarray(upstream) if reduction == "none"
                            else float(upstream))
    np.testing.assert_allclose(tn.asnumpy(loss), expected.detach().numpy(), rtol=tol,
                               atol=tol)
    others = ([loss_fn.input2_grad] if target is not None
              else [loss_fn.positive_grad, loss_fn.negative_grad])
    for got, tensor in zip([grad] + others, tensors):
        assert tuple(got.shape) == tuple(tensor.shape)
        assert tn.asnumpy(got).dtype == np.dtype(dtype)
        np.testing.assert_allclose(tn.asnumpy(got), tensor.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_every_inputs_gradient_against_finite_differences(name, rng):
    ours_cls, _, options, inputs, target = _case(name, rng, "float64")
    inputs = [a + 0.01 * rng.standard_normal(a.shape) for a in inputs]  # off the kinks
    loss_fn = ours_cls(**options).double()
    extra = [] if target is None else [target]
    loss_fn(*inputs, *extra)
    grads = [loss_fn.backward()] + ([loss_fn.input2_grad] if target is not None
                                    else [loss_fn.positive_grad, loss_fn.negative_grad])
    for k, (array, analytic) in enumerate(zip(inputs, grads)):
        def loss_of(x, k=k):
            return loss_fn(*inputs[:k], x, *inputs[k + 1:], *extra)
        np.testing.assert_allclose(analytic, central_differences(loss_of, array), rtol=1e-6,
                                   atol=1e-8, err_msg=f"{name} input {k}")
    if target is not None:  # the first input also through tn.gradcheck
        assert tn.gradcheck(loss_fn, (inputs[0], inputs[1], target))


@pytest.mark.parametrize("name", ["ranking", "cosine", "triplet-p1-swap"])
def test_pair_losses_agree_across_backends(name, any_device, rng):
    ours_cls, _, options, inputs, target = _case(name, rng, "float32")
    inputs = [a.astype(np.float32) for a in inputs]
    extra = [] if target is None else [target.astype(np.float32)]
    backend = tn.get_backend(any_device)
    ref, loss_fn = ours_cls(**options), ours_cls(**options)
    expected = ref(*inputs, *extra)
    got = loss_fn(*(backend.asarray(a) for a in inputs + extra))
    np.testing.assert_allclose(tn.asnumpy(got), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(loss_fn.backward()), ref.backward(), rtol=1e-5,
                               atol=1e-6)


def test_pair_loss_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="MarginRankingLoss expects targets of -1 or 1"):
        nn.MarginRankingLoss()(x[0], x[0], np.array([1.0, 0.0, 1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match=r"MarginRankingLoss got input2 of shape \(3,\) for "
                                         r"input1 of shape \(4,\)"):
        nn.MarginRankingLoss()(x[0], x[0, :3], np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"CosineEmbeddingLoss got input1 of shape "
                                         r"\(2, 3, 4\); expected \(N, D\) or \(D,\)"):
        nn.CosineEmbeddingLoss()(np.zeros((2, 3, 4), np.float32),
                                 np.zeros((2, 3, 4), np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"CosineEmbeddingLoss got target of shape \(4,\)"):
        nn.CosineEmbeddingLoss()(x, x, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="TripletMarginLoss expected a floating negative"):
        nn.TripletMarginLoss()(x, x, np.zeros((3, 4), np.int64))
    with pytest.raises(TypeError, match="TripletMarginLoss expected positive as an array"):
        nn.TripletMarginLoss()(x, [0.0], x)
    with pytest.raises(ValueError, match="TripletMarginLoss: p must be a positive finite"):
        nn.TripletMarginLoss(p=0)
    with pytest.raises(ValueError, match="MarginRankingLoss: margin must be a number, got '1'"):
        nn.MarginRankingLoss("1")
    with pytest.raises(ValueError, match="TripletMarginLoss: swap must be True or False"):
        nn.TripletMarginLoss(swap="no")
    assert repr(nn.TripletMarginLoss(swap=True)) == (
        "TripletMarginLoss(reduction='mean', margin=1.0, p=2.0, eps=1e-06, swap=True)")
