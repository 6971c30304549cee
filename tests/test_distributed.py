"""Data-parallel training under ``mpiexec -n 2`` (issue 18): the same parameters as one
process with the global batch, agreed stops, thread counts, failures that end every rank,
and the command line on Fashion-MNIST. Each test launches the programs in
distributed_worker.py with a timeout (mpi_launch.py), and skips when mpi4py or mpiexec is
missing; failures that must end every rank are in test_distributed_failures.py."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_launch import mpirun, needs_mpi, run_case

import distributed_worker as worker
from tensornet import nn
from tensornet.cli import main

HERE = Path(__file__).resolve().parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


pytestmark = needs_mpi


def test_two_ranks_of_32_equal_one_process_of_64(tmp_path):
    done, _ = run_case("equivalence", tmp_path)
    assert done.returncode == 0, done.stderr
    for kind, opt, how in worker.CASES:
        ref = worker.reference(kind, opt, how)
        ranks = [np.load(tmp_path / f"{kind}-{opt}-{how}-rank{r}.npz") for r in (0, 1)]
        assert sorted(ranks[0].files) == sorted(ref)
        for key, expected in ref.items():
            np.testing.assert_array_equal(ranks[0][key], ranks[1][key])  # in lockstep
            np.testing.assert_allclose(ranks[0][key], expected, rtol=1e-10, atol=1e-14,
                                       err_msg=f"{kind} {opt} ({how}): {key}")
        # the runs moved far from the start, so agreeing to 1e-10 says something
        start = worker.final_state(worker.build(kind, sync=False, seed=0))
        assert max(np.max(np.abs(ref[k] - start[k])) for k in ref if "weight" in k) > 0.01


@pytest.mark.parametrize("ranks, env, path", [
    (2, {}, "SharedReducer"), (3, {}, "SharedReducer"),
    (2, {"TENSORNET_ALLREDUCE": "mpi"}, "NoneType")])
def test_host_allreduce_is_the_rank_order_sum_on_every_rank(tmp_path, ranks, env, path):
    """Through the shared-memory window (every rank on this host) or MPI_Allreduce."""
    done, _ = run_case("shared", tmp_path, ranks=ranks, env=env)
    assert done.returncode == 0, done.stderr
    results = [json.loads((tmp_path / f"shared-rank{r}.json").read_text())
               for r in range(ranks)]
    for result in results:
        assert result["path"] == path
        assert all(result["exact"]), result["exact"]
        assert result["digests"] == results[0]["digests"]  # the same bits on every rank
        assert result["in_place"] == (4 if path == "SharedReducer" else 0)


def test_the_shared_gradient_memory_of_a_dropped_model_is_given_back(tmp_path):
    """Each DataParallel on one host puts its gradients in a new shared window (in
    /dev/shm). A program that trains models in turn (folds, a sweep) must not keep every
    dropped model's block until it exits: the next wrap frees those no rank still uses,
    and keeps one a rank still holds an array of."""
    done, _ = run_case("discard", tmp_path)
    assert done.returncode == 0, done.stderr
    for rank in (0, 1):
        result = json.loads((tmp_path / f"discard-rank{rank}.json").read_text())
        assert result["blocks"] == [1, 2, 2, 1], result  # fold 0's held until fold 2


def test_an_unknown_allreduce_setting_ends_every_rank_naming_it(tmp_path):
    done, _ = run_case("shared", tmp_path, env={"TENSORNET_ALLREDUCE": "nccl"})
    assert done.returncode != 0
    assert "TENSORNET_ALLREDUCE must be 'shared'" in done.stderr


def _gpu_count() -> int:
    try:
        import cupy
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no CuPy or no driver: the gpu marker skips these tests
        return 0


def _compare_with_reference(folder, rtol):
    for kind, opt, how in worker.CASES:
        ref = worker.reference(kind, opt, how)
        ranks = [np.load(folder / f"{kind}-{opt}-{how}-rank{r}.npz") for r in (0, 1)]
        for key, expected in ref.items():
            np.testing.assert_array_equal(ranks[0][key], ranks[1][key])
            np.testing.assert_allclose(ranks[0][key], expected, rtol=rtol, atol=1e-12,
                                       err_msg=f"{kind} {opt} ({how}): {key}")


@pytest.mark.gpu
def test_nccl_allreduce_runs_on_one_gpu(capsys):
    """A one-rank NCCL communicator: the sum is the array itself, through the real
    unique-id / NcclCommunicator / allReduce calls (or the announced host fallback)."""
    import tensornet as tn

    backend = tn.get_backend("cuda")
    reduce_ = backend.collective_allreduce(tn.distributed.Communicator())
    x = backend.asarray(np.arange(10.0))
    assert reduce_(x) is x
    np.testing.assert_array_equal(tn.asnumpy(x), np.arange(10.0))
    err = capsys.readouterr().err
    assert err == "" or "through host memory" in err  # NCCL, or the one notice


@pytest.mark.gpu
@pytest.mark.real_gpu  # its ranks are other processes, out of the emulation's reach
def test_two_ranks_sharing_a_gpu_equal_one_process(tmp_path):
    done, _ = run_case("equivalence", tmp_path, extra=["cuda:0"], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "some ranks share a GPU" in done.stderr or "NCCL is not available" in done.stderr
    _compare_with_reference(tmp_path, rtol=1e-8)  # cuBLAS sums in another order than NumPy


@pytest.mark.gpu
@pytest.mark.real_gpu
@pytest.mark.skipif(_gpu_count() < 2, reason="NCCL between ranks needs two GPUs")
def test_two_gpus_over_nccl_equal_one_process(tmp_path):
    done, _ = run_case("equivalence", tmp_path, extra=["cuda"], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "through host memory" not in done.stderr
    _compare_with_reference(tmp_path, rtol=1e-8)


def test_nan_on_one_rank_and_early_stopping_stop_every_rank_alike(tmp_path):
    done, _ = run_case("stops", tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    results = [json.loads((tmp_path / f"stops-rank{r}.json").read_text()) for r in (0, 1)]
    for result in results:
        # the history keeps the epoch it stopped in, with the figures of steps 1 and 2
        assert result["nan_epochs"] == [1]
        assert result["nan_reason"].startswith("TerminateOnNaN: epoch 1, step 3: ")
    assert results[0]["nan_train_loss"] == results[1]["nan_train_loss"]  # global figures
    assert "not finite on 1 of 2 ranks" in results[0]["nan_reason"]
    assert "the loss is nan" in results[1]["nan_reason"]
    assert results[0]["early_epochs"] == results[1]["early_epochs"]
    assert 1 < len(results[0]["early_epochs"]) < 30
    assert results[0]["val_loss"] == results[1]["val_loss"]  # global figures, bit for bit
    assert results[0]["train_loss"] == results[1]["train_loss"]
    assert done.stdout.count("Epoch  Train loss") == 1  # rank 0 alone prints
    assert done.stdout.count("EarlyStopping: restored the weights") <= 1
    marks = sorted(p.name for p in tmp_path.glob("checkpoint-by-rank*"))
    assert marks == ["checkpoint-by-rank0"]  # file-writing callbacks run on rank 0 only
    assert results[0]["local_epochs"] == results[1]["local_epochs"] == [1]  # stopped in it
    # plain BatchNorm: running statistics of each rank's own batches, rank 0's after eval()
    assert results[0]["bn_trained"] != results[1]["bn_trained"]
    assert results[0]["bn_eval"] == results[1]["bn_eval"] == results[0]["bn_trained"]
    assert results[1]["local_reason"] == "rank 1 asked to stop"
    assert results[0]["local_reason"] == "stopped because another rank stopped"


def test_each_rank_gets_its_share_of_the_cores_unless_the_user_chose(tmp_path):
    done, _ = run_case("threads", tmp_path)
    assert done.returncode == 0, done.stderr
    expected = max(1, (os.cpu_count() or 1) // 2)
    for r in (0, 1):
        seen = json.loads((tmp_path / f"threads-rank{r}.json").read_text())
        assert seen == {"blas": [min(expected, len(os.sched_getaffinity(0)))],
                        "local_size": 2}
    chosen = "2" if expected == 1 else "1"  # any count but the default
    done, _ = run_case("threads", tmp_path, env={"OPENBLAS_NUM_THREADS": chosen,
                                                 "OMP_NUM_THREADS": chosen})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "threads-rank0.json").read_text())["blas"] == [int(chosen)]


def test_different_models_on_the_ranks_are_refused_at_wrap_time(tmp_path):
    done, seconds = run_case("mismatch", tmp_path, timeout=60)
    assert done.returncode != 0 and seconds < 30
    assert ("rank 1's model differs from rank 0's: rank 0 has parameter '0.weight' of shape "
            "(5, 4), float32, rank 1 has parameter '0.weight' of shape (6, 4)") in done.stderr


def test_parameters_frozen_alike_after_wrapping_train_in_lockstep(tmp_path):
    done, _ = run_case("params", tmp_path, extra=["alike"], timeout=60)
    assert done.returncode == 0, done.stderr
    ranks = [np.load(tmp_path / f"params-rank{r}.npz") for r in (0, 1)]
    for key in ranks[0].files:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key])


@pytest.mark.parametrize("how, message", [
    ("apart", ("rank 1's model differs from rank 0's at this backward: rank 0 has parameter "
               "'0.weight' of shape (4, 4), float32 (frozen), rank 1 has parameter '0.weight' "
               "of shape (4, 4), float32; every rank must freeze (requires_grad=False) the "
               "same parameters")),
    ("one", ("rank 1's model differs from rank 0's at this backward: rank 0 has parameter "
             "'2.bias' of shape (4,), float32, rank 1 has parameter '2.bias' of shape (4,), "
             "float32 (frozen)")),
    ("added", "rank 0's model has parameter '3.weight', which it did not have at wrap time"),
])
def test_parameters_that_differ_after_wrapping_stop_every_rank_naming_them(tmp_path, how,
                                                                           message):
    """Freezing different parameters on the ranks averaged one rank's gradient of a
    parameter with another's of a different one (``apart``: as many trainable parameters
    on both) or failed inside MPI (``one``: 'Message truncated'); a layer added after
    wrapping trained with each rank's own initial values, the replicas apart for ever."""
    done, seconds = run_case("params", tmp_path, extra=[how], timeout=60)
    assert done.returncode != 0 and seconds < 30, (done.returncode, seconds, done.stderr)
    assert message in done.stderr
    assert not list(tmp_path.glob("params-rank*.npz"))


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")
@pytest.mark.parametrize("ranks", [2, 3])
def test_syncbatchnorm_with_a_different_batch_on_each_rank_equals_one_process(tmp_path,
                                                                            ranks):
    """Rank 0 holds one sample, the others more: forward, input gradient, the summed
    weight and bias gradients and the running statistics (unbiased over the global count,
    momentum 0.1 and None) are those of BatchNorm on the global batch; then eval runs a
    different number of batches per rank without hanging."""
    done, _ = run_case("syncbn", tmp_path, ranks=ranks)
    assert done.returncode == 0, done.stderr
    got = [np.load(tmp_path / f"syncbn-rank{r}.npz") for r in range(ranks)]
    for tail in worker.SYNCBN_TAILS:
        counts, batches = worker.syncbn_batches(tail, ranks)
        parts = np.cumsum([0] + counts)
        for momentum in (0.1, None):
            name = f"{len(tail)}-{momentum}"
            norm = (nn.BatchNorm2d if len(tail) == 2 else nn.BatchNorm1d)(
                3, momentum=momentum, dtype="float64")
            norm.weight.data[...] = [0.5, 1.0, 2.0]
            norm.bias.data[...] = [0.1, -0.2, 0.3]
            for step, (x, g) in enumerate(batches):
                norm.zero_grad()
                y, dx = norm(x), norm.backward(g)
                for r in range(ranks):
                    mine = slice(parts[r], parts[r + 1])
                    for key, expected in (("y", y[mine]), ("dx", dx[mine])):
                        np.testing.assert_allclose(got[r][f"{name}-{key}{step}"], expected,
                                                   rtol=1e-10, atol=1e-13,
                                                   err_msg=f"{name} rank {r}: {key}{step}")
                for key, param in (("dweight", norm.weight), ("dbias", norm.bias)):
                    total = sum(got[r][f"{name}-{key}{step}"] for r in range(ranks))
                    np.testing.assert_allclose(total, param.grad, rtol=1e-10, atol=1e-13)
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                for r in range(ranks):
                    np.testing.assert_allclose(got[r][f"{name}-{key}"], getattr(norm, key),
                                               rtol=1e-10, err_msg=f"{name} rank {r}: {key}")


