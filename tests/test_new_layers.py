"""The layers of issue 16 (GELU, SiLU, Hardtanh, PReLU, Conv1d, ConvTranspose2d,
AdaptiveAvgPool2d, Upsample, Dropout2d, Embedding): float64 gradchecks on every CPU
backend, forward and backward against PyTorch on identical host inputs (numpy and strict),
and the errors users see."""
import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

from torch_reference import compare_layer, torch_or_skip

F64 = dict(dtype="float64")
# PyTorch's own note on padding="same" with an even kernel, not about tensornet
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _cases(device):
    """name -> (tensornet layer, torch twin builder, input shape)."""
    d = dict(device=device, **F64)
    return {
        "GELU": (nn.GELU(), lambda t: t.nn.GELU(), (4, 6)),
        "GELU-tanh": (nn.GELU("tanh"), lambda t: t.nn.GELU(approximate="tanh"), (4, 6)),
        "SiLU": (nn.SiLU(), lambda t: t.nn.SiLU(), (4, 6)),
        "Hardtanh": (nn.Hardtanh(-0.5, 0.8), lambda t: t.nn.Hardtanh(-0.5, 0.8), (4, 6)),
        "PReLU": (nn.PReLU(init=0.1, **d), lambda t: t.nn.PReLU(init=0.1), (3, 4, 2, 2)),
        "PReLU-channels": (nn.PReLU(4, 0.3, **d), lambda t: t.nn.PReLU(4, 0.3), (3, 4, 2, 2)),
        "Conv1d": (nn.Conv1d(3, 4, 3, **d), lambda t: t.nn.Conv1d(3, 4, 3), (2, 3, 7)),
        "Conv1d-strided": (nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, **d),
                           lambda t: t.nn.Conv1d(4, 6, 3, 2, 2, 2, groups=2), (2, 4, 9)),
        "Conv1d-same": (nn.Conv1d(2, 3, 4, padding="same", bias=False, **d),
                        lambda t: t.nn.Conv1d(2, 3, 4, padding="same", bias=False), (2, 2, 6)),
        "ConvTranspose2d": (nn.ConvTranspose2d(3, 2, 3, **d),
                            lambda t: t.nn.ConvTranspose2d(3, 2, 3), (2, 3, 3, 4)),
        "ConvTranspose2d-strided": (
            nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2,
                               **d),
            lambda t: t.nn.ConvTranspose2d(4, 6, (3, 2), 2, 1, 1, groups=2), (2, 4, 3, 3)),
        "ConvTranspose2d-dilated": (
            nn.ConvTranspose2d(2, 3, 2, stride=(1, 2), padding=(0, 1), output_padding=(1, 0),
                               dilation=2, bias=False, **d),
            lambda t: t.nn.ConvTranspose2d(2, 3, 2, (1, 2), (0, 1), (1, 0), bias=False,
                                           dilation=2), (1, 2, 3, 4)),
        "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d((2, 3)),
                              lambda t: t.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
        "AdaptiveAvgPool2d-None": (nn.AdaptiveAvgPool2d((None, 2)),
                                   lambda t: t.nn.AdaptiveAvgPool2d((None, 2)), (2, 2, 3, 4)),
        "AdaptiveAvgPool2d-1": (nn.AdaptiveAvgPool2d(1), lambda t: t.nn.AdaptiveAvgPool2d(1),
                                (2, 3, 4, 4)),
        "Upsample-2": (nn.Upsample(scale_factor=2), lambda t: t.nn.Upsample(scale_factor=2),
                       (2, 2, 3, 2)),
        "Upsample-fraction": (nn.Upsample(scale_factor=(1.5, 2.3)),
                              lambda t: t.nn.Upsample(scale_factor=(1.5, 2.3)), (1, 2, 3, 3)),
        "Upsample-size": (nn.Upsample(size=(5, 3)), lambda t: t.nn.Upsample(size=(5, 3)),
                          (1, 2, 3, 2)),
        "Embedding": (nn.Embedding(7, 3, **d), lambda t: t.nn.Embedding(7, 3), (4, 5)),
    }


NAMES = list(_cases("cpu"))


def _input(name, shape, rng):
    if name.startswith("Embedding"):
        return rng.integers(0, 7, shape)
    x = rng.standard_normal(shape)
    if name == "Hardtanh":
        x *= 2.0
    return x


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name, device, rng):
    layer, _, shape = _cases(device)[name]
    assert tn.gradcheck(layer, get_backend(device).asarray(_input(name, shape, rng)))


