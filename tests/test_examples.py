"""Smoke test: every example script runs end to end with --quick and writes its plots.

The six scripts start together as subprocesses (one BLAS thread each: small matrices gain
nothing from more, and oversubscribed BLAS threads crawl on a busy 2-core machine), so the
module costs about the slowest script rather than the sum.
"""
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "init_experiment": ["init_deep_wide.png", "init_deep_thin.png",
                        "layer_stats_deep_wide_relu_normal.png",
                        "layer_stats_deep_thin_tanh_normal.png"],
    "regularization": ["regularization.png"],
    "regularization_l1_l2": ["regularization_l1_l2.png"],
    "lr_and_weight_decay": ["lr_sweep.png", "weight_decay.png", "lr_find.png"],
    "optimizers": ["optimizers.png", "lr_schedules.png"],
    "autoencoder": ["reconstructions.png", "autoencoder_training.png"],
}
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every example with --quick; name -> (Popen, output folder)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    started = {}
    for name in EXPECTED:
        out = tmp_path_factory.mktemp(name)
        proc = subprocess.Popen([sys.executable, str(EXAMPLES_DIR / f"{name}.py"), "--quick",
                                 "--out", str(out)], cwd=out, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started[name] = (proc, out)
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example_runs_quick_and_writes_its_plots(runs, name):
    proc, out = runs[name]
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"{name}.py --quick ran over {TIMEOUT_S} s; output:\n{output[-3000:]}")
    assert proc.returncode == 0, f"{name}.py --quick failed:\n{output[-3000:]}"
    for png in EXPECTED[name]:
        path = out / png
        assert path.exists(), f"{name}.py did not write {png}; output:\n{output[-2000:]}"
        width, height = png_size(path)
        assert width >= 400 and height >= 300 and path.stat().st_size > 10_000
    if name == "lr_and_weight_decay":
        # lr 100 must diverge, and the script must report it rather than crash.
        assert "lr=100: DIVERGED" in output
        assert "lr=0.2: final loss" in output
