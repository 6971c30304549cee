"""How the test suite runs its GPU tests a second time under the CPU emulation.

``tests/conftest.py`` wires these in:
- ``install_emulation`` (the ``cuda_emulation`` fixture): the fake ``cupy`` replaces the real
  one for one test, and ``get_backend("cuda")`` builds a fresh, unchanged ``CupyBackend`` on it;
- every test with a ``gpu`` mark of its own gets a ``cuda_emulated`` twin (``_cuda_variant``);
  the ``any_device`` fixture gains a ``cuda_emulated`` device;
- twins lose the ``gpu`` mark, so ``pytest -m gpu`` (the hardware run) never selects them and
  ``pytest -m cuda_emulated`` selects exactly the emulated tests.
Twins that reach for streams, CUDA graphs or private memory pools skip with that reason.
"""
from __future__ import annotations

import pytest

from cuda_emulation import fakecupy

MARK = "cuda_emulated"
EMULATED_DEVICE = pytest.param(MARK, marks=pytest.mark.cuda_emulated, id=MARK)
VARIANTS = [pytest.param("gpu", id="gpu"),
            pytest.param(MARK, marks=pytest.mark.cuda_emulated, id=MARK)]


def install_emulation(monkeypatch, **config):
    """Install the fake CuPy for the current test (see ``fakecupy.install`` for ``config``)."""
    if fakecupy.compiler() is None:
        pytest.skip("the CUDA emulation compiles kernels with g++, which is not installed "
                    "(or set CXX to a C++17 compiler)")
    from tensornet import backends
    cupy = fakecupy.install(monkeypatch, **config)
    monkeypatch.setattr(backends, "_CACHE", {})
    monkeypatch.setattr(backends, "_BY_TYPE", {})  # else it keeps this test's backends after it
    return cupy


def add_emulated_variants(metafunc) -> None:
    """``pytest_generate_tests``: a gpu-marked test runs on the GPU and emulated."""
    if next(metafunc.definition.iter_markers("gpu"), None) is None:
        return
    if next(metafunc.definition.iter_markers("real_gpu"), None) is not None:
        return  # it needs the real runtime (other processes, say): no emulated twin
    if "_cuda_variant" in metafunc.fixturenames:
        metafunc.parametrize("_cuda_variant", VARIANTS, indirect=True)


def strip_gpu_mark_from_twins(items) -> None:
    """An emulated twin is no GPU test: drop the gpu mark it inherited from its function."""
    for item in items:
        if item.get_closest_marker(MARK) is not None:
            item.own_markers[:] = [m for m in item.own_markers if m.name != "gpu"]
