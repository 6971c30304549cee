"""``tensornet eval`` (a checkpoint written by ``tensornet train`` on its dataset's test
split) and ``tensornet info`` (versions, backends, BLAS, GPU, where the data is).
Registered by ``cli.build_parser``; errors follow the CLI's exit codes.

    tensornet eval --checkpoint runs/mlp-fashion-mnist/model.safetensors
"""
from __future__ import annotations

from tensornet.cli import _check_data_dir, _device, _load_split, _loader, _positive, _test_line
from tensornet.runconfig import validate_config


def add_parsers(subparsers) -> None:
    ev = subparsers.add_parser("eval", help="evaluate a saved model on its dataset's test split")
    ev.add_argument("--checkpoint", required=True, help="model.safetensors written by train")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--batch-size", type=_positive(int), default=1000)
    ev.add_argument("--data-dir", default=None)
    ev.set_defaults(func=cmd_eval)

    info = subparsers.add_parser("info", help="versions, backends, BLAS, GPU")
    info.set_defaults(func=cmd_info)


def cmd_eval(args) -> int:
    import tensornet as tn

    device = _device(args.device)
    _check_data_dir(args.data_dir)
    state = tn.load(args.checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise tn.CheckpointError(f"{args.checkpoint}: no 'model' entry: not a checkpoint "
                                 f"written by 'tensornet train' or tn.save_checkpoint")
    config = validate_config(state.get("config"), args.checkpoint)  # before building anything
    model = tn.models.build(config["model"], device=device)
    try:
        model.load_state_dict(state["model"])
    except ValueError as exc:
        raise tn.CheckpointError(f"{args.checkpoint}: {exc}") from exc
    autoencoder = config["model"]["name"] == "autoencoder"
    xt, yt = _load_split(config["dataset"], "test", args.data_dir, config["seed"],
                         config["flatten"])
    norm = config["normalize"]
    transform = tn.data.Normalize(norm["mean"], norm["std"]) if norm else None
    loss_fn = tn.nn.MSELoss() if autoencoder else tn.nn.CrossEntropyLoss()
    try:
        test = tn.evaluate(model, loss_fn, _loader(xt, None if autoencoder else yt,
                                                   args.batch_size, device, transform))
    except ValueError as exc:  # a config whose model or normalize does not fit its dataset
        raise tn.CheckpointError(f"{args.checkpoint}: the checkpoint's model does not fit the "
                                 f"{config['dataset']} test set: {exc}") from exc
    print(f"{config['model']['name']} on {config['dataset']} from {args.checkpoint}")
    print(_test_line(test))
    return 0


def cmd_info(args) -> int:
    import platform

    import tensornet as tn

    print(f"tensornet {tn.__version__} (Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()})")
    print("Backends:")
    for name, status in tn.available_backends().items():
        print(f"  {name:10s} {status}")
        if status == "ok":
            for label, text in tn.get_backend(name).describe().items():
                if label != "device":
                    print(f"             {label}: {text}")
    try:
        folder = tn.data.datasets.find(tn.data.FASHION_MNIST, download=False)
        print(f"Fashion-MNIST: {folder}")
    except tn.data.DatasetError:
        print(f"Fashion-MNIST: not found locally (downloaded to "
              f"{tn.data.cache_dir() / 'fashion-mnist'} on first use)")
    return 0
