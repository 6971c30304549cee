"""The seams of the design (docs/ARCHITECTURE.md), checked: a small device interface, layer
math as functions with per-device overrides, optimizer math in the optimizers' own files,
the training step in tensornet/train.py."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import tensornet as tn
from tensornet import backends, nn
from tensornet.backends import Backend, FusedUpdate, get_backend
from tensornet.backends.cuda_graph import GraphCaptureError, check_capture_safe
from tensornet.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]


def _public_methods(cls) -> list:
    return [name for name, value in inspect.getmembers(cls)
            if not name.startswith("_") and callable(value)]


def test_the_device_interface_is_small():
    methods = _public_methods(Backend)
    assert len(methods) <= 25, methods
    for cls in (type(get_backend("cpu")), type(get_backend("strict"))):
        assert _public_methods(cls) == methods, cls  # devices add no public methods


def _code_identifiers_and_strings(path: Path):
    """Names and non-docstring string constants of a Python file (comments and docstrings
    left out)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            yield node.value


def test_no_file_under_backends_knows_an_optimizer():
    for path in sorted((ROOT / "backends").rglob("*.py")):
        for token in _code_identifiers_and_strings(path):
            assert not re.search(r"adam|rmsprop|adagrad|sgd", token, re.I), (path.name, token)


def test_nothing_outside_backends_imports_cupy_or_asks_for_the_gpu():
    for path in sorted((ROOT / "tensornet").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+cupy", text, re.M), path
        for token in _code_identifiers_and_strings(path):
            assert token not in ("cupy", "cheap_sync", "compile_step"), (path, token)


def test_no_training_step_or_layer_math_in_backends():
    for name in ("train_step", "compile_step", "im2col", "softmax_cross_entropy",
                 "sgd_update", "adam_update", "normalize"):
        assert not hasattr(Backend, name), name


@pytest.mark.parametrize("device", ["cpu", "strict", "torch"])
def test_device_overrides_name_functional_kernels_with_their_signatures(device):
    if device == "torch":
        pytest.importorskip("torch")
    cls = type(get_backend(device))
    for name, override in cls.kernels.items():
        generic = getattr(F, name).generic
        inner = inspect.unwrap(override)
        assert [p.name for p in inspect.signature(inner).parameters.values()] == \
            [p.name for p in inspect.signature(generic).parameters.values()], name


def test_an_override_may_hand_a_call_back_to_the_generic_version(monkeypatch):
    calls = []

    def relu(backend, x):
        calls.append(x.shape)
        return NotImplemented
    monkeypatch.setitem(type(get_backend("cpu")).kernels, "relu", relu)
    out = F.relu(np.array([-1.0, 2.0]))
    np.testing.assert_array_equal(out, [0.0, 2.0])
    assert calls == [(2,)]


def test_dtype_name_of_every_spelling():
    strict = get_backend("strict")
    for spelling in (np.float64, np.dtype("float64"), "float64", strict.xp.float64):
        assert backends.dtype_name(spelling) == "float64", spelling
    assert backends.dtype_name(np.int8) == "int8"
    torch = pytest.importorskip("torch")
    assert backends.dtype_name(torch.float32) == "float32"


def test_strict_is_pinned_to_the_2024_12_standard():
    import array_api_strict
    get_backend("strict")
    assert array_api_strict.get_array_api_strict_flags()["api_version"] == "2024.12"


def test_every_registered_device_string_resolves():
    assert get_backend("numpy") is get_backend("cpu")
    assert get_backend("array-api-strict") is get_backend("strict")
    torch = pytest.importorskip("torch")
    backend = get_backend("torch")
    assert get_backend("torch:cpu") is backend
    assert backends.backend_of(torch.zeros(2)) is backend
    with pytest.raises(backends.DeviceError, match="CUDA device visible to PyTorch"):
        get_backend("torch:cuda:7")


def test_pyproject_lists_every_package_of_the_tree():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "tensornet").rglob("__init__.py")}
    found |= {".".join(("tensornet",) + p.parent.relative_to(ROOT).parts)
              for p in (ROOT / "backends").rglob("__init__.py")}
    assert listed == found
    assert config["package-dir"] == {"tensornet.backends": "backends"}


def test_the_import_time_dependency_check_names_pyproject_s_dependencies():
    import re
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from tensornet import _REQUIRED
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(_REQUIRED.values()) == sorted(re.split(r"[<>=!~; ]", d)[0] for d in deps)


# ---------------------------------------------------------------------- CUDA-graph refusals
class _NoKernelSGD(tn.optim.SGD):
    """An optimizer whose rule has no kernel form: a graph must refuse it, not replay it
    eagerly on top of the captured step (a double update)."""

    def _rule(self, group):
        rule = super()._rule(group)
        return FusedUpdate(rule.name + "_python", rule.states, rule.scalars, rule.apply, None)


def _step():
    return lambda x, y: None


def test_graphs_refuse_an_optimizer_without_a_fused_kernel():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(GraphCaptureError, match="_NoKernelSGD.*no fused kernel"):
        check_capture_safe(_step(), model, _NoKernelSGD(model.parameters(), lr=0.1))
    check_capture_safe(_step(), model, tn.optim.SGD(model.parameters(), lr=0.1))


def test_graphs_refuse_a_layer_that_reads_the_host_and_name_it():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2, momentum=None))
    opt = tn.optim.Adam(model.parameters())
    with pytest.raises(GraphCaptureError, match=r"layer 1 \(BatchNorm1d\).*momentum=None"):
        check_capture_safe(_step(), model, opt)
    check_capture_safe(_step(), model.eval(), opt)


def test_graphs_refuse_an_unmarked_gradient_hook():
    model = nn.Sequential(nn.Linear(3, 2))
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    step = tn.make_train_step(model, nn.MSELoss(), opt, grad_hook=lambda m: None)
    with pytest.raises(GraphCaptureError, match="gradient hook is not marked graph_safe"):
        check_capture_safe(step, model, opt)
    clipped = tn.make_train_step(model, nn.MSELoss(), opt,
                                 grad_hook=tn.optim.ClipGradNorm(1.0))
    check_capture_safe(clipped, model, opt)
