"""Data-parallel scaling: training samples/s on 1 rank vs 2 ranks (``mpiexec``), MLP and CNN.

    python -m benchmarks.distributed [--models mlp,cnn] [--ranks 2] [--reps 3] [--epochs 3]
                                     [--synthetic]

Each (model, ranks, batch) runs in its own ``mpiexec -n R`` launch with one BLAS thread
per rank; the launches take turns repetition by repetition, so machine noise hits every
configuration alike. A launch trains one untimed warm-up epoch on a slice of the data,
then ``--epochs`` timed epochs of ``tn.fit`` with ``DataParallel`` and a sharded DataLoader
(gradient all-reduce, agreed stops and the per-epoch figures included), each between two
barriers; the launch's figure is the median epoch. Configurations:

- 1 rank, batch 128 (the baseline);
- R ranks, batch 128 per rank (global 128 * R): the usual data-parallel setting (PyTorch
  DDP's per-rank batch), the one the >= 1.7x target for 2 ranks on the MLP refers to;
- R ranks, batch 128 / R per rank (global 128): the same optimisation as the baseline.

Printed (and written to ``benchmarks/results/<host>-<date>/distributed.md`` and ``.json``):
median samples/s per configuration, speed-up over 1 rank and efficiency (speed-up / R).
The MLP trains on 60,000 samples, the CNN on 12,000 (Fashion-MNIST, downloaded when it is
not found; ``--synthetic``: synthetic data of the same shape).

``--torch`` adds PyTorch's own data parallelism as a reference for what the machine
allows: the same configurations with the twin model (same initial weights, optimizer and
sample split), one intra-op thread per rank, 1 rank as a plain training loop and R ranks
under ``DistributedDataParallel`` (gloo, over 127.0.0.1; its defaults, so buffers are
broadcast every forward), in ``mpiexec`` launches taking turns with tensornet's. Its
speed-ups are over PyTorch's own 1 rank.

``--mpi-allreduce`` adds tensornet with ``TENSORNET_ALLREDUCE=mpi``: its gradients averaged
by ``MPI_Allreduce`` instead of the shared-memory window that ranks on one host use
(``tensornet/distributed/shared.py``), in launches of its own taking turns with the others
(speed-ups over its own 1-rank launches).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import (SEED, build_model, build_optimizer, epoch_order, load_data,
                               median, thread_env, torch_epoch, torch_twin)

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = {"mlp": 60000, "cnn": 12000}
BATCH = 128


# ---------------------------------------------------------------------- one launch (each rank)
def worker(model_name: str, batch: int, synthetic: bool, epochs: int = 3) -> None:
    import tensornet as tn

    comm = tn.distributed.init(threads=1)
    data = load_data(model_name, synthetic=synthetic, train_samples=SAMPLES[model_name])
    model = tn.distributed.DataParallel(build_model(model_name, seed=SEED), comm)
    optimizer = build_optimizer(model_name, model.parameters())
    loss_fn = tn.nn.CrossEntropyLoss()
    dataset = tn.data.ArrayDataset(data.x_train, data.y_train)
    warm = tn.data.Subset(dataset, range(min(len(dataset), 20 * batch * comm.size)))
    tn.fit(model, loss_fn, optimizer, tn.data.DataLoader(warm, batch, shuffle=True, seed=SEED,
                                                         shard=comm.shard), verbose=0)
    loader = tn.data.DataLoader(dataset, batch, shuffle=True, seed=SEED, shard=comm.shard)
    seconds = []
    for _ in range(epochs):  # each epoch timed alone: one interrupted epoch moves one figure
        comm.barrier()
        start = time.perf_counter()
        history = tn.fit(model, loss_fn, optimizer, loader, verbose=0)
        comm.barrier()
        seconds.append(time.perf_counter() - start)
    if comm.rank == 0:
        print("RESULT " + json.dumps({
            "samples": loader.num_samples * comm.size, "seconds": median(seconds),
            "epoch_seconds": seconds, "train_loss": history["train_loss"][-1],
            "data": data.name, "allreduce": "shared" if comm._shared else "mpi"}),
            flush=True)


def torch_worker(model_name: str, batch: int, synthetic: bool, epochs: int = 3) -> None:
    """The PyTorch reference of one launch: the twin model of ``build_model``, trained on
    this rank's part of each epoch's order (``shard_indices``, as tensornet's sharded
    DataLoader), under DistributedDataParallel when there are several ranks. MPI (already
    started by ``mpiexec``) gives the ranks, the rendezvous port and the barriers."""
    import socket as socket_

    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    from tensornet.data.shard import shard_indices, shard_length

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    torch.set_num_threads(1)
    if size > 1:
        port = None
        if rank == 0:
            with socket_.socket() as probe:  # a free port on the loopback interface
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        port = world.bcast(port, root=0)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=size)
    data = load_data(model_name, synthetic=synthetic, train_samples=SAMPLES[model_name])
    model, optimizer = torch_twin(model_name, build_model(model_name, seed=SEED))
    if size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train.astype(np.int64))

    def epoch(index: int, limit: int | None = None) -> float:
        rows = shard_indices(epoch_order(len(x), index), rank, size, "pad")
        return torch_epoch(torch, model, optimizer, x, y, rows[:limit], batch)

    epoch(0, 20 * batch)  # warm-up, untimed
    seconds, last = [], None
    for index in range(1, epochs + 1):
        world.Barrier()
        start = time.perf_counter()
        last = epoch(index)
        world.Barrier()
        seconds.append(time.perf_counter() - start)
    if rank == 0:
        samples = shard_length(len(x), size, "pad") * size
        print("RESULT " + json.dumps({
            "samples": samples, "seconds": median(seconds), "epoch_seconds": seconds,
            "train_loss": last, "loss_of": "the last batch", "data": data.name,
            "torch": torch.__version__}), flush=True)
    if size > 1:
        dist.destroy_process_group()


# ---------------------------------------------------------------------- the parent
def _mpiexec() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.isfile(beside) else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("benchmarks.distributed needs mpiexec: pip install 'tensornet[mpi]'")
    return found


def launch(model_name: str, ranks: int, batch: int, synthetic: bool, epochs: int = 3,
           framework: str = "tensornet") -> dict:
    worker_flag = "--torch-worker" if framework == "torch" else "--worker"
    command = [_mpiexec(), "-n", str(ranks), sys.executable, "-m", "benchmarks.distributed",
               worker_flag, model_name, "--batch", str(batch), "--epochs", str(epochs)] + (
                   ["--synthetic"] * synthetic)
    load = os.getloadavg()[0]  # how busy the machine was (shared machines: noise)
    env = thread_env(1)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # PyTorch's gloo: the loopback interface
    if framework == "tensornet-mpi":
        env["TENSORNET_ALLREDUCE"] = "mpi"
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                          env=env, cwd=os.path.dirname(HERE))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return {**json.loads(lines[-1][len("RESULT "):]), "load_before": load}


def configurations(models, ranks: int):
    for model_name in models:
        yield model_name, 1, BATCH
        yield model_name, ranks, BATCH
        yield model_name, ranks, BATCH // ranks


_LABELS = {"torch": ", PyTorch", "tensornet-mpi": ", MPI_Allreduce"}


def table(rows: list[dict]) -> str:
    lines = ["| model | ranks | batch per rank | global batch | samples/s | speed-up | "
             "efficiency | each run (load before it) |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        runs = ", ".join(f"{rate:,.0f} ({load:.1f})" for rate, load in
                         zip(row["all_samples_per_s"], row["loads"]))
        model = row["model"] + _LABELS.get(row.get("framework"), "")
        lines.append(f"| {model} | {row['ranks']} | {row['batch']} | "
                     f"{row['batch'] * row['ranks']} | {row['samples_per_s']:,.0f} | "
                     f"{row['speedup']:.2f}x | {row['efficiency']:.0%} | {runs} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per launch, "
                        "each alone between barriers; a launch's figure is their median")
    parser.add_argument("--synthetic", action="store_true", help="synthetic data only")
    parser.add_argument("--torch", action="store_true", help="also PyTorch's "
                        "DistributedDataParallel (gloo) in the same configurations")
    parser.add_argument("--mpi-allreduce", action="store_true", help="also tensornet with "
                        "TENSORNET_ALLREDUCE=mpi (MPI_Allreduce instead of the shared-memory "
                        "window)")
    parser.add_argument("--out", default=None, help="results folder (default "
                        "benchmarks/results/<host>-<date>)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.batch, args.synthetic, args.epochs)
        return 0
    if args.torch_worker:
        torch_worker(args.torch_worker, args.batch, args.synthetic, args.epochs)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    frameworks = ["tensornet"] + ["tensornet-mpi"] * args.mpi_allreduce + ["torch"] * args.torch
    configs = [(framework, *config) for config in configurations(models, args.ranks)
               for framework in frameworks]
    runs = {config: [] for config in configs}
    for rep in range(args.reps):
        for config in configs:
            framework, model_name, ranks, batch = config
            result = launch(model_name, ranks, batch, args.synthetic, args.epochs, framework)
            runs[config].append(result)
            print(f"rep {rep + 1}: {framework} {model_name} {ranks} rank(s) x batch {batch}: "
                  f"{result['samples'] / result['seconds']:,.0f} samples/s", flush=True)
    rows = []
    for framework in frameworks:
        for model_name, ranks, batch in configurations(models, args.ranks):
            mine = runs[(framework, model_name, ranks, batch)]
            rate = median([r["samples"] / r["seconds"] for r in mine])
            base = median([r["samples"] / r["seconds"]
                           for r in runs[(framework, model_name, 1, BATCH)]])
            rows.append({"framework": framework, "model": model_name, "ranks": ranks,
                         "batch": batch, "samples_per_s": rate, "speedup": rate / base,
                         "efficiency": rate / base / ranks,
                         "all_samples_per_s": [r["samples"] / r["seconds"] for r in mine],
                         "loads": [r["load_before"] for r in mine], "data": mine[0]["data"]})
    text = table(rows)
    print(text)
    out = args.out or os.path.join(HERE, "results", f"{socket.gethostname()}-"
                                   f"{datetime.date.today().isoformat()}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "distributed.md"), "w") as f:
        f.write(f"python -m benchmarks.distributed --models {args.models} --ranks "
                f"{args.ranks} --reps {args.reps} --epochs {args.epochs}"
                f"{' --mpi-allreduce' * args.mpi_allreduce}{' --torch' * args.torch}; "
                f"{os.cpu_count()} "
                f"cores, 1 BLAS thread per rank; each launch's figure is the median of its "
                f"{args.epochs} timed epochs, the table's the median of {args.reps} "
                f"launches\n\n{text}\n")
    with open(os.path.join(out, "distributed.json"), "w") as f:
        json.dump({"rows": rows, "cores": os.cpu_count(), "reps": args.reps,
                   "epochs": args.epochs, "runs": {" ".join(map(str, c)): r
                                                   for c, r in runs.items()}}, f, indent=1)
    print(f"wrote {out}/distributed.md, distributed.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
