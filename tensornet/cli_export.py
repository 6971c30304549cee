"""``tensornet export``: a checkpoint written by ``tensornet train`` -> an ONNX file.

    tensornet export --checkpoint runs/mlp-fashion-mnist/model.safetensors --out model.onnx

The file takes what ``tensornet eval`` feeds the model, i.e. raw inputs (pixels in [0, 1]):
the checkpoint's normalisation is folded in front of the network (``--no-normalize``
leaves it out). Registered by ``cli.build_parser``; errors follow the CLI's exit codes.
"""
from __future__ import annotations

from pathlib import Path

from tensornet.runconfig import validate_config

IMAGE_DATASETS = ("fashion-mnist", "mnist")


def add_parser(subparsers) -> None:
    export = subparsers.add_parser("export", help="write a trained model as an ONNX file")
    export.add_argument("--checkpoint", required=True, help="model.safetensors written by train")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default: tensornet.onnx.DEFAULT_OPSET)")
    export.add_argument("--no-normalize", action="store_true",
                        help="leave the input normalisation out (the file then takes "
                             "normalised inputs)")
    export.set_defaults(func=cmd_export)


def sample_shape(config: dict) -> tuple:
    """One input sample's shape for a ``tensornet train`` config."""
    spec = config["model"]
    kwargs = spec.get("kwargs", {})
    if spec["name"] == "cnn":
        side = int(kwargs.get("image_size", 28))
        return int(kwargs.get("in_channels", 1)), side, side
    if config.get("flatten") or config.get("dataset") not in IMAGE_DATASETS:
        return (int(kwargs["sizes"][0]),)
    return 1, 28, 28


def cmd_export(args) -> int:
    import numpy as np

    import tensornet as tn
    from tensornet.cli import UsageError

    state = tn.load(args.checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not isinstance(state.get("config"), dict):
        raise tn.CheckpointError(f"{args.checkpoint}: no model config in this checkpoint; it "
                                 f"was not written by 'tensornet train'")
    config = validate_config(state["config"], args.checkpoint)  # as eval: before building
    model = tn.models.build(config["model"])
    try:
        model.load_state_dict(state["model"])
    except ValueError as exc:
        raise tn.CheckpointError(f"{args.checkpoint}: {exc}") from exc
    model.eval()
    norm = config.get("normalize")
    transform = None
    if norm and not args.no_normalize:
        transform = tn.data.Normalize(norm["mean"], norm["std"])
    example = np.zeros((1,) + sample_shape(config), dtype=model.dtype)
    try:
        with tn.no_grad():
            model(example if transform is None else transform(example))
    except ValueError as exc:  # a config whose model or normalize does not fit its dataset
        raise tn.CheckpointError(f"{args.checkpoint}: the checkpoint's model does not take "
                                 f"{config['dataset']} inputs of shape (N, "
                                 f"{', '.join(map(str, example.shape[1:]))}): {exc}") from exc
    opset = tn.onnx.DEFAULT_OPSET if args.opset is None else args.opset
    if opset < tn.onnx.MIN_OPSET:
        raise UsageError(f"--opset {opset}: tensornet exports need opset >= "
                         f"{tn.onnx.MIN_OPSET}")
    if opset > tn.onnx.newest_opset():
        raise UsageError(f"--opset {opset}: the installed onnx knows opsets up to "
                         f"{tn.onnx.newest_opset()}")
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    proto = tn.onnx.export(model, example, out, input_transform=transform, opset=opset)
    print(f"wrote {out}: {config['model']['name']} ({model.num_parameters():,} parameters), "
          f"{len(proto.graph.node)} nodes, opset {opset}; input 'input' (N, "
          f"{', '.join(map(str, example.shape[1:]))}) {model.dtype}"
          f"{' raw (normalisation included)' if transform else ''}, output 'output'")
    return 0
