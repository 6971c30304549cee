"""The benchmark harness measures what it claims: same math on every side, and a report.

Timings are never checked here (targets live in the benchmark report); these tests check
that the compared implementations compute the same thing and that the harness runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's benchmarks/

from benchmarks.common import (BATCH, MLP_SGD, Data, build_model, epoch_order,  # noqa: E402
                               synthetic_mnist)
from benchmarks.mlp_cpu import hand_written_epoch, same_math_gap  # noqa: E402
from benchmarks.modes import Skip, TensornetTrainer, make_trainer  # noqa: E402


def _mlp_data(n=4 * BATCH):
    x, y = synthetic_mnist(n, seed=3)
    x_test, y_test = synthetic_mnist(256, seed=4)
    return Data("synthetic", x.reshape(n, -1), y, x_test.reshape(256, -1), y_test)


def test_hand_written_loop_is_the_same_math_as_tensornet():
    x, y = synthetic_mnist(3 * BATCH, seed=1)
    gap = same_math_gap(x.reshape(len(x), -1), y, np.arange(3 * BATCH))
    assert gap < 1e-12


def test_hand_written_loop_learns():
    x, y = synthetic_mnist(8 * BATCH, seed=2)
    x = x.reshape(len(x), -1)
    params = [np.array(p.data) for p in build_model("mlp").parameters()]
    velocity = [np.zeros_like(p) for p in params]
    order = epoch_order(len(x), 0)
    first = hand_written_epoch(params, velocity, x, y, order[:BATCH], **MLP_SGD)
    for _ in range(30):  # the synthetic classes need ~200 steps at lr 0.01
        last = hand_written_epoch(params, velocity, x, y, order, **MLP_SGD)
    assert last < 0.5 * first


def test_looped_mode_accumulates_the_minibatch_gradient():
    """Per-sample forward/backward with 1/B-scaled loss gradients, then one step, lands on
    the weights of the vectorized step (MLP: no batch-dependent layer)."""
    data = _mlp_data()
    looped, vectorized = make_trainer("looped", "mlp", data), make_trainer("vectorized", "mlp", data)
    for trainer in (looped, vectorized):
        trainer.fresh()
        assert trainer.run(2 * BATCH) == 2 * BATCH
    for a, b in zip(looped.model.parameters(), vectorized.model.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-6)
    assert abs(looped.accuracy(data.x_test, data.y_test)
               - vectorized.accuracy(data.x_test, data.y_test)) < 0.02


def test_gpu_modes_skip_with_a_reason_without_a_gpu():
    from tensornet.backends.cupy import gpu_available
    if gpu_available():
        pytest.skip("this machine has a GPU; this checks one without")
    with pytest.raises(Skip, match="CuPy"):
        make_trainer("gpu", "mlp", _mlp_data())
    with pytest.raises(Skip):
        TensornetTrainer("mlp", _mlp_data(), "cuda", graph=True)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_torch_twin_is_the_same_model(model):
    torch = pytest.importorskip("torch")
    from benchmarks.common import torch_twin
    import tensornet as tn
    net = build_model(model)
    twin, _ = torch_twin(model, net)
    net.eval()
    twin.eval()
    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    if model == "mlp":
        x = x.reshape(16, -1)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(tn.asnumpy(net(x)), expected, rtol=1e-4, atol=1e-5)


def test_torch_mode_trains_like_tensornet():
    pytest.importorskip("torch")
    data = _mlp_data()
    ours, theirs = make_trainer("vectorized", "mlp", data), make_trainer("torch-cpu", "mlp", data)
    for trainer in (ours, theirs):
        trainer.fresh()
        trainer.run(2 * BATCH)
    for a, b in zip(ours.model.parameters(), theirs.model.parameters()):
        np.testing.assert_allclose(np.asarray(a.data), b.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_report_command_writes_table_json_and_chart(tmp_path):
    from benchmarks.__main__ import main
    status = main(["--models", "mlp", "--modes", "looped,vectorized,gpu", "--synthetic",
                   "--train-samples", str(4 * BATCH), "--reps", "2", "--threads", "1",
                   "--looped-fraction", "0.25", "--warmup-batches", "1", "--out", str(tmp_path)])
    assert status == 0
    report = json.loads((tmp_path / "results.json").read_text())
    rows = {r["mode"]: r for r in report["results"]}
    assert rows["vectorized"]["seconds_per_epoch"] > 0
    assert rows["vectorized"]["reps"] == 2 == len(rows["looped"]["seconds_per_epoch_reps"])
    assert rows["looped"]["extrapolated_from_samples"] == BATCH
    assert rows["vectorized"]["speedup_vs_looped"] == pytest.approx(
        rows["looped"]["seconds_per_epoch"] / rows["vectorized"]["seconds_per_epoch"])
    text = (tmp_path / "results.md").read_text()
    assert "| mlp | vectorized |" in text and "extrapolated" in text
    if "skipped" in rows["gpu"]:
        assert "mlp / gpu: skipped" in text
    assert (tmp_path / "results.png").stat().st_size > 1000


# ---------------------------------------------------------------------- benchmarks/gpu.py
def test_a_failing_case_does_not_stop_the_others_and_runs_keep_their_files(
        monkeypatch, tmp_path, capsys):
    import types

    from benchmarks import gpu as bench
    import tensornet.backends.cupy as cupy_backend
    monkeypatch.setattr(cupy_backend, "gpu_available", lambda: True)
    fake = types.SimpleNamespace(__version__="14.2.0", cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"Test GPU"})))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "_load_data", lambda: (np.zeros((100, 1, 28, 28), np.float32),
                                                       np.zeros(100, np.int64), "stub data"))

    def tensornet_run(case, x, y, epochs, graph, tf32):
        if graph:
            raise RuntimeError("cudaErrorIllegalAddress: an illegal memory access")
        return 1.0, [0.5] * epochs, 2**20
    monkeypatch.setattr(bench, "_tensornet_run", tensornet_run)
    monkeypatch.setattr(bench, "_torch_run", lambda case, x, y, epochs, tf32:
                        (1.0, [0.25] * epochs, 2**20))

    assert bench.main(["--epochs", "1"]) == 1
    out = capsys.readouterr().out
    assert out.count("tensornet-CuPy graph   FAILED: RuntimeError: cudaErrorIllegalAddress") == 3
    assert out.count("tensornet-CuPy eager") == 3 and out.count("PyTorch-CUDA eager") == 3
    assert "measured: eager/PyTorch time = 2.00" in out
    assert bench.main(["--epochs", "1", "--only", "mlp"]) == 1
    files = sorted(tmp_path.glob("Test-GPU-*.txt"))
    assert len(files) == 2, files
    assert sorted("(c) wide MLP" in f.read_text() for f in files) == [False, True]


def test_distributed_benchmark_plans_and_reports_the_configurations():
    from benchmarks.distributed import configurations, table

    configs = list(configurations(["mlp"], 2))
    assert configs == [("mlp", 1, 128), ("mlp", 2, 128), ("mlp", 2, 64)]
    text = table([{"model": "mlp", "ranks": 2, "batch": 128, "samples_per_s": 1500.0,
                   "speedup": 1.5, "efficiency": 0.75, "all_samples_per_s": [1400.0, 1500.0],
                   "loads": [0.2, 1.0]}])
    assert "| mlp | 2 | 128 | 256 | 1,500 | 1.50x | 75% | 1,400 (0.2), 1,500 (1.0) |" in text
    text = table([{"framework": "torch", "model": "cnn", "ranks": 1, "batch": 128,
                   "samples_per_s": 900.0, "speedup": 1.0, "efficiency": 1.0,
                   "all_samples_per_s": [900.0], "loads": [0.5]}])
    assert "| cnn, PyTorch | 1 | 128 | 128 | 900 | 1.00x | 100% | 900 (0.5) |" in text
    text = table([{"framework": "tensornet-mpi", "model": "mlp", "ranks": 1, "batch": 128,
                   "samples_per_s": 900.0, "speedup": 1.0, "efficiency": 1.0,
                   "all_samples_per_s": [900.0], "loads": [0.5]}])
    assert "| mlp, MPI_Allreduce | 1 | 128 |" in text


def test_allreduce_benchmark_prints_both_ways_at_every_size(capfd):
    """Two ranks, three calls per size: a table row per size, checked sums (the worker
    exits with an error on a wrong one)."""
    pytest.importorskip("mpi4py")
    from benchmarks import allreduce
    from benchmarks.distributed import _mpiexec
    try:
        _mpiexec()
    except SystemExit as exc:
        pytest.skip(str(exc))
    assert allreduce.main(["--calls", "3"]) == 0
    out = capfd.readouterr().out
    assert ("| float32 array | MPI_Allreduce (us) | shared window (us) | in place (us) | "
            "MPI / shared | MPI / in place |") in out
    for n in allreduce.SIZES:
        assert f"| {4 * n // 1024:,} KiB |" in out


@pytest.mark.parametrize("framework", ["tensornet", "tensornet-mpi", "torch"])
def test_distributed_benchmark_launches_two_ranks(framework):
    """One launch of each side under ``mpiexec -n 2`` (synthetic data, one epoch): it
    reports the global sample count of the sharded epoch, a finite loss and, for
    tensornet, the all-reduce its gradients went through."""
    pytest.importorskip("mpi4py")
    if framework == "torch":
        pytest.importorskip("torch")
        pytest.importorskip("torch.distributed")
    from benchmarks.distributed import _mpiexec, launch
    try:
        _mpiexec()
    except SystemExit as exc:
        pytest.skip(str(exc))
    result = launch("mlp", 2, 64, synthetic=True, epochs=1, framework=framework)
    assert result["samples"] == 60000
    assert result["seconds"] > 0 and np.isfinite(result["train_loss"])
    assert result["data"].startswith("synthetic")
    if framework != "torch":
        assert result["allreduce"] == ("mpi" if framework == "tensornet-mpi" else "shared")


def test_scaling_sweeps_cover_the_issue_ranges():
    from benchmarks.scaling import points
    widths = [p["x"] for p in points("width", False, 2)]
    batches = {p["x"] for p in points("batch", False, 2)}
    channels = [p["x"] for p in points("channels", False, 2)]
    threads = {p["x"] for p in points("threads", False, 2)}
    assert widths[0] == 256 and widths[-1] == 4096
    assert min(batches) == 32 and max(batches) == 1024
    assert channels[0] == 8 and channels[-1] == 64
    import os
    assert min(threads) == 1 and max(threads) == os.cpu_count()


def test_scaling_report_names_the_points_where_tensornet_loses(tmp_path):
    from benchmarks.scaling import markdown, plot, summarize

    def point(label, x, tn_s, pt_s, tn_mib, pt_mib, floor=None):
        seconds = {"tensornet": tn_s, "pytorch": pt_s}
        if floor:
            seconds["gemm_only"] = floor
        return {"sweep": "width", "label": label, "x": x,
                "time": {"seconds_per_epoch": seconds, "tensornet_gemm_share": 0.8},
                "memory": {"tensornet": {"peak_mib": tn_mib}, "pytorch": {"peak_mib": pt_mib}}}

    rows = [summarize(point("MLP W=256", 256, 1.0, 2.0, 12.5, 12, 0.8)),
            summarize(point("MLP W=4096", 4096, 3.0, 2.0, 30, 20, 2.5))]
    assert rows[0]["notes"] == "" and rows[0]["time_ratio"] == 0.5
    assert "GEMMs alone" in rows[1]["notes"] and "more memory" in rows[1]["notes"]
    info = {"versions": {"torch": "x"}, "cpu": "cpu", "logical_cores": 2, "blas": [],
            "date": "today", "load_before": [1.0, 1.0, 1.0, 5.0], "load_after": None}
    text = markdown(rows, info, "python -m benchmarks.scaling")
    assert "| MLP W=256 | 1.00 | 2.00 | 0.50 |" in text
    assert "at 1 of 2 points; not at:\n- MLP W=4096:" in text
    # 12.5 against 12 MiB is within the resident size's noise: counted, and said so
    assert "above it by less than max(1 MiB, 5%)" in text and text.rstrip().endswith(
        "runs: MLP W=256")
    plot(rows, str(tmp_path / "scaling.png"))
    assert (tmp_path / "scaling.png").stat().st_size > 1000


def test_scaling_worker_measures_a_point():
    pytest.importorskip("torch")
    from benchmarks.scaling import run_worker
    cfg = {"model": "mlp", "sizes": [784, 16, 8, 4, 10], "batch": 16, "threads": 1,
           "label": "tiny", "x": 16}
    timing = run_worker({**cfg, "kind": "time", "reps": 1, "seconds": 0.01}, timeout=300)
    assert "error" not in timing, timing
    seconds = timing["seconds_per_epoch"]
    assert set(seconds) == {"tensornet", "pytorch", "gemm_only", "pytorch_gemm_only"}
    assert min(seconds.values()) > 0
    assert 0 < timing["tensornet_gemm_share"] < 1
    memory = run_worker({**cfg, "kind": "memory", "framework": "tensornet"}, timeout=300)
    assert memory["peak_mib"] >= 0 and "build_mib" in memory, memory


def test_scaling_worker_splits_a_cnn_point_by_layer_on_both_sides():
    """The per-layer split the report names slower layers from: the point's own model
    (4 channels, batch 16) on both sides, row for row."""
    pytest.importorskip("torch")
    from benchmarks.scaling import run_worker
    cfg = {"model": "cnn", "channels": 4, "batch": 16, "threads": 1, "label": "tiny", "x": 4}
    timing = run_worker({**cfg, "kind": "time", "reps": 1, "seconds": 0.01}, timeout=300)
    split = timing["split_ms"]
    assert list(split["tensornet"]) == list(split["pytorch"])
    assert "4: Conv2d" in split["tensornet"] and split["pytorch"]["4: Conv2d"][0] > 0


@pytest.mark.parametrize("call", ["pin_threads", "machine_info"])
def test_without_threadpoolctl_the_benchmarks_name_the_extra(monkeypatch, call):
    """A fresh install of '.[plot]' has no threadpoolctl: `python -m benchmarks.mlp_cpu`
    was a ModuleNotFoundError traceback."""
    from benchmarks import common

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)   # import raises ImportError
    with pytest.raises(SystemExit, match=r"pip install 'tensornet\[fast\]'"):
        getattr(common, call)(1)


def test_gpu_benchmark_reports_what_the_pool_holds(cuda_emulation):
    """tensornet's GPU memory figure is what CuPy's pool holds after the run (its peak,
    intra-step peaks included: comparable with PyTorch's max_memory_reserved); it read a
    'graph_pools' entry memory_info() does not have (a KeyError on any GPU run)."""
    from benchmarks import gpu as bench
    case = dict(bench.CASES["mlp"], sizes=(784, 16, 10), batch=32)
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = np.arange(64, dtype=np.int64) % 10
    first, later, held = bench._tensornet_run(case, x, y, 1, False, False)
    assert len(later) == 1 and first > 0
    # at least the data on the device and the model's parameters, gradients and momentum
    assert held >= x.nbytes + 3 * 4 * (784 * 16 + 16 + 16 * 10 + 10)


def test_mlp_benchmark_times_the_unfused_loop_on_the_same_batches():
    """``--unfused``: the README loop with Sequential's fusion off, as a side of its own
    (same final loss: the fusion changes no bit)."""
    from benchmarks.mlp_cpu import run
    r = run(reps=1, samples=640, warmup_batches=1, with_torch=False, unfused=True)
    assert r["final_loss"]["tensornet"] == r["final_loss"]["tensornet unfused"]
    assert r["ratios"]["tensornet / tensornet unfused"]["medians"] > 0


def test_mlp_benchmark_times_pytorchs_own_gemms_on_the_same_batches():
    """PyTorch's floor: the step's 11 products through torch.matmul, in its worker."""
    pytest.importorskip("torch")
    from benchmarks.mlp_cpu import run
    r = run(reps=1, samples=640, warmup_batches=1)
    assert r["wall_s"]["PyTorch GEMM only"] > 0
    assert r["ratios"]["PyTorch / PyTorch GEMM only"]["medians"] > 1  # its step does more


def test_torch_gemm_floor_computes_the_products_of_the_numpy_one():
    torch = pytest.importorskip("torch")
    from benchmarks import mlp_cpu
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((6, 5), dtype=np.float32),
               rng.standard_normal((3, 6), dtype=np.float32)]
    x = rng.standard_normal((4, 5), dtype=np.float32)
    seen = []
    real = torch.matmul
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "matmul", lambda a, b, out: seen.append(
            (tuple(a.shape), tuple(b.shape))) or real(a, b, out=out))
        mlp_cpu.torch_gemm_only_epoch(torch, weights, x, [4, 2], batch=4)
    # per batch: 2 forward products, 2 weight gradients, 1 data gradient (not the first layer)
    assert seen[:5] == [((4, 5), (5, 6)), ((4, 6), (6, 3)), ((3, 4), (4, 6)),
                        ((4, 3), (3, 6)), ((6, 4), (4, 5))]
    assert len(seen) == 10 and seen[5][0] == (2, 5)


def test_fusion_benchmark_times_both_paths():
    from benchmarks.fusion import run
    r = run(threads=1, pairs=2, block=2, samples=640)
    assert r["fused_us"] > 0 and r["unfused_us"] > 0
    low, high = r["saved_quartiles_us"]
    assert low <= r["saved_us"] <= high


def test_candidates_benchmark_times_each_candidate():
    from benchmarks.candidates import conv_rows, numexpr_rows
    rows = conv_rows(threads=1, reps=1)
    assert len(rows) == 6 and all(t[0] > 0 for _, _, t in rows)
    assert all(len(row) == 3 for row in numexpr_rows(threads=1, reps=1))


def test_blas_threads_option_sets_tensornets_threads_apart():
    """``--blas-threads K`` (cnn_cpu, mlp_cpu): tensornet's side runs
    ``tn.set_num_threads(THREADS, blas=K)``, and the header says so."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from benchmarks import common
    from tensornet.backends import threads

    parser = argparse.ArgumentParser()
    common.add_blas_threads_option(parser)
    assert parser.parse_args([]).blas_threads is None
    default = threads.spinning()  # (the spin pool where OpenBLAS hands it its work)
    assert common.apply_blas_threads(2, None) == "" and threads.spinning() == default
    before = threadpoolctl.threadpool_info()
    try:
        note = common.apply_blas_threads(2, parser.parse_args(["--blas-threads", "1"])
                                         .blas_threads)
        assert note == " (tensornet: tn.set_num_threads(2, blas=1))"
        assert threads.num_threads() == 2
        assert threads.spinning() == (threads._spin_kernels() is not None)
    finally:
        threads.reset_num_threads()
        threadpoolctl.threadpool_limits(limits=before)
