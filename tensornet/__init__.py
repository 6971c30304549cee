"""tensornet: neural networks written once against an array backend, run on NumPy or CuPy.

    import tensornet as tn
    model = tn.nn.Sequential(tn.nn.Linear(784, 256), tn.nn.ReLU(), tn.nn.Linear(256, 10))
    model.to("cuda")          # or build layers with device="cuda"
"""
from tensornet.backends import DeviceError, asnumpy, available_backends, get_backend, to_device

from . import callbacks, data, diagnostics, distributed, models, nn, optim
from .callbacks import EarlyStopping, ModelCheckpoint, TerminateOnNaN
from .io import CheckpointError, load, load_checkpoint, save, save_checkpoint
from .nn.gradcheck import gradcheck
from .random import get_rng_state, manual_seed, set_rng_state
from .train import History, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = ["nn", "optim", "data", "models", "callbacks", "diagnostics", "distributed",
           "get_backend", "available_backends", "to_device", "asnumpy", "DeviceError",
           "gradcheck", "manual_seed", "get_rng_state", "set_rng_state",
           "fit", "evaluate", "predict", "History",
           "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "save", "load", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "__version__"]
