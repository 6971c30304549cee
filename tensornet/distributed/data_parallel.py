"""DataParallel: one model replica per rank, gradients averaged in backward.

    comm = tn.distributed.init()
    model = tn.distributed.DataParallel(model, comm)
    loss = loss_fn(model(xb), yb)         # xb: this rank's part of the global batch
    model.backward(loss_fn.backward())    # returns once p.grad is the mean over the ranks
    opt.step(); opt.zero_grad()           # every rank takes the same step

Gradient accumulation, as with PyTorch's DDP: the backwards of all micro-batches but the
last inside ``with model.no_sync():`` (no communication), the last outside (it averages the
accumulated gradients over the ranks).
"""
from __future__ import annotations

import contextlib
import zlib
from itertools import zip_longest

import numpy as np

from tensornet.backends import dtype_name, get_backend
from tensornet.nn.loss import NonFiniteError
from tensornet.nn.module import Module
from tensornet.nn.sync_batchnorm import SyncBatchNorm
from tensornet.optim.flat import grad_layout, offer_grad_memory

from .buckets import DEFAULT_BUCKET_BYTES, make_buckets
from .comm import Communicator, world


class PeerFailureError(NonFiniteError):
    """The loss was not finite on another rank, so no rank takes this step."""

    agreed = True  # every rank raises it (or its own NonFiniteError) at the same step