@pytest.mark.parametrize("name", NAMES)
def test_matches_pytorch_float64(name, device, rng):
    torch = torch_or_skip()
    layer, make, shape = _cases(device)[name]
    reference = make(torch).double()
    compare_layer(layer, reference, _input(name, shape, rng), device)


@pytest.mark.parametrize("name", ["GELU", "Conv1d-strided", "ConvTranspose2d-strided",
                                  "AdaptiveAvgPool2d", "PReLU-channels", "Embedding"])
def test_matches_pytorch_float32_and_keeps_float32(name, device, rng):
    torch = torch_or_skip()
    layer, make, shape = _cases(device)[name]
    layer.to(dtype="float32")
    x = _input(name, shape, rng)
    x = x.astype(np.float32) if x.dtype.kind == "f" else x
    compare_layer(layer, make(torch), x, device, rtol=2e-5, atol=2e-6)
    y = layer(get_backend(device).asarray(x))
    assert tn.asnumpy(y).dtype == np.float32


def test_gelu_is_accurate_far_into_both_tails(device):
    """x * Phi(x) against math.erfc (accurate to ~1 ulp) over [-38, 38]: relative 2e-14 on
    [-8, 8] and 5e-13 out to the underflow (the rounding of x*x inside exp grows with x^2),
    even where PyTorch's 0.5 x (1 + erf(x / sqrt 2)) cancels to 0; PyTorch agrees to 1e-15
    absolute."""
    torch = torch_or_skip()
    x = np.concatenate([np.linspace(-38, 38, 2001), [0.0, 1e-300, -1e-8]])
    got = tn.asnumpy(nn.GELU()(get_backend(device).asarray(x)))
    exact = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    near = np.abs(x) <= 8
    np.testing.assert_allclose(got[near], exact[near], rtol=2e-14, atol=1e-320)
    np.testing.assert_allclose(got, exact, rtol=5e-13, atol=1e-320)
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-15)


def test_embedding_padding_idx_stays_zero_and_gets_no_gradient(device, rng):
    torch = torch_or_skip()
    b = get_backend(device)
    layer = nn.Embedding(6, 3, padding_idx=-1, **F64, device=device)
    assert layer.padding_idx == 5 and np.all(tn.asnumpy(layer.weight.data)[5] == 0)
    reference = torch.nn.Embedding(6, 3, padding_idx=5).double()
    idx = np.array([[5, 1, 5], [2, 2, 0]])
    compare_layer(layer, reference, idx, device)
    assert np.all(tn.asnumpy(layer.weight.grad)[5] == 0)
    # repeated indices accumulate (row 2 twice, row 1 once)
    grad = tn.asnumpy(layer.weight.grad)
    assert np.abs(grad[2]).sum() > 0 and np.abs(grad[3]).sum() == 0
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\]; got indices from 0 to 6"):
        layer(b.asarray(np.array([0, 6])))
    with pytest.raises(TypeError, match="expected integer indices"):
        layer(b.asarray(np.zeros(3)))


def test_dropout2d_drops_whole_channels_and_is_reproducible(device):
    b = get_backend(device)
    layer = nn.Dropout2d(0.4)
    x = b.asarray(np.ones((400, 8, 3, 2), np.float32))
    tn.manual_seed(3)
    y = tn.asnumpy(layer(x))
    channel = y.reshape(400, 8, -1)
    assert np.all(channel.min(axis=2) == channel.max(axis=2))  # one draw per channel
    kept = channel[:, :, 0] != 0
    assert abs(kept.mean() - 0.6) < 0.03
    np.testing.assert_allclose(channel[:, :, 0][kept], 1 / 0.6, rtol=1e-6)
    np.testing.assert_array_equal(tn.asnumpy(layer.backward(x)), y)
    tn.manual_seed(3)
    np.testing.assert_array_equal(tn.asnumpy(layer(x)), y)
    assert tn.gradcheck(nn.Dropout2d(0.3), b.asarray(np.random.default_rng(0)
                                                     .standard_normal((3, 4, 2, 2))))
    assert tn.asnumpy(layer(b.asarray(np.ones((5, 3, 7), np.float32)))).shape == (5, 3, 7)
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match=r"Dropout2d\(p=0.4\) got input of shape \(5, 3\)"):
        nn.Dropout2d(0.4)(b.asarray(np.ones((5, 3), np.float32)))


def test_upsample_nearest_integer_factor_repeats_pixels(device):
    b = get_backend(device)
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    y = tn.asnumpy(nn.Upsample(scale_factor=(2, 3))(b.asarray(x)))
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(3, axis=3))


