"""Ready-made models shared by the CLI, the examples and the tests.

Each builder returns a ``Sequential`` and is described by a JSON-friendly spec
(``{"name": "mlp", "kwargs": {...}}``) so a checkpoint can rebuild it with ``build``.
"""
from __future__ import annotations

import numbers
from collections import OrderedDict

from . import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
               "leaky_relu": nn.LeakyReLU, "elu": nn.ELU}
INITS = ("xavier", "he", "normal")
_GAIN_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
               "leaky_relu": "leaky_relu", "elu": "relu"}


def _activation(name: str):
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of "
                         f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def init_weights(model, scheme: str | None, activation: str = "relu") -> None:
    """Re-initialise every Linear/Conv weight of ``model`` (biases to zero).

    ``"xavier"``: Glorot uniform with the activation's gain; ``"he"``: Kaiming normal
    (fan_in); ``"normal"``: N(0, 0.01^2). ``None`` keeps each layer's default (PyTorch's).
    The last layer uses gain 1 (it feeds the loss, not an activation).
    """
    if scheme is None:
        return
    if not isinstance(scheme, str) or scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; expected one of {', '.join(INITS)}")
    layers = [m for m in model.modules()
              if type(m).__name__ in ("Linear", "Conv2d", "DropConnect")]
    gain_name = _GAIN_NAMES.get(activation, "relu")
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        nonlinearity = "linear" if last else gain_name
        if scheme == "xavier":
            nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(nonlinearity))
        elif scheme == "he":
            nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
        else:
            nn.init.normal_(layer.weight, 0.0, 0.01)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _sizes(owner: str, sizes, least: str) -> list[int]:
    """``sizes`` as a list of positive ints (int-valued floats from JSON pass); a string
    would otherwise be read digit by digit and a fraction silently truncated."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"{owner}: sizes must be a list of layer widths such as "
                        f"[784, 256, 10], got {sizes!r}")
    sizes = list(sizes)
    for s in sizes:
        if (isinstance(s, bool) or not isinstance(s, numbers.Real) or not float(s).is_integer()
                or s < 1):
            raise ValueError(f"{owner}: sizes must be positive integers, got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"{owner}: sizes needs at least {least}, got {sizes}")
    return [int(s) for s in sizes]


def _finish(model, init, activation, device, dtype):
    init_weights(model, init, activation)
    if device is not None or dtype is not None:
        model.to(device, dtype)
    return model


def mlp(sizes=(784, 256, 120, 64, 10), activation: str = "relu", init: str | None = None,
        dropout: float = 0.0, device=None, dtype=None):
    """``Flatten -> [Linear -> act (-> Dropout)] * (len(sizes) - 2) -> Linear``.

    Input ``(N, sizes[0])`` or anything that flattens to it, e.g. images ``(N, 1, 28, 28)``;
    output ``(N, sizes[-1])`` logits.
    """
    sizes = _sizes("mlp", sizes, "an input and an output size")
    layers = [nn.Flatten()]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(_activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
    return _finish(nn.Sequential(*layers), init, activation, device, dtype)


def cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
        init: str | None = None, dropout: float = 0.3, device=None, dtype=None):
    """The small CNN of the convolution issue (LeNet-like, with BatchNorm):

    ``[Conv2d(C, 8, 3, p=1), BN, ReLU, MaxPool2] -> [Conv2d(8, 16, 3, p=1), BN, ReLU,
    MaxPool2] -> Flatten -> Linear(16*(S/4)^2, 128) -> ReLU -> Dropout -> Linear(128, K)``.
    Input ``(N, C, S, S)``.
    """
    try:
        conv, bn, pool = nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    except AttributeError as exc:
        raise RuntimeError("the cnn model needs tensornet.nn.Conv2d, BatchNorm2d and "
                           "MaxPool2d, which this build of tensornet lacks") from exc
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size < 4:
        raise ValueError(f"cnn: image_size must be an integer >= 4 (two 2x2 poolings), got "
                         f"{image_size!r}")
    side = image_size // 4
    layers = [conv(in_channels, 8, 3, padding=1), bn(8), nn.ReLU(), pool(2),
              conv(8, 16, 3, padding=1), bn(16), nn.ReLU(), pool(2),
              nn.Flatten(), nn.Linear(16 * side * side, 128), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(128, num_classes))
    return _finish(nn.Sequential(*layers), init, "relu", device, dtype)


def autoencoder(sizes=(784, 512, 256, 128, 30), activation: str = "relu",
                init: str | None = None, output: str = "sigmoid", device=None, dtype=None):
    """Mirrored MLP autoencoder: ``encoder`` maps ``(N, sizes[0])`` to the linear code
    ``(N, sizes[-1])``; ``decoder`` maps it back (``output`` activation, sigmoid for
    pixels in [0, 1]). Train with ``MSELoss`` and the inputs as targets; ``model.encoder``
    alone gives the codes."""
    sizes = _sizes("autoencoder", sizes, "two sizes")

    def stack(widths, last_activation):
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
            elif last_activation:
                layers.append(_activation(last_activation))
        return nn.Sequential(*layers)

    model = nn.Sequential(OrderedDict(encoder=stack(sizes, None),
                                      decoder=stack(sizes[::-1], output)))
    return _finish(model, init, activation, device, dtype)


MODELS = {"mlp": mlp, "cnn": cnn, "autoencoder": autoencoder}


def build(spec: dict, device=None):
    """Rebuild a model from ``{"name": ..., "kwargs": {...}}`` (as stored in checkpoints)."""
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise TypeError(f"model spec {name!r}: kwargs must be a dict of the builder's "
                        f"arguments, got {type(kwargs).__name__}")
    kwargs = dict(kwargs)
    kwargs["device"] = device
    return MODELS[name](**kwargs)
