"""The checks every layer runs on its input (and, through ``grad_mode``, on backward's
``grad_output``): device, rank, size, dtype, each error naming the layer and what it
expected. Identity and shape comparisons only: no pass over the data."""
from __future__ import annotations

import numbers

from tensornet.backends import DeviceError, backend_of, device_of, dtype_name

from .grad_mode import check_grad_output

FLOAT_DTYPES = ("float16", "float32", "float64")
_FLOATING = frozenset(FLOAT_DTYPES)


class InputChecks:
    """Mixed into ``Module``: the checks layers call from ``forward``."""

    def _check_input(self, x, ndim=None, features=None, expected: str = "",
                     dtype: str | None = "parameters", name: str = "input",
                     backward: bool = False):
        """Raise a clear error unless ``x`` is an array of this module's device (and dtype).

        ``ndim`` is an int or a tuple of allowed ranks; ``features`` the required size of
        the last axis. ``dtype``: ``"parameters"`` (the module's own dtype), ``"floating"``
        (any floating dtype: modules without parameters) or None (not checked). ``name``:
        the argument the errors name when it is not the input (``"h0"``, ``"grad_h_n"``);
        ``backward``: the errors name ``.backward`` (an argument of backward's).
        """
        backend = self.backend
        came = "backward got" if backward else "got"
        if not backend.owns(x):
            owner = self._describe()  # (only on the way to an error: it formats a string)
            # (A NumPy scalar has a shape and a dtype and the CPU's device, but no array.)
            if hasattr(x, "shape") and hasattr(x, "dtype") and device_of(x) != backend.device:
                raise DeviceError(f"{owner} is on {backend.device!r} but {came} "
                                  f"{'an input' if name == 'input' else name} on "
                                  f"{device_of(x)!r}; move the model or the data with "
                                  f".to({device_of(x)!r}) / tensornet.to_device")
            raise TypeError(f"{owner}{'.backward' if backward else ''} expected "
                            f"{'an' if name == 'input' else name + ' as an'} array, got "
                            f"{type(x).__name__}")
        shape = tuple(x.shape)
        if (ndim is not None and len(shape) not in (ndim if isinstance(ndim, tuple) else (ndim,))
                or features is not None and (not shape or shape[-1] != features)):
            raise ValueError(f"{self._describe()} {came} {name} of shape {shape}; "
                             f"expected {expected}")
        if shape and shape[0] == 0:
            raise ValueError(f"{self._describe()} got an empty batch (shape {shape})")
        if dtype is not None:
            got = dtype_name(x.dtype)
            if got == self.dtype:
                return
            if got not in _FLOATING:
                raise TypeError(input_dtype_message(self, x, got, name, backward))
            if dtype == "parameters":
                owner = self._describe()
                what, variable = ("the input", "x") if name == "input" else (name, name)
                raise TypeError(f"{owner} has {self.dtype} parameters but {came} {got} {name}; "
                                f"cast {what} ({_cast_hint(x, self.dtype, variable)}) or the "
                                f"model (.to(dtype={got!r}))")

    def _accept_floating(self, x, ndim=None, expected: str = ""):
        """For modules without parameters to pin them (activations, pooling, Dropout,
        Flatten, losses): compute on ``x``'s device; ``x`` must be a floating array."""
        if not self.backend.owns(x):
            self._follow_device(x)
        self._check_input(x, ndim=ndim, expected=expected, dtype="floating")

    def _follow_device(self, x) -> None:
        """Compute on the device of the array ``x`` (anything else is left for the checks
        to report, naming the module)."""
        if not self.backend.owns(x):
            try:
                object.__setattr__(self, "backend", backend_of(x))
            except TypeError:
                pass

    def _check_grad_output(self, grad_output, spec) -> None:
        """Called by backward before it runs (see grad_mode.py); losses override it."""
        check_grad_output(self, grad_output, spec)

    def _require_cache(self, cached):
        if cached is None:
            raise RuntimeError(f"{self._describe()}.backward called before forward (or after "
                               f"to()/clear_cache()); run forward on the batch first")
        return cached


def input_dtype_message(module, x, name: str, argument: str = "input",
                        backward: bool = False) -> str:
    """The error for a non-floating ``argument`` (the input, or e.g. ``"h0"``; one of
    backward's) of dtype ``name``: what came, and a conversion that works."""
    text = (f"{module._describe()}{'.backward' if backward else ''} expects floating-point "
            f"{argument}, got {name}")
    if name.startswith(("int", "uint", "bool")):
        cast = _cast_hint(x, module.dtype, "x" if argument == "input" else argument)
        if argument != "input":
            return f"{text}; convert it first: {cast}"
        return f"{text}; convert it first: {cast} (raw 8-bit images: {cast} / 255)"
    return f"{text}; {name} values are not supported"


def _cast_hint(x, dtype: str, variable: str = "x") -> str:
    """Code that casts ``variable`` (the array ``x``) to ``dtype`` on its own device
    (NumPy/CuPy have ``astype``)."""
    if hasattr(x, "astype"):
        return f"{variable}.astype({dtype!r})"
    return f"tn.get_backend({variable}).asarray({variable}, {dtype!r})"


def check_flag(owner: str, name: str, value) -> bool:
    """``value`` as a bool when it is one (NumPy's included); else a ValueError naming
    ``owner`` and ``name`` (``bool("no")`` would be True)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_real(owner: str, name: str, value) -> float:
    """``value`` as a float when it is a real number; else (a bool, a string, None) a
    ValueError naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    return float(value)
