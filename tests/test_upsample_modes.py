"""Upsample's modes as torch.nn.Upsample's (bilinear, bicubic, nearest-exact, area; linear,
trilinear and nearest on 3-D and 5-D inputs): forward and backward against torch on
identical inputs (sizes and factors up and down, an axis that keeps its
size under a factor, 1-pixel inputs, align_corners both ways, float64 and float32, every
backend), bicubic's rows against Keys' kernel by hand, a float64 gradient check, and the
ONNX file."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

CASES = [((3, 5), dict(size=(6, 9))), ((7, 7), dict(size=(2, 3))), ((4, 1), dict(scale_factor=2)),
         ((5, 8), dict(scale_factor=1.7)), ((3, 5), dict(scale_factor=(0.6, 2.5))),
         ((3, 5), dict(scale_factor=1.2)),  # H: 3 -> 3 under a factor of 1.2, as torch
         ((1, 4), dict(size=(1, 1))), ((5, 8), dict(scale_factor=0.5)),
         ((6, 6), dict(size=(6, 6))), ((2, 2), dict(size=(7, 5))), ((1, 1), dict(size=(3, 4)))]
MODES = ["bilinear", "bicubic"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hw, size", CASES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_upsample_matches_torch(mode, hw, size, align_corners, dtype, tol, device):
    _against_torch(mode, (2, 3, *hw), size, align_corners, dtype, tol, device)


def _against_torch(mode, shape, size, corners, dtype, tol, device, seed=0):
    """Forward and backward of tn's and torch's Upsample on the same host inputs."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    layer = nn.Upsample(mode=mode, align_corners=corners, **size).to(device)
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.Upsample(mode=mode, align_corners=corners, **size)(xt)
    grad = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(grad))
    dx = layer.backward(backend.asarray(grad))
    assert tuple(y.shape) == tuple(yt.shape) and tuple(dx.shape) == x.shape
    assert tn.asnumpy(y).dtype == np.dtype(dtype) and tn.asnumpy(dx).dtype == np.dtype(dtype)
    np.testing.assert_allclose(tn.asnumpy(y), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)


