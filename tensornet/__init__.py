"""tensornet: neural networks written once against an array backend, run on NumPy or CuPy.

    import tensornet as tn
    model = tn.nn.Sequential(tn.nn.Linear(784, 256), tn.nn.ReLU(), tn.nn.Linear(256, 10))
    model.to("cuda")          # or build layers with device="cuda"
"""
import importlib.util as _util
import os as _os
import sys as _sys

# The hard dependencies (pyproject.toml), module -> distribution.
_REQUIRED = {"numpy": "numpy", "array_api_compat": "array-api-compat",
             "safetensors": "safetensors", "tqdm": "tqdm"}


def _check_dependencies() -> None:
    """One clear ImportError naming every missing dependency and how to install it, not a
    ModuleNotFoundError from deep inside the first module that needs one."""
    missing = [dist for module, dist in _REQUIRED.items() if _util.find_spec(module) is None]
    if missing:
        raise ImportError(
            f"tensornet needs {', '.join(missing)}, which this Python ({_sys.executable}) "
            f"does not have: install tensornet with its dependencies (`pip install .` or "
            f"`pip install -e '.[dev]'` in a clone, in a virtual environment), or "
            f"`pip install {' '.join(missing)}`")


_check_dependencies()


def _map_source_tree_backends() -> None:
    """Import the top-level ``backends/`` folder as ``tensornet.backends`` when this package
    runs from a source tree.

    The design keeps ``backends/`` beside ``tensornet/`` (pyproject.toml's package-dir maps it
    to ``tensornet.backends`` in every install, editable or not). Run from a clone, with no
    install, or with a regular install whose copy this folder shadows, the import system
    finds ``tensornet/`` here but no ``tensornet/backends``: then, and only then, the sibling
    folder of this very tree is loaded under that name, so the code that runs is the code
    of this tree.
    """
    name = f"{__name__}.backends"
    if name in _sys.modules or _util.find_spec(name) is not None:
        return
    folder = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))),
                           "backends")
    init = _os.path.join(folder, "__init__.py")
    if not _os.path.isfile(init):
        return  # a broken install: the import below raises the usual ModuleNotFoundError
    spec = _util.spec_from_file_location(name, init, submodule_search_locations=[folder])
    module = _util.module_from_spec(spec)
    _sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del _sys.modules[name]
        raise
    globals()["backends"] = module  # as the import system binds a submodule on its parent


_map_source_tree_backends()

# The imports below need tensornet.backends, so they follow the call above.
from tensornet.backends import (DeviceError, asnumpy, available_backends,  # noqa: E402
                                get_backend, to_device)
from tensornet.backends.threads import (get_num_threads, num_threads,  # noqa: E402
                                        set_num_threads)

from . import (callbacks, data, diagnostics, distributed, models, nn, onnx,  # noqa: E402
               optim, regularizers)
from .callbacks import EarlyStopping, ModelCheckpoint, TerminateOnNaN
from .dlpack import from_dlpack, to_dlpack
from .io import CheckpointError, load, load_checkpoint, save, save_checkpoint
from .nn.grad_mode import is_grad_enabled, no_grad
from .nn.gradcheck import gradcheck
from .random import get_rng_state, manual_seed, set_rng_state
from .summary import summary
from .train import History, evaluate, fit, make_train_step, predict, train_step

__version__ = "0.1.0"

__all__ = ["nn", "optim", "data", "models", "callbacks", "diagnostics", "regularizers", "onnx",
           "distributed",
           "get_backend", "available_backends", "to_device", "asnumpy", "DeviceError",
           "set_num_threads", "num_threads", "get_num_threads", "gradcheck", "no_grad",
           "is_grad_enabled",
           "manual_seed", "get_rng_state",
           "set_rng_state",
           "fit", "evaluate", "predict", "History", "train_step", "make_train_step",
           "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "save", "load", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "summary", "from_dlpack", "to_dlpack",
           "__version__"]
