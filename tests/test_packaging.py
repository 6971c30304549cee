"""``import tensornet`` and ``python -m tensornet info`` from the clone root work with no
install at all and after a regular (non-editable) install, while ``backends/`` stays at the
top level of the repository (mapped to ``tensornet.backends`` by pyproject.toml).

Each case runs a fresh interpreter with ``-S`` (no site-packages processing, so the editable
install of the test environment is invisible) and only the folders the case allows on
``PYTHONPATH``: the third-party packages (NumPy ...) and, for the install case, a
``pip install --target`` copy of tensornet.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
THIRD_PARTY = str(Path(np.__file__).resolve().parents[1])  # the site-packages with NumPy
PROBE = ("import tensornet, tensornet.backends as b, tensornet.nn as nn\n"
         "print(tensornet.__file__); print(b.__file__)\n"
         "print(nn.Linear(3, 2)(b.get_backend('cpu').zeros((1, 3))).shape)\n")


def _python(args, cwd, *paths):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), THIRD_PARTY])
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def _assert_imports_from(out, package_dir: Path, backends_dir: Path):
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert Path(lines[0]).resolve() == package_dir / "__init__.py"
    assert Path(lines[1]).resolve() == backends_dir / "__init__.py"
    assert lines[2] == "(1, 2)"


def test_without_any_install_from_the_clone_root():
    _assert_imports_from(_python(["-c", PROBE], ROOT), ROOT / "tensornet", ROOT / "backends")
    info = _python(["-m", "tensornet", "info"], ROOT)
    assert info.returncode == 0, info.stderr
    assert "cpu" in info.stdout and "ok" in info.stdout


def test_without_any_install_elsewhere_tensornet_is_not_found(tmp_path):
    out = _python(["-c", "import tensornet"], tmp_path)
    assert out.returncode != 0 and "No module named 'tensornet'" in out.stderr


def test_missing_dependencies_are_named_with_the_install_command():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([sys.executable, "-S", "-c", "import tensornet"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)  # no site-packages
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: tensornet needs numpy, array-api-compat, "
                           "safetensors, tqdm, which this Python"), last
    assert "pip install numpy array-api-compat safetensors tqdm" in last


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A regular, non-editable install of this tree (``pip install --target``), built from a
    copy so that the build leaves nothing in the clone."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    target = base / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--no-build-isolation", "--no-index", "--target", str(target),
                          str(source)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.fail(f"pip install --target failed:\n{out.stdout}\n{out.stderr}")
    return target


def test_after_a_regular_install_from_the_clone_root_the_tree_is_used(installed):
    """The clone's tensornet/ shadows the installed copy, so its own backends/ must serve."""
    assert (installed / "tensornet" / "backends" / "__init__.py").is_file()
    _assert_imports_from(_python(["-c", PROBE], ROOT, installed), ROOT / "tensornet",
                         ROOT / "backends")
    info = _python(["-m", "tensornet", "info"], ROOT, installed)
    assert info.returncode == 0, info.stderr


def test_after_a_regular_install_elsewhere_the_install_is_used(installed, tmp_path):
    _assert_imports_from(_python(["-c", PROBE], tmp_path, installed),
                         installed / "tensornet", installed / "tensornet" / "backends")