def _keys(d, a=-0.75):
    """Keys' cubic convolution kernel at distance d."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
    if d < 2:
        return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
    return 0.0


def test_bicubic_rows_are_keys_kernel_with_clamped_edges():
    """Written out from the definition: output pixel i of 4 -> 7 sits at s = (i + 0.5) *
    4/7 - 0.5 (not clamped at 0) and takes weight K(s - j) from pixel j = floor(s) - 1 ..
    floor(s) + 2, a pixel past the edge lending its weight to the edge pixel."""
    matrix = nn.Upsample(size=(7, 7), mode="bicubic")._axis_matrix(0, 4)
    expected = np.zeros((7, 4))
    for i in range(7):
        s = (i + 0.5) * 4 / 7 - 0.5
        for j in range(int(np.floor(s)) - 1, int(np.floor(s)) + 3):
            expected[i, min(max(j, 0), 3)] += _keys(s - j)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-15)  # weights sum to one
    assert (matrix < 0).any()  # the cubic's negative lobes: it can overshoot, as torch's


@pytest.mark.parametrize("mode", MODES)
def test_upsample_passes_the_gradient_check(mode):
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 4))
    assert tn.gradcheck(nn.Upsample(scale_factor=1.5, mode=mode).double(), [x])
    assert tn.gradcheck(nn.Upsample(size=(5, 2), mode=mode, align_corners=True).double(), [x])


@pytest.mark.parametrize("mode, corners", [("bilinear", False), ("bicubic", True)])
def test_upsample_exports_to_onnx(tmp_path, mode, corners):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1),
                          nn.Upsample(scale_factor=2, mode=mode, align_corners=corners))
    tn.onnx.export(model, x, tmp_path / "up.onnx")
    session = ort.InferenceSession(str(tmp_path / "up.onnx"), providers=["CPUExecutionProvider"])
    model.eval()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                               atol=1e-6)
    assert f"mode={mode!r}" + (", align_corners=True" if corners else "") in repr(model[1])


# ---------------------------------------------------------------------- 1-D and 3-D
VOLUME_CASES = [
    ("linear", (7,), dict(size=12)), ("linear", (5,), dict(scale_factor=0.6)),
    ("linear", (4,), dict(scale_factor=1.2)), ("linear", (1,), dict(size=3)),
    ("nearest", (5,), dict(scale_factor=2)), ("nearest", (7,), dict(size=3)),
    ("trilinear", (3, 4, 5), dict(size=(5, 3, 8))), ("trilinear", (2, 3, 3),
                                                      dict(scale_factor=(1.5, 2, 0.7))),
    ("trilinear", (3, 3, 2), dict(scale_factor=2)), ("trilinear", (1, 2, 2), dict(size=2)),
    ("nearest", (2, 3, 4), dict(scale_factor=(2, 1.5, 0.5))), ("nearest", (3, 2, 2),
                                                              dict(size=(4, 4, 3)))]


@pytest.mark.parametrize("mode, spatial, size, corners", [
    (*case, corners) for case in VOLUME_CASES
    for corners in ([None] if case[0] == "nearest" else [False, True])])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_linear_trilinear_and_nearest_on_3d_and_5d_inputs_match_torch(mode, spatial, size,
                                                                       corners, dtype, tol,
                                                                       device):
    _against_torch(mode, (2, 3, *spatial), size, corners, dtype, tol, device, seed=3)


@pytest.mark.parametrize("spatial, size", [hw_size for hw_size in CASES] + [
    ((7,), dict(size=12)), ((5,), dict(scale_factor=0.6)), ((4,), dict(scale_factor=1.2)),
    ((3,), dict(scale_factor=1.5)), ((10,), dict(size=3)), ((6,), dict(size=4)),
    ((9,), dict(scale_factor=1 / 3)), ((2, 3, 4), dict(scale_factor=(2, 1.5, 0.5))),
    ((3, 2, 5), dict(size=(4, 4, 3)))])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize("mode", ["nearest-exact", "area"])
def test_nearest_exact_and_area_match_torch(mode, spatial, size, dtype, tol, device):
    """nearest-exact: output i reads floor((i + 0.5) * in / out), also where 'nearest' reads
    another pixel (factors 1.2 and 1.5, sizes 10 -> 3 and 6 -> 4); area: overlapping bins
    (10 -> 3, 6 -> 4), upsizing (each output one input) and sizes kept."""
    _against_torch(mode, (2, 3, *spatial), size, None, dtype, tol, device, seed=8)


def test_nearest_exact_reads_the_nearest_centre_where_nearest_shifts():
    x = np.arange(6, dtype=np.float64).reshape(1, 1, 6)
    assert nn.Upsample(size=4, mode="nearest-exact")(x).ravel().tolist() == [0, 2, 3, 5]
    assert nn.Upsample(size=4, mode="nearest")(x).ravel().tolist() == [0, 1, 3, 4]
    with pytest.raises(ValueError, match="align_corners only applies"):
        nn.Upsample(size=4, mode="nearest-exact", align_corners=False)
    with pytest.raises(ValueError, match="align_corners only applies"):
        nn.Upsample(size=4, mode="area", align_corners=True)
    assert nn.Upsample(size=3, mode="area")(x).ravel().tolist() == [0.5, 2.5, 4.5]
    with pytest.raises(ValueError, match="mode must be 'nearest', 'nearest-exact'"):
        nn.Upsample(size=4, mode=["nearest"])


@pytest.mark.parametrize("mode, shape", [("linear", (1, 2, 5)), ("trilinear", (1, 2, 2, 3, 3)),
                                         ("nearest-exact", (1, 2, 3, 4)),
                                         ("area", (1, 2, 3, 5)), ("area", (1, 2, 5)),
                                         ("nearest", (1, 2, 2, 3, 3))])
def test_volume_modes_pass_the_gradient_check(mode, shape):
    x = np.random.default_rng(4).standard_normal(shape)
    assert tn.gradcheck(nn.Upsample(scale_factor=1.5, mode=mode).double(), [x])


@pytest.mark.parametrize("mode, shape, expected", [
    ("linear", (2, 3, 4, 4), r"\(N, C, L\)"), ("bilinear", (2, 3, 4), r"\(N, C, H, W\)"),
    ("bicubic", (2, 3, 2, 4, 4), r"\(N, C, H, W\)"), ("trilinear", (2, 3, 4, 4),
                                                      r"\(N, C, D, H, W\)"),
    ("nearest", (2, 3), r"\(N, C, L\) or \(N, C, H, W\) or \(N, C, D, H, W\)")])
def test_a_mode_given_the_wrong_number_of_axes_says_which_it_takes(mode, shape, expected):
    layer = nn.Upsample(scale_factor=2, mode=mode)
    with pytest.raises(ValueError, match=f"Upsample.*{expected}"):
        layer(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("mode, shape", [("nearest", (2, 0, 4, 4)), ("bilinear", (2, 0, 4, 4)),
                                         ("linear", (1, 0, 5)),
                                         ("trilinear", (1, 0, 2, 2, 2))])
def test_an_input_without_channels_is_refused_as_in_pytorch(mode, shape):
    # PyTorch: "Non-empty 4D data tensor expected but got a tensor with sizes [2, 0, 4, 4]"
    with pytest.raises(ValueError, match=r"Upsample\(.*has no channels \(C = 0\)"):
        nn.Upsample(scale_factor=2, mode=mode)(np.zeros(shape, dtype=np.float32))


def test_a_size_per_axis_must_match_the_input_axes():
    with pytest.raises(ValueError, match=r"size \(4, 4\) has 2 values for an input with 3 "
                                         r"spatial axes \(N, C, D, H, W\)"):
        nn.Upsample(size=(4, 4), mode="trilinear")(np.zeros((1, 1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="scale_factor must be a positive number or one per "
                                         "spatial axis"):
        nn.Upsample(scale_factor=(1, 2, 3, 4))
    assert repr(nn.Upsample(size=5)) == "Upsample(size=5, mode='nearest')"


@pytest.mark.parametrize("mode, shape, size", [("linear", (2, 3, 5), dict(scale_factor=2.5)),
                                               ("trilinear", (2, 3, 2, 3, 4),
                                                dict(size=(3, 5, 2))),
                                               ("nearest", (1, 2, 3, 2, 2),
                                                dict(scale_factor=(2, 1, 1.5))),
                                               ("nearest-exact", (1, 2, 5, 6),
                                                dict(scale_factor=(1.5, 0.7))),
                                               ("area", (1, 2, 7, 6), dict(size=(3, 4)))])
def test_volume_upsample_exports_to_onnx(tmp_path, mode, shape, size):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    model = nn.Sequential(nn.Upsample(mode=mode, **size))
    tn.onnx.export(model, x, tmp_path / "up.onnx")
    session = ort.InferenceSession(str(tmp_path / "up.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("mode, shape, size", [
    ("linear", (2, 3, 5), dict(scale_factor=2.5)), ("bicubic", (2, 3, 4, 5), dict(size=(7, 3))),
    ("bilinear", (2, 3, 4, 5), dict(scale_factor=1.5)),
    ("trilinear", (2, 3, 2, 3, 4), dict(size=(3, 5, 2))),
    ("nearest", (1, 2, 3, 2, 2), dict(scale_factor=(2, 1, 1.5))),
    ("nearest-exact", (2, 3, 5), dict(size=3)),
    ("area", (2, 3, 4, 6, 5), dict(size=(3, 4, 2))),
    ("bilinear", (2, 3, 9, 8), dict(size=(4, 3), antialias=True))])
def test_upsample_agrees_across_backends(mode, shape, size, any_device):
    """numpy, strict, torch and CuPy (or its emulation) on the same host input, float32."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for device in ("cpu", any_device):
        backend = tn.get_backend(device)
        layer = nn.Upsample(mode=mode, **size)
        y = layer(backend.asarray(x))
        dy = np.random.default_rng(7).standard_normal(tuple(y.shape)).astype(np.float32)
        dx = layer.backward(backend.asarray(dy))
        results.append((tn.asnumpy(y), tn.asnumpy(dx)))
    for got, expected in zip(results[1], results[0]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- antialias, recompute
def _against_interpolate(shape, options, dtype, tol, device, seed=9):
    """tn's Upsample against torch.nn.functional.interpolate (which has ``antialias``,
    torch.nn.Upsample has not), forward and backward."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    layer = nn.Upsample(**options).to(device)
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, **options)
    grad = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(grad))
    dx = layer.backward(backend.asarray(grad))
    assert tuple(y.shape) == tuple(yt.shape)
    np.testing.assert_allclose(tn.asnumpy(y), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)


AA_CASES = [((17, 13), dict(size=(5, 4))), ((9, 9), dict(scale_factor=0.37)),
            ((8, 6), dict(size=(8, 6))), ((5, 7), dict(size=(11, 3))),
            ((20, 3), dict(scale_factor=(0.25, 3.0))), ((7, 7), dict(size=(1, 1))),
            ((4, 4), dict(size=(2, 2)))]


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("hw, size", AA_CASES)
@pytest.mark.parametrize("corners", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_antialias_matches_torch_interpolate(mode, hw, size, corners, dtype, tol, device):
    """Shrinking by 3.4x, 4x and 7x, growing, sizes kept, 1-pixel outputs, both modes."""
    _against_interpolate((2, 3, *hw), dict(mode=mode, align_corners=corners, antialias=True,
                                           **size), dtype, tol, device)


@pytest.mark.parametrize("mode, shape, factor", [
    ("nearest", (2, 3, 5, 7), 1.7), ("nearest-exact", (2, 3, 9), 0.45),
    ("bilinear", (2, 3, 5, 7), (1.3, 0.6)), ("bicubic", (2, 3, 6, 4), 2.3),
    ("linear", (2, 3, 7), 1.45), ("trilinear", (1, 2, 3, 4, 5), 1.7), ("area", (2, 3, 9, 5), 0.4)])
@pytest.mark.parametrize("recompute", [None, True])
def test_recompute_scale_factor_matches_torch(mode, shape, factor, recompute):
    """With recompute_scale_factor=True the coordinates come from in / out, not from the
    factor given: other pixels and weights wherever floor(in * factor) / in != factor."""
    _against_interpolate(shape, dict(mode=mode, scale_factor=factor,
                                     recompute_scale_factor=recompute), "float64", 1e-12,
                         "cpu")


def test_antialias_weights_average_every_input_pixel_when_shrinking():
    """Shrinking 12 -> 3 with the triangle filter widened 4x: each output pixel is a
    weighted mean of the inputs under its 8-pixel-wide window (weights sum to one, every
    input pixel has a weight), where plain bilinear reads only 2 of every 4."""
    matrix = nn.Upsample(size=(3, 3), mode="bilinear", antialias=True)._axis_matrix(0, 12)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-15)
    assert (matrix.sum(axis=0) > 0).all() and (matrix >= 0).all()
    plain = nn.Upsample(size=(3, 3), mode="bilinear")._axis_matrix(0, 12)
    assert ((plain.sum(axis=0) > 0).sum()) == 6
    x = np.random.default_rng(10).standard_normal((1, 1, 12, 12))
    assert tn.gradcheck(nn.Upsample(size=(3, 5), mode="bicubic", antialias=True).double(), [x])


def test_antialias_and_recompute_options_are_checked():
    with pytest.raises(ValueError, match="antialias=True applies to the modes 'bilinear' and "
                                         "'bicubic'.*not 'nearest'"):
        nn.Upsample(scale_factor=0.5, antialias=True)
    with pytest.raises(ValueError, match="recompute_scale_factor=True needs scale_factor"):
        nn.Upsample(size=3, mode="linear", recompute_scale_factor=True)
    with pytest.raises(ValueError, match="antialias must be True or False, got 'yes'"):
        nn.Upsample(size=3, mode="bilinear", antialias="yes")
    assert repr(nn.Upsample(scale_factor=0.5, mode="bicubic", antialias=True,
                            recompute_scale_factor=True)) == (
        "Upsample(scale_factor=0.5, mode='bicubic', recompute_scale_factor=True, "
        "antialias=True)")


def test_antialias_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.random.default_rng(11).standard_normal((2, 3, 16, 12)).astype(np.float32)
    model = nn.Sequential(nn.Upsample(size=(5, 4), mode="bicubic", antialias=True))
    tn.onnx.export(model, x, tmp_path / "aa.onnx")
    session = ort.InferenceSession(str(tmp_path / "aa.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                               atol=1e-6)


# ---------------------------------------------------------------------- edge cases from review
def _forward_matches_torch(shape, options):
    """Forward only, against F.interpolate, float64; plus a gradient check of the layer's own
    backward (where PyTorch's backward disagrees with its own forward, see below)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(12).standard_normal(shape)
    layer = nn.Upsample(**options)
    expected = torch.nn.functional.interpolate(torch.tensor(x), **options).numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert tn.gradcheck(layer.double(), [x])


@pytest.mark.parametrize("shape, options", [
    ((1, 2, 2, 2), dict(scale_factor=1.2, mode="bilinear", antialias=True)),
    ((1, 2, 2, 4), dict(scale_factor=(1.4, 2.0), mode="bicubic", antialias=True)),
    ((1, 2, 5, 9), dict(scale_factor=(1.1, 0.5), mode="bilinear", antialias=True))])
def test_antialias_keeps_an_axis_of_unchanged_size_as_pytorch_forward(shape, options):
    """PyTorch's antialiased forward copies an axis whose size a factor leaves unchanged
    (its backward resamples it: the gradient here is that of the forward)."""
    _forward_matches_torch(shape, options)


@pytest.mark.parametrize("shape", [(1, 2, 5), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("factor", [2.0000001, 1.0000001, 1.2])
def test_nearest_on_3d_and_5d_inputs_takes_no_image_shortcut(shape, factor):
    """PyTorch's image kernel copies an axis that keeps its size and reads i // 2 for an
    axis of exactly twice the size, whatever the factor; its 1-D and 3-D kernels do not."""
    _forward_matches_torch(shape, dict(scale_factor=factor, mode="nearest"))


@pytest.mark.parametrize("mode, extra", [("nearest-exact", {}), ("area", {}),
                                         ("bilinear", {}), ("bicubic", dict(antialias=True)),
                                         ("linear", {})])
def test_an_input_empty_along_a_spatial_axis_is_refused(mode, extra):
    shape = (1, 1, 0) if mode == "linear" else (1, 1, 0, 5)
    size = 3 if mode == "linear" else (3, 4)
    with pytest.raises(ValueError, match=r"Upsample\(.*is empty along a spatial axis"):
        nn.Upsample(size=size, mode=mode, **extra)(np.zeros(shape))


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), (2.0, float("nan"))])
def test_a_scale_factor_that_is_not_finite_is_refused_when_built(factor):
    with pytest.raises(ValueError, match="scale_factor must be a positive number"):
        nn.Upsample(scale_factor=factor, mode="nearest-exact")
