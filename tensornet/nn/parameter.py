"""Parameter: a trainable array and its gradient, on one device."""
from __future__ import annotations

import math

from tensornet.backends import dtype_name


class Parameter:
    """A trainable array.

    Attributes:
        data: the value, an array of the owning module's backend. Once an optimizer has
            stepped it, a view of that optimizer's flat group buffer (see
            ``tensornet/optim/flat.py``); assigning a new array is fine.
        grad: the accumulated gradient, same shape/device/dtype as ``data``, or ``None``
            before the first backward and after ``zero_grad()`` (as in PyTorch >= 2.0).
            Once an optimizer has stepped, a view of its flat gradient buffer: the next
            backward after ``zero_grad()`` writes the new gradient into that same memory,
            so an array kept from ``p.grad`` across steps changes with it (in PyTorch it
            would stay). Keep a copy (``p.grad.copy()``) to keep a gradient.
        requires_grad: when False the parameter is frozen: backward skips its gradient
            and optimizers leave it alone.
    """

    __slots__ = ("data", "grad", "requires_grad", "_grad_slot")

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad
        self._grad_slot = None  # the optimizer's flat-buffer view for this gradient

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> str:
        return dtype_name(self.data.dtype)

    @property
    def size(self) -> int:
        return math.prod(self.data.shape)

    def grad_buffer(self):
        """Where a layer may write this step's gradient directly (``out=``): the flat-buffer
        view when the gradient is empty and an optimizer gave the parameter one, else None.
        Pass the written array to ``accumulate_grad`` as usual."""
        if self.grad is None and self.requires_grad:
            return self._grad_slot
        return None

    # DLPack: ``torch.from_dlpack(param)`` (or CuPy's, JAX's) shares ``data``'s memory.
    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def accumulate_grad(self, grad) -> None:
        """Add ``grad`` into ``.grad``; the first call after ``zero_grad`` takes ``grad`` itself.

        Callers pass a freshly computed array that nothing else holds. When an optimizer
        keeps this gradient in a flat buffer, the first call copies ``grad`` there (unless
        it was written there already, see ``grad_buffer``), so the update needs no gather.
        """
        if not self.requires_grad:
            return
        if self.grad is not None:
            self.grad += grad
            return
        slot = self._grad_slot
        if slot is not None and slot is not grad and tuple(slot.shape) == tuple(grad.shape) \
                and slot.dtype == grad.dtype and type(slot) is type(grad):
            slot[...] = grad
            grad = slot
        self.grad = grad

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``grad = None`` (or zeros in place with ``set_to_none=False``). The memory of an
        optimizer's flat buffer is reused by the next backward (see ``grad`` above)."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad[...] = 0.0

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{frozen})"