class DataParallel(Module):
    """Wrap ``module`` for data-parallel training over ``comm`` (default: ``init()``'s).

    At wrap time every rank checks that its model has the same parameter and buffer names,
    shapes and dtypes as rank 0's (a ValueError on all ranks names the first difference),
    then takes rank 0's values. ``backward(grad)`` runs the module's backward, then
    averages the gradients over the ranks in buckets of about ``bucket_bytes`` (few large
    all-reduces, not one per parameter) before it returns, so ``opt.step()`` is the same
    on every rank. A parameter without a gradient on some ranks counts as zero there; one
    without a gradient on every rank keeps ``grad=None``. Freezing parameters
    (``requires_grad=False``) after wrapping is fine when every rank freezes the same ones;
    a backward where the ranks' trainable parameters differ, or where the model has
    parameters it did not have at wrap time (their values were never made rank 0's), raises
    a ValueError on every rank naming the difference.

    Buffers (BatchNorm running statistics) follow PyTorch's DDP: training updates them
    per rank from the local batch, and switching to eval mode (``eval()``, as ``evaluate``
    does) copies rank 0's to every rank, so all ranks evaluate and save one model.
    ``nn.SyncBatchNorm`` computes the statistics over the global batch instead.

    ``state_dict()`` / ``load_state_dict()`` use the wrapped model's keys (no ``module.``
    prefix). Forward, backward (outside ``no_sync``) and the switch to eval mode are
    collective: call them on every rank.
    """

    def __init__(self, module: Module, comm: Communicator | None = None, *,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel wraps a tensornet Module, got {type(module).__name__}")
        if isinstance(module, DataParallel):
            raise TypeError("DataParallel: this model is already wrapped")
        super().__init__(device=module.backend, dtype=module.dtype)
        comm = comm if comm is not None else world()
        self.comm = comm if comm is not None else Communicator()
        self.module = module
        self.bucket_bytes = int(bucket_bytes)
        self._buckets, self._layout = None, None
        self._wrapped = list(module.parameters())  # the parameters whose values rank 0 gave
        self._agreement = (None, None)  # (this rank's parameter key, its [changed, code])
        self._reduced = True  # this step's gradients were averaged (or no step is pending)
        self._sync = True  # False inside no_sync()
        self._check_same_model()
        self.broadcast_from_rank0()
        self._share_gradients()

    # ------------------------------------------------------------------ wrap time
    def _signature(self) -> list:
        entries = [(name, tuple(p.shape), dtype_name(p.data.dtype), bool(p.requires_grad))
                   for name, p in self.module.named_parameters()]
        entries += [(name, tuple(b.shape), dtype_name(b.dtype), None)
                    for name, b in self.module.named_buffers()]
        return entries

    def _check_same_model(self, when: str = "", advice: str = "every rank must build the "
                                                               "same model") -> None:
        mine = self._signature()
        signatures = self.comm.allgather(mine)
        reference = signatures[0]
        for rank, theirs in enumerate(signatures):
            if theirs == reference:
                continue
            for ref, got in zip_longest(reference, theirs):
                if ref != got:
                    raise ValueError(
                        f"DataParallel: rank {rank}'s model differs from rank 0's{when}: rank 0 "
                        f"has {_describe(ref)}, rank {rank} has {_describe(got)}; {advice}")

    def _share_gradients(self) -> None:
        """Where every rank runs on this host (the shared-window all-reduce), give the
        parameters gradient memory that every rank maps (collective). An optimizer built
        afterwards keeps its flat gradient buffer there, and each step's all-reduce then
        sums the ranks' gradients where they lie instead of copying them into the window and
        back: 68 against 206 us for 1 MiB with two ranks, measured on a 2-core VM
        (``tensornet/distributed/shared.py``). Not done, on any rank, when a
        rank's parameters are not host NumPy arrays or already have an optimizer's slots, or
        when ``/dev/shm`` lacks the room (then the gradients go through the window's chunks,
        as arrays of the rank's own memory)."""
        if self.comm.size == 1:
            return
        reducer = self.comm._shared
        params = self._wrapped
        nbytes = grad_layout(params)[1]
        fits = reducer is not None and bool(params) and reducer.can_share(nbytes) and all(
            type(p.data) is np.ndarray and p._grad_slot is None for p in params)
        if self.comm.all(fits):
            memory = self.comm._collective(f"a shared gradient block of {nbytes:,} bytes",
                                           reducer.share, nbytes)
            offer_grad_memory(params, memory)

    def broadcast_from_rank0(self) -> None:
        """Give every rank rank 0's parameters and buffers (collective)."""
        if self.comm.size == 1:
            return
        for param in self.module.parameters():
            self.comm.bcast_(param.data)
        for _, buf in self.module.named_buffers():
            self.comm.bcast_(buf)

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        if self.training:
            self._reduced = False
        return self.module(*args, **kwargs)

    def backward(self, grad_output, input_grad: bool = True):
        """Backward through the module, then the gradient average over the ranks (inside
        ``no_sync()``: none, the gradients accumulate on this rank only). When the module's
        backward communicates itself (SyncBatchNorm), the ranks first agree that every
        rank's step can run: a rank whose loss was not finite reports it there, not in an
        all-reduce the others would meet in SyncBatchNorm's."""
        if self._backward_communicates():
            self._agree_step_runs()
        grad_input = self.module.backward(grad_output, input_grad=input_grad)
        if self._sync:
            self.reduce_gradients()
        else:
            self._reduced = True  # no rank averages this backward: none to join on failure
        return grad_input

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block ``backward`` adds this rank's gradients into ``p.grad`` without
        averaging them over the ranks (no communication), as PyTorch DDP's ``no_sync``.
        The first backward outside averages everything accumulated, so gradient
        accumulation over k micro-batches costs one all-reduce::

            opt.zero_grad()
            with model.no_sync():
                for xb, yb in micro_batches[:-1]:
                    loss_fn(model(xb), yb); model.backward(loss_fn.backward() / k)
            xb, yb = micro_batches[-1]
            loss_fn(model(xb), yb); model.backward(loss_fn.backward() / k)  # averaged here
            opt.step()

        Every rank must run the same number of backwards outside the block (and, with
        ``nn.SyncBatchNorm``, which communicates in every forward and backward, inside it
        too). Do not call
        ``opt.step()`` on gradients accumulated inside alone: they differ between ranks.
        """
        previous = self._sync
        self._sync = False
        try:
            yield self
        finally:
            self._sync = previous

    def reduce_gradients(self, failed: bool = False) -> None:
        """Average the gradients over the ranks (``backward`` calls it). ``failed=True``
        tells the other ranks that this rank cannot take the step (its loss was not
        finite): then every rank's call raises and no rank's gradients change."""
        self._reduced = True
        if self.comm.size == 1:
            return
        # One all-reduce of a fixed length (the wrapped parameters) carries the failure flag,
        # the agreement on the parameters and which of them have a gradient anywhere.
        changed, code = self._parameter_code()
        status = self.comm.sum([1.0 if failed else 0.0, changed, code, code * code]
                               + [1.0 if p.requires_grad and p.grad is not None else 0.0
                                  for p in self._wrapped])
        if status[0] > 0:
            if failed:
                return
            self._raise_peer_failure(status[0])
        # the codes agree when sum(c)^2 == size * sum(c^2) (Cauchy-Schwarz; exact integers)
        if status[1] > 0 or int(status[2]) ** 2 != self.comm.size * int(status[3]):
            self._raise_parameters_differ()
        present = [p for p, count in zip(self._wrapped, status[4:]) if count > 0]
        for param in present:
            if param.grad is None:  # unused here, used on another rank
                param.grad = get_backend(param.data).zeros(param.shape, param.data.dtype)
        self._bucket_list(present)
        for bucket in self._buckets:
            bucket.reduce_mean_(self.comm)

    def _parameter_code(self) -> tuple[float, float]:
        """``(changed, code)``: 1.0 when the model's parameters are no longer the wrapped
        ones, and a 20-bit checksum of their names, shapes, dtypes and ``requires_grad``
        (the same on every rank when they agree); recomputed only when they change."""
        params = list(self.module.parameters())
        key = [(id(p), p.requires_grad, p.data.dtype, p.shape) for p in params]
        known, value = self._agreement
        if key != known:
            changed = len(params) != len(self._wrapped) or any(
                p is not q for p, q in zip(params, self._wrapped))
            trainable = [(name, tuple(p.shape), dtype_name(p.data.dtype), bool(p.requires_grad))
                         for name, p in self.module.named_parameters()]
            value = (1.0 if changed else 0.0,
                     float(zlib.crc32(repr(trainable).encode()) & 0xFFFFF))
            self._agreement = (key, value)
        return value

    def _raise_parameters_differ(self) -> None:
        """Every rank's backward found that the parameters differ: name how (collective)."""
        wrapped = {id(p) for p in self._wrapped}
        names = {id(p): name for name, p in self.module.named_parameters()}
        added = [name for name, p in self.module.named_parameters() if id(p) not in wrapped]
        removed = len([p for p in self._wrapped if id(p) not in names])
        for rank, (new, gone) in enumerate(self.comm.allgather((added, removed))):
            if new or gone:
                what = (f"has parameter {new[0]!r}, which it did not have at wrap time" if new
                        else f"no longer has {gone} of the parameters it was wrapped with")
                raise ValueError(f"DataParallel: rank {rank}'s model {what}; DataParallel "
                                 f"averages the parameters it wrapped (and gave them rank 0's "
                                 f"values): change the model before wrapping it")
        self._check_same_model(" at this backward", "every rank must freeze "
                               "(requires_grad=False) the same parameters, of the same dtype")
        raise ValueError("DataParallel: the ranks' parameters differ at this backward")

    def report_failure(self) -> None:
        """Join this step's gradient average as a rank whose step failed, so the other
        ranks stop too instead of waiting (``fit`` calls it on a non-finite loss)."""
        if self._reduced:
            return
        if self._backward_communicates():  # the others agree before their backward
            self._reduced = True
            self._agree_step_runs(failed=True)
        else:
            self.reduce_gradients(failed=True)

    def _backward_communicates(self) -> bool:
        """Whether the module's backward makes collectives of its own: a SyncBatchNorm in
        training over several ranks (the same on every rank: one model, one mode)."""
        return self.comm.size > 1 and any(
            isinstance(m, SyncBatchNorm) and m.training and m._communicator() is not None
            for m in self.module.modules())

    def _agree_step_runs(self, failed: bool = False) -> None:
        """Before a backward that communicates: raise PeerFailureError on the ranks whose
        step is fine when some rank's loss was not finite (``failed=True`` there)."""
        failures = self.comm.sum([1.0 if failed else 0.0])[0]
        if failures > 0 and not failed:
            self._raise_peer_failure(failures)

    def _raise_peer_failure(self, failures: float) -> None:
        raise PeerFailureError(f"DataParallel: the loss was not finite on {int(failures)} of "
                               f"{self.comm.size} ranks; no rank took this step")

    def _bucket_list(self, params) -> None:
        layout = [(id(p), p.shape, dtype_name(p.data.dtype), get_backend(p.data).device)
                  for p in params]
        if layout != self._layout:
            self._buckets, self._layout = make_buckets(params, self.bucket_bytes), layout

    # ------------------------------------------------------------------ modes and state
    def train(self, mode: bool = True):
        leaving_training = self.training and not mode
        super().train(mode)
        if leaving_training:  # rank 0's running statistics everywhere, in one message
            self.comm.bcast_many_(buf for _, buf in self.module.named_buffers())
        return self

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state, strict: bool = True):
        return self.module.load_state_dict(state, strict)

    def to(self, device=None, dtype=None):
        super().to(device, dtype)
        self._buckets, self._layout = None, None
        return self

    def extra_repr(self) -> str:
        return f"rank {self.comm.rank} of {self.comm.size}"


def _describe(entry) -> str:
    if entry is None:
        return "no such entry"
    name, shape, dtype, requires_grad = entry
    kind = "buffer" if requires_grad is None else "parameter"
    frozen = " (frozen)" if requires_grad is False else ""
    return f"{kind} {name!r} of shape {shape}, {dtype}{frozen}"