def test_cli_distributed_matches_one_process_on_fashion_mnist(tmp_path, capsys):
    single = tmp_path / "single"
    assert main(["train", "--epochs", "1", "--out", str(single), "--data-dir", str(DEBIAN),
                 "--quiet"]) == 0
    single_acc = float(re.search(r"Test accuracy: ([\d.]+)%", capsys.readouterr().out)[1])
    out = tmp_path / "dist"
    done, _ = mpirun([sys.executable, "-m", "tensornet", "train", "--distributed",
                      "--epochs", "1", "--out", str(out), "--data-dir", str(DEBIAN)],
                     timeout=300)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.count("Epoch  Train loss  Valid loss  Train acc  Valid acc") == 1
    assert text.count("Test accuracy") == 1
    assert "batch 128 per rank x 2 ranks = 256 global" in text
    dist_acc = float(re.search(r"Test accuracy: ([\d.]+)% \(10000 samples", text)[1])
    assert abs(dist_acc - single_acc) <= 1.0, (dist_acc, single_acc)
    assert json.loads((out / "history.json").read_text())["epoch"] == [1]
    assert main(["eval", "--checkpoint", str(out / "model.safetensors"),
                 "--data-dir", str(DEBIAN)]) == 0
    assert f"Test accuracy: {dist_acc:.2f}%" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")
