"""The ``tensornet`` command (also ``python -m tensornet``): train, eval, info, export.

    tensornet train                       # MLP 784-256-120-64-10 on Fashion-MNIST, CPU
    tensornet train --model cnn --device cuda --epochs 10 --out runs/cnn
    tensornet eval --checkpoint runs/mlp-fashion-mnist/model.safetensors
    tensornet info
    tensornet export --checkpoint runs/mlp-fashion-mnist/model.safetensors --out model.onnx

Exit status: 0 success, 1 runtime failure (missing dataset, damaged checkpoint...),
2 bad arguments. Errors are one line on stderr, without a traceback (set
TENSORNET_DEBUG=1 to see it).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from tensornet.io.atomic import atomic_write
from tensornet.runconfig import DATASETS

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.01,
              "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}
MODEL_NAMES = ("mlp", "cnn", "autoencoder")


class UsageError(Exception):
    """A bad argument found after parsing (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return convert


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), got {text}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tensornet", description="Train and evaluate tensornet models.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,info,export}")

    train = sub.add_parser("train", help="train a model and save it with its learning curves")
    train.add_argument("--model", choices=MODEL_NAMES, default="mlp",
                       help="mlp (784-256-120-64-10), cnn (2 conv blocks), autoencoder "
                            "(784-512-256-128-30 mirrored, MSE); default mlp")
    train.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    train.add_argument("--epochs", type=_positive(int), default=5, help="default 5")
    train.add_argument("--batch-size", type=_positive(int), default=128, help="default 128")
    train.add_argument("--lr", type=_positive(float), default=None,
                       help="learning rate (default per optimizer: "
                            + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    train.add_argument("--init", choices=("xavier", "he", "normal"), default="he",
                       help="weight initialisation (default he)")
    train.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    train.add_argument("--val-split", type=_fraction, default=0.2,
                       help="fraction of the training set held out for validation (default 0.2)")
    train.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    train.add_argument("--out", default=None,
                       help="output folder (default runs/<model>-<dataset>)")
    train.add_argument("--data-dir", default=None,
                       help="folder with the IDX .gz files (default: $TENSORNET_DATA, the "
                            "cache, /usr/share/datasets, then download)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch table")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the ranks of mpiexec (mpiexec -n 2 tensornet "
                            "train --distributed); --batch-size is then per rank, as in "
                            "PyTorch, so the global batch is batch-size x ranks")
    train.add_argument("--sync-bn", action="store_true",
                       help="with --distributed: BatchNorm statistics over the global batch "
                            "of all ranks (nn.SyncBatchNorm), as in one process; by default "
                            "each rank normalises with its own batch, as PyTorch's DDP")
    train.set_defaults(func=cmd_train)

    from tensornet import cli_eval, cli_export  # eval and info; export (issue 16): ONNX
    cli_eval.add_parsers(sub)
    cli_export.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import tensornet as tn

    if args.version:
        print(f"tensornet {tn.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    # distributed (issue 18): an error on one rank ends every rank (abort_if_distributed)
    # instead of leaving the others waiting in a collective
    try:
        code = _run_quietly(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except UsageError as exc:
        print(f"tensornet {args.command}: error: {exc}", file=sys.stderr)
        return tn.distributed.abort_if_distributed(2)
    except KeyboardInterrupt:
        print("tensornet: interrupted", file=sys.stderr)
        return tn.distributed.abort_if_distributed(130)
    except BrokenPipeError:  # `tensornet info | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return tn.distributed.abort_if_distributed(141)
    except (tn.data.DatasetError, tn.CheckpointError, tn.nn.NonFiniteError, MemoryError,
            OSError, ValueError, RuntimeError) as exc:
        if os.environ.get("TENSORNET_DEBUG"):
            raise
        print(f"tensornet {args.command}: error: {exc}", file=sys.stderr)
        return tn.distributed.abort_if_distributed(1)


def _run_quietly(args) -> int:
    """The command with NumPy's floating-point warnings off (TerminateOnNaN reports non-finite
    values in words) and any other warning as one line without a file path."""
    import numpy as np

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"tensornet {args.command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.showwarning = one_line
        return args.func(args)


# ---------------------------------------------------------------------- files
OUTPUTS = ("history.json", "model.safetensors", "curves.png")


def _check_data_dir(data_dir) -> None:
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        what = "a file, not a folder" if Path(data_dir).expanduser().exists() else \
            "no such folder"
        raise UsageError(f"--data-dir {data_dir}: {what}")


def _check_out(out: Path) -> None:
    """Prove ``out`` writable now, not after minutes of training, leaving no trace."""
    for name in OUTPUTS:  # found now, not by the save after the training
        if (out / name).exists() and not (out / name).is_file():
            raise UsageError(f"--out {out}: {out / name} is not a regular file (a folder, "
                             f"device or pipe); tensornet train writes a file of that name")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc
    finally:
        for folder in created:   # deepest first; the run creates them again when it saves
            if folder.is_dir():
                folder.rmdir()


def _retire(out: Path, names) -> str:
    """Rename earlier outputs this run does not replace (``x.ext`` -> ``x.previous.ext``)."""
    moved = []
    for name in names:
        if (out / name).is_file():
            stem, _, ext = name.partition(".")
            os.replace(out / name, out / f"{stem}.previous.{ext}")
            moved.append(f"{name} -> {stem}.previous.{ext}")
    return f"; renamed the earlier {', '.join(moved)}" if moved else ""


# ---------------------------------------------------------------------- data
def _load_split(name: str, split: str, data_dir, seed: int, flatten: bool):
    """``(x, y)`` host arrays of one split; the toy sets draw their test split from
    another seed."""
    import tensornet as tn

    if name in ("fashion-mnist", "mnist"):
        load = tn.data.fashion_mnist if name == "fashion-mnist" else tn.data.mnist
        x, y = load(split, root=data_dir)
    else:
        make = tn.data.toy_blobs if name == "blobs" else tn.data.toy_spirals
        x, y = make(n=3000, seed=seed) if split == "train" else make(n=1000, seed=seed + 10_000)
    return (x.reshape(x.shape[0], -1) if flatten else x), y


def _model_spec(model: str, dataset: str, x, y, init: str) -> dict:
    features = int(x[0].size)
    if model == "autoencoder":
        return {"name": "autoencoder", "kwargs": {"sizes": [features, 512, 256, 128, 30],
                                                  "init": init}}
    classes = int(y.max()) + 1
    if model == "cnn":
        if x.ndim != 4:
            raise UsageError(f"--model cnn needs image data; {dataset} holds {x.shape[1:]} "
                             f"feature vectors")
        return {"name": "cnn", "kwargs": {"in_channels": int(x.shape[1]), "num_classes": classes,
                                          "image_size": int(x.shape[2]), "init": init}}
    hidden = [256, 120, 64] if features > 16 else [64, 64]
    return {"name": "mlp", "kwargs": {"sizes": [features, *hidden, classes], "init": init}}


def _optimizer(name: str, params, lr: float):
    import tensornet as tn

    if name in ("sgd", "momentum", "nesterov"):
        return tn.optim.SGD(params, lr=lr, momentum=0.0 if name == "sgd" else 0.9,
                            nesterov=name == "nesterov")
    return {"adagrad": tn.optim.Adagrad, "rmsprop": tn.optim.RMSprop, "adam": tn.optim.Adam,
            "adamw": tn.optim.AdamW}[name](params, lr=lr)


def _device(name: str):
    import tensornet as tn

    try:
        return tn.get_backend(name).device
    except (ValueError, tn.DeviceError) as exc:
        raise UsageError(f"--device {name}: {exc}") from exc


def _distributed_init():
    """The MPI communicator for --distributed (issue 18); a usage error without mpi4py."""
    import tensornet as tn

    try:
        return tn.distributed.init()
    except ImportError as exc:
        raise UsageError(f"--distributed: {exc}") from exc


def _loader(x, y, batch_size, device, transform):
    import tensornet as tn

    return tn.data.DataLoader(tn.data.ArrayDataset(x, y), batch_size, device=device,
                              transform=transform)


# ---------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    import tensornet as tn

    if args.sync_bn and not args.distributed:
        raise UsageError("--sync-bn synchronises BatchNorm across the ranks of --distributed; "
                         "add --distributed (and run under mpiexec)")
    comm = _distributed_init() if args.distributed else None  # distributed (issue 18)
    main_rank = comm is None or comm.rank == 0
    device = _device(args.device if comm is None else tn.distributed.device_for(comm,
                                                                                args.device))
    shard = {} if comm is None else {"shard": comm.shard}
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    out = Path(args.out or f"runs/{args.model}-{args.dataset}")
    _check_data_dir(args.data_dir)
    if main_rank:  # only rank 0 writes there (another host's filesystem may differ)
        _check_out(out)
    autoencoder = args.model == "autoencoder"
    # distributed (issue 18): own dropout masks per rank; DataParallel gives all rank 0's weights
    tn.manual_seed(args.seed + (comm.rank if comm is not None else 0))
    x, y = _load_split(args.dataset, "train", args.data_dir, args.seed, autoencoder)
    xt, yt = _load_split(args.dataset, "test", args.data_dir, args.seed, autoencoder)
    spec = _model_spec(args.model, args.dataset, x, y, args.init)
    full = tn.data.ArrayDataset(x, None if autoencoder else y)
    if args.val_split > 0:
        parts = tn.data.random_split(full, [1.0 - args.val_split, args.val_split],
                                     seed=args.seed)
        # materialise each split once: the statistics and the loaders share these arrays
        train_set, val_set = (tn.data.ArrayDataset(*part.arrays()) for part in parts)
        if not (len(train_set) and len(val_set)):
            raise UsageError(f"--val-split {args.val_split:g}: leaves {len(train_set)} "
                             f"training and {len(val_set)} validation samples of the "
                             f"{len(full)}; each needs at least one (0 turns validation off)")
    else:
        train_set, val_set = full, None
    normalize = None
    if not autoencoder:  # the autoencoder reconstructs raw pixels in [0, 1]
        image = args.dataset in ("fashion-mnist", "mnist")
        normalize = tn.data.Normalize.from_data(train_set.x, per_channel=not image)
    model = tn.models.build(spec, device=device)
    if comm is not None:  # distributed (issue 18)
        if args.sync_bn:  # same parameters, buffers and state_dict keys
            model = tn.nn.SyncBatchNorm.convert_sync_batchnorm(model, comm)
        model = tn.distributed.DataParallel(model, comm)
    optimizer = _optimizer(args.optimizer, model.parameters(), lr)
    loss_fn = tn.nn.MSELoss() if autoencoder else tn.nn.CrossEntropyLoss()
    train_loader = tn.data.DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed,
                                      device=device, transform=normalize, **shard)
    # distributed (issue 18): evaluation counts every sample once, as in one process
    eval_shard = {} if comm is None else {"shard": comm.shard, "shard_tail": "uneven"}
    val_loader = None if val_set is None else tn.data.DataLoader(
        val_set, max(args.batch_size, 1000), device=device, transform=normalize, **eval_shard)
    verbose = 0 if args.quiet or not main_rank else 1
    if verbose:
        batch = (f"batch {args.batch_size}" if comm is None else
                 f"batch {args.batch_size} per rank x {comm.size} ranks = "
                 f"{args.batch_size * comm.size} global"
                 + (f", BatchNorm over all ranks ({_count_sync_bn(model)} SyncBatchNorm)"
                    if args.sync_bn else ""))
        print(f"tensornet {tn.__version__}: {spec['name']} "
              f"({model.num_parameters():,} parameters) on {args.dataset} "
              f"({len(train_set)} train / {len(val_set) if val_set else 0} valid / {len(xt)} "
              f"test), {args.optimizer} lr={lr:g}, {batch}, {device}")
    start = time.perf_counter()
    try:
        history = tn.fit(model, loss_fn, optimizer, train_loader, val_loader,
                         epochs=args.epochs, callbacks=[tn.TerminateOnNaN()], verbose=verbose)
    except tn.nn.NonFiniteError as exc:
        raise tn.nn.NonFiniteError(f"{exc}{_retire(out, OUTPUTS)}") from exc
    train_seconds = time.perf_counter() - start
    if history.stop_reason and history.stop_reason.startswith("TerminateOnNaN"):  # --quiet too
        if main_rank:  # distributed (issue 18): rank 0 alone writes files and prints
            history.save_json(out / "history.json")
            print(f"tensornet train: training diverged: {history.stop_reason}; wrote "
                  f"{out}/history.json only{_retire(out, OUTPUTS[1:])}", file=sys.stderr)
        return 1
    test_loader = tn.data.DataLoader(tn.data.ArrayDataset(xt, None if autoencoder else yt),
                                     1000, device=device, transform=normalize, **eval_shard)
    test = tn.evaluate(model, loss_fn, test_loader)
    rng_per_rank = tn.distributed.rng_states(comm) if comm is not None else None
    if not main_rank:
        return 0
    config = {"model": spec, "dataset": args.dataset, "device": device, "seed": args.seed,
              "optimizer": args.optimizer, "lr": lr, "batch_size": args.batch_size,
              "epochs": len(history), "normalize": normalize.state() if normalize else None,
              "flatten": autoencoder, "test": test, "train_seconds": train_seconds}
    # Every output is made before the first is written, and each is written atomically, so
    # an interrupt or a failure leaves no partial file and no new history.json beside the
    # earlier run's model (the window left is between the renames)
    curves_png = io.BytesIO()
    try:
        history.plot(curves_png, title=f"{spec['name']} on {args.dataset}")
    except ImportError:
        curves_png = None
    history.save_json(out / "history.json")
    tn.save_checkpoint(out / "model.safetensors", model, optimizer, loader=train_loader,
                       epoch=len(history), config=config, history=history.to_dict(),
                       rng_per_rank=rng_per_rank)
    if curves_png is not None:
        atomic_write(out / "curves.png", curves_png.getvalue(), "the learning curves")
        curves = ", curves.png"
    else:
        print("note: matplotlib is not installed, so curves.png was skipped "
              f"(pip install 'tensornet[plot]'){_retire(out, OUTPUTS[2:])}")
        curves = ""
    print(f"Training time: {train_seconds:.1f}s; wrote {out}/history.json, "
          f"model.safetensors{curves}")
    print(_test_line(test))
    return 0


def _count_sync_bn(model) -> int:
    import tensornet as tn
    return sum(isinstance(m, tn.nn.SyncBatchNorm) for m in model.modules())


def _test_line(test: dict) -> str:
    if test["acc"] is not None:
        return (f"Test accuracy: {100.0 * test['acc']:.2f}% ({test['samples']} samples, "
                f"loss {test['loss']:.4f})")
    return f"Test loss (MSE): {test['loss']:.5f} ({test['samples']} samples)"


if __name__ == "__main__":
    sys.exit(main())
