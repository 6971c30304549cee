"""Shared fixtures: backends to run over, host data, and GPU skipping.

GPU tests carry ``@pytest.mark.gpu``; they are skipped with a reason unless CuPy imports
and ``cupy.cuda.runtime.getDeviceCount()`` reports a device. Each also runs under the CPU
emulation of CuPy (``tests/cuda_emulation/``), as a twin marked ``cuda_emulated`` instead.
"""
from __future__ import annotations

import numpy as np
import pytest

from cuda_emulation.support import (EMULATED_DEVICE, MARK, add_emulated_variants,
                                    install_emulation, strip_gpu_mark_from_twins)


def _gpu_reason() -> str | None:
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as exc:  # CUDARuntimeError without a driver
        return f"no usable CUDA device ({type(exc).__name__})"
    return None


def _torch_reason() -> str | None:
    try:
        import torch  # noqa: F401
        import array_api_compat.torch  # noqa: F401
    except ImportError:
        return "PyTorch is not installed (pip install torch)"
    return None


GPU_SKIP_REASON = _gpu_reason()
TORCH_SKIP_REASON = _torch_reason()
# Every backend that runs on a CPU: NumPy, array-api-strict and PyTorch tensors (skipped,
# with the reason, where PyTorch is not installed).
CPU_DEVICES = ["cpu", "strict", pytest.param("torch", marks=pytest.mark.skipif(
    TORCH_SKIP_REASON is not None, reason=str(TORCH_SKIP_REASON)))]
ALL_DEVICES = CPU_DEVICES + [pytest.param("cuda", marks=pytest.mark.gpu), EMULATED_DEVICE]


def pytest_generate_tests(metafunc):
    add_emulated_variants(metafunc)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marks
def pytest_collection_modifyitems(config, items):
    strip_gpu_mark_from_twins(items)
    if GPU_SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=f"GPU test: {GPU_SKIP_REASON}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def cuda_emulation(monkeypatch):
    """The fake CuPy of tests/cuda_emulation installed: ``get_backend("cuda")`` is a real
    CupyBackend whose kernels run on the CPU. Returns the fake ``cupy`` module."""
    return install_emulation(monkeypatch)


@pytest.fixture(autouse=True)
def _cuda_variant(request):
    """Set by ``add_emulated_variants`` on gpu-marked tests: their emulated twin."""
    if getattr(request, "param", None) == MARK:
        request.getfixturevalue("cuda_emulation")


@pytest.fixture(params=CPU_DEVICES)
def device(request):
    """Each CPU backend in turn: 'cpu' (NumPy), 'strict' (array-api-strict), 'torch'."""
    return request.param


@pytest.fixture(params=ALL_DEVICES)
def any_device(request):
    """'cpu', 'strict', 'torch', (gpu-marked) 'cuda' and 'cuda' under the emulation."""
    if request.param == MARK:
        request.getfixturevalue("cuda_emulation")
        return "cuda"
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