def test_adaptive_pool_equals_avg_pool_when_it_divides(device, rng):
    b = get_backend(device)
    x = b.asarray(rng.standard_normal((2, 3, 8, 6)).astype(np.float32))
    np.testing.assert_allclose(tn.asnumpy(nn.AdaptiveAvgPool2d((4, 3))(x)),
                               tn.asnumpy(nn.AvgPool2d(2)(x)), rtol=1e-6, atol=1e-6)


def test_conv_transpose_is_the_adjoint_of_conv2d(rng):
    """<conv(x), y> == <x, conv_transpose(y)> with the same weight (the definition)."""
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False, **F64)
    deconv = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, bias=False,
                                **F64)
    deconv.weight.data = conv.weight.data.copy()
    x = rng.standard_normal((2, 3, 8, 8))
    y = rng.standard_normal((2, 4, 4, 4))
    assert deconv(y).shape == x.shape
    assert np.sum(conv(x) * y) == pytest.approx(np.sum(x * deconv(y)), rel=1e-12)


def test_output_shapes_and_reprs():
    assert nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1).output_size(7, 7) == (14, 14)
    assert repr(nn.Conv1d(2, 4, 3, stride=2)) == "Conv1d(2, 4, kernel_size=3, stride=2)"
    assert "output_padding=1" in repr(nn.ConvTranspose2d(2, 2, 3, 2, 1, 1))
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert nn.Conv1d(3, 5, 4).weight.shape == (5, 3, 4)
    assert nn.ConvTranspose2d(6, 4, 3, groups=2).weight.shape == (6, 2, 3, 3)
    assert nn.PReLU(3).weight.shape == (3,)


def test_default_inits_follow_pytorch_bounds():
    conv = nn.Conv1d(4, 6, 5)
    bound = 1 / np.sqrt(4 * 5)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    deconv = nn.ConvTranspose2d(4, 6, 3, groups=2)
    bound = 1 / np.sqrt(3 * 3 * 3)  # fan_in = out/groups * kh * kw, as PyTorch
    assert np.abs(deconv.weight.data).max() <= bound
    assert np.abs(deconv.weight.data).max() > 0.8 * bound
    emb = nn.Embedding(2000, 10)
    assert abs(emb.weight.data.std() - 1.0) < 0.02


@pytest.mark.parametrize("build, shape, needle", [
    (lambda: nn.Conv1d(3, 4, 3), (2, 4, 9), r"Conv1d\(3 -> 4, k=3\) got input of shape "
                                            r"\(2, 4, 9\); expected \(N, 3, L\)"),
    (lambda: nn.Conv1d(3, 4, 5), (2, 3, 4), r"at least the \(dilated\) kernel size 5"),
    (lambda: nn.Conv1d(3, 4, 3), (2, 3, 4, 4), r"expected \(N, 3, L\)"),
    (lambda: nn.ConvTranspose2d(3, 4, 3), (2, 2, 4, 4), r"ConvTranspose2d\(3 -> 4, k=3\) got "
                                                       r"input of shape \(2, 2, 4, 4\)"),
    (lambda: nn.PReLU(4), (2, 3, 5), r"PReLU\(num_parameters=4\) got input of shape "
                                     r"\(2, 3, 5\); expected \(N, 4, ...\)"),
    (lambda: nn.AdaptiveAvgPool2d(2), (2, 3, 4), r"expected \(N, C, H, W\)"),
])
def test_bad_inputs_name_the_layer(build, shape, needle):
    with pytest.raises(ValueError, match=needle):
        build()(np.zeros(shape, np.float32))


def test_bad_arguments():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("erf")
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(2, 2, 3, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="ConvTranspose2d: in_channels"):
        nn.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Conv1d: in_channels must be"):
        nn.Conv1d(0, 4, 3)
    with pytest.raises(ValueError, match="Conv1d: kernel_size must be an int"):
        nn.Conv1d(2, 4, (3, 3))
    with pytest.raises(ValueError, match="mode must be 'nearest', 'nearest-exact', 'area', "
                                         "'linear', 'bilinear', 'bicubic' or 'trilinear'.*got "
                                         "'box'"):
        nn.Upsample(scale_factor=2, mode="box")
    with pytest.raises(ValueError, match="align_corners only applies to the modes 'linear'"):
        nn.Upsample(scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        nn.Upsample()
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(ValueError, match="min_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d(0)