def test_cli_sync_bn_trains_the_cnn_with_global_statistics(tmp_path, capsys):
    """--sync-bn: SyncBatchNorm in the CNN (checkpoint keys as BatchNorm's, so eval loads it
    into the plain model); one epoch on 2 x 2,000 samples of the training split."""
    out = tmp_path / "cnn"
    done, _ = mpirun([sys.executable, "-m", "tensornet", "train", "--distributed", "--sync-bn",
                      "--model", "cnn", "--epochs", "1", "--out", str(out), "--data-dir",
                      str(DEBIAN)], timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("batch 128 per rank x 2 ranks = 256 global, BatchNorm over all ranks "
            "(2 SyncBatchNorm)") in done.stdout
    acc = float(re.search(r"Test accuracy: ([\d.]+)% \(10000 samples", done.stdout)[1])
    assert acc > 80.0, done.stdout
    assert main(["eval", "--checkpoint", str(out / "model.safetensors"),
                 "--data-dir", str(DEBIAN)]) == 0
    assert f"Test accuracy: {acc:.2f}%" in capsys.readouterr().out


def test_init_without_mpiexec_is_a_single_process():
    code = ("import tensornet as tn; c = tn.distributed.init(); "
            "print(c.rank, c.size, c.local_rank, c.local_size, tn.distributed.world() is c)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=HERE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "0", "1", "True"]


def test_cli_error_on_rank_0_alone_ends_every_rank(tmp_path):
    """Rank 0 alone writes the outputs, so only it checks --out and fails on one it cannot
    create (a usage error, exit 2), while rank 1 goes on to load data and train (with
    collectives): it must not wait there."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done, seconds = mpirun([sys.executable, "-m", "tensornet", "train", "--distributed",
                            "--dataset", "blobs", "--epochs", "1", "--out",
                            str(blocker / "run")], timeout=60)
    assert done.returncode == 2 and seconds < 30, (done.returncode, done.stderr)
    assert "tensornet train: error:" in done.stderr and "a-file" in done.stderr


def test_cli_on_three_ranks_evaluates_every_test_sample_once(tmp_path, capsys):
    """1,000 test samples do not divide by 3 ranks: the test (and validation) figures count
    each sample once (the padded shard counted 1,002), as ``tensornet eval`` does."""
    out = tmp_path / "run"
    done, _ = mpirun([sys.executable, "-m", "tensornet", "train", "--distributed",
                      "--dataset", "blobs", "--epochs", "1", "--batch-size", "7",
                      "--val-split", "0.1", "--out", str(out)], ranks=3, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "batch 7 per rank x 3 ranks = 21 global" in done.stdout
    found = re.search(r"Test accuracy: ([\d.]+)% \((\d+) samples", done.stdout)
    assert found[2] == "1000", done.stdout
    assert main(["eval", "--checkpoint", str(out / "model.safetensors")]) == 0
    assert f"Test accuracy: {found[1]}% (1000 samples" in capsys.readouterr().out


def test_readme_example_runs_on_two_ranks(tmp_path):
    readme = (HERE.parent / "README.md").read_text()
    block = re.search(r"```python mpi\n(.*?)```", readme, re.S)[1]
    script = tmp_path / "train_dp.py"
    script.write_text(block)
    done, _ = mpirun([sys.executable, str(script)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Epoch  Train loss") == 1
    import tensornet as tn
    state = tn.load(tmp_path / "dp.safetensors")
    assert sorted(state["model"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
