"""CUDA-graph training steps for the CuPy backend (opt-in): ``backend.graphed(step, ...)``.

    step = tensornet.train.make_train_step(model, loss_fn, optimizer, cuda_graph=True)
    for xb, yb in loader:
        loss, output = step(xb, yb)      # device arrays; read them once per epoch

A training step of a small model is dozens of kernel launches, each costing host time;
replaying the step as one CUDA graph costs one launch. ``GraphedStep`` wraps any step
function ``step(x, y) -> (loss, output)`` (tensornet's is ``tensornet.train.train_step``);
all of its state (stream, memory pool, captured graph, the optimizer scalars' device table,
the dropout generator) lives on the GraphedStep object. How:

1. The first call with a new batch shape *rehearses*: a normal, real training step on the
   capture stream, but with the kernels the graph will use (the cuBLAS-free GEMM, optimizer
   kernels reading their scalars from device memory), all memory from a private pool. It
   compiles every kernel and creates the optimizer's state before anything is captured.
2. The second call *captures* the step into a graph, then launches it: that launch is the
   second step.
3. Later calls copy the batch into the graph's static input buffers, run the optimizer's
   host bookkeeping (step counts, learning rate from schedulers) to refresh one row of
   scalars per fused update in a small device table, and launch the graph.

Refused when the GraphedStep is built (``GraphCaptureError`` naming the part): an optimizer
rule without a kernel (``FusedUpdate.body`` None) or float16 parameters, a layer whose
``graph_unsafe_reason`` is set (BatchNorm with ``momentum=None`` reads a counter on the
host), a step function marked ``graph_unsafe_reason`` (a gradient hook that syncs).

Limits (each detected and reported rather than silently wrong where possible):
- Fixed shapes: the first batch's shapes and dtypes are captured; other batches (the
  ragged last one) run eagerly, which is correct but not faster.
- No host synchronisation inside the step: ``.item()``, ``float(x)``, losses with
  ``check=True``, data-dependent Python branches. Capture fails with GraphCaptureError.
- Host-side settings of the layers (``Dropout.p``, ``train()``/``eval()``) are frozen into
  the graph: a change after capture raises GraphInvalidatedError at the next step.
- Random draws: Dropout and DropConnect masks (``backend.bernoulli``) come from the
  backend's counter-based generator with its counter in device memory, advanced inside the
  graph, so each replay draws new masks, the same ones eager steps would draw. Other draws
  inside the captured step are refused.
- Every matmul must go through ``tensornet.nn.functional.matmul`` (Linear and Conv2d do):
  CuPy refuses cuBLAS inside capture. The graph-safe GEMM is a plain tiled kernel.
- Parameters, gradients and optimizer state must stay the same arrays: replacing them
  (``load_state_dict``, ``.to()``) after capture raises GraphInvalidatedError; build a new
  step then. Buffers must be updated in place (BatchNorm's running stats are).
"""
from __future__ import annotations

import time

import numpy as np

from .base import dtype_name
from .cuda_kernels import BERNOULLI_COUNTER, RNG_ADVANCE, update_spec


class GraphCaptureError(NotImplementedError):
    """The training step does something a CUDA graph cannot capture."""


class GraphInvalidatedError(RuntimeError):
    """The model or optimizer changed in a way the captured graph cannot follow."""


_RECOMPILE = "build a new step with cuda_graph=True, or use cuda_graph=False"


class HyperTable:
    """Optimizer scalars of a graph step: one row per fused update, in call order.

    ``phase`` is ``"rehearse"`` or ``"capture"`` (the calls are learnt afresh: a capture
    allocates new gradients) or ``"replay"`` (each call must match the captured one: same
    rule, dtype and arrays). Host-only logic; ``GraphedStep`` moves the rows to the device.
    """

    def __init__(self):
        self.phase = None
        self.signatures: list = []
        self.rows: list = []
        self.dtype = None
        self.device_table = None  # set by GraphedStep before capture
        self._next = 0

    @property
    def count(self) -> int:
        return len(self.signatures)

    @property
    def width(self) -> int:
        return max((len(row) for row in self.rows), default=1)

    def begin(self, phase: str) -> None:
        if phase not in ("rehearse", "capture", "replay"):
            raise ValueError(f"unknown phase {phase!r}")
        if phase in ("rehearse", "capture"):
            self.signatures, self.rows = [], []
        self.phase, self._next = phase, 0

    def record(self, name: str, dtype: str, pointers: tuple, values: tuple) -> int:
        """Note one update call; returns its row."""
        signature = (name, dtype, tuple(pointers))
        if self.phase in ("rehearse", "capture"):
            if self.phase == "capture" and (self.count >= len(self.device_table)
                                            or len(values) > self.device_table.shape[1]):
                raise GraphInvalidatedError(f"the step made other optimizer updates while "
                                            f"capturing than while rehearsing; {_RECOMPILE}")
            if self.dtype not in (None, dtype):
                raise GraphCaptureError(f"CUDA-graph steps need all optimized parameters in "
                                        f"one dtype; got {self.dtype} and {dtype}")
            self.dtype = dtype
            self.signatures.append(signature)
            self.rows.append(tuple(values))
            return len(self.signatures) - 1
        row = self._next
        if row >= self.count or self.signatures[row] != signature:
            raise GraphInvalidatedError(
                f"optimizer update {row} ({name}) does not match the captured graph: the "
                f"parameters, gradients or optimizer state were replaced, or the set of "
                f"parameters being updated changed; {_RECOMPILE}")
        self.rows[row] = tuple(values)
        self._next += 1
        return row

    def end(self) -> None:
        if self.phase == "replay" and self._next != self.count:
            raise GraphInvalidatedError(
                f"the optimizer made {self._next} updates but the graph holds {self.count}; "
                f"a parameter lost its gradient or was frozen/unfrozen; {_RECOMPILE}")
        self.phase = None

    def fill(self, out: np.ndarray) -> None:
        """Write the rows into ``out`` (count x width); unused columns are zero."""
        out[...] = 0
        for i, row in enumerate(self.rows):
            out[i, :len(row)] = row


class _PinnedRing:
    """A few page-locked host copies of the table, so that uploading one step's scalars
    never waits for the GPU unless it is ``depth`` steps behind."""

    def __init__(self, cupy, shape, dtype, depth: int = 4):
        count = int(np.prod(shape))
        self._buffers = []
        for _ in range(depth):
            memory = cupy.cuda.alloc_pinned_memory(max(count, 1) * np.dtype(dtype).itemsize)
            host = np.frombuffer(memory, dtype, count).reshape(shape)
            self._buffers.append((memory, host))
        self._events = [None] * depth
        self._i = 0

    def upload(self, table: HyperTable, device_array, stream) -> None:
        event = self._events[self._i]
        if event is not None:
            event.synchronize()
        host = self._buffers[self._i][1]
        table.fill(host)
        device_array.set(host, stream=stream)
        self._events[self._i] = stream.record()
        self._i = (self._i + 1) % len(self._buffers)


def _key(x, y, training: bool) -> tuple:
    return (tuple(x.shape), str(x.dtype), tuple(y.shape), str(y.dtype), bool(training))


def _buffers(model) -> dict:
    return {name: id(buf) for name, buf in model.named_buffers()}


def _host_settings(model) -> list:
    """The plain host values of every module (``p`` of a Dropout, ``training``...): they are
    frozen into a captured graph, so a change after capture must be noticed."""
    return [(name, {k: v for k, v in vars(m).items()
                    if isinstance(v, (bool, int, float, str)) and not k.startswith("_")})
            for name, m in model.named_modules()]


def check_capture_safe(step, model, optimizer) -> None:
    """Raise GraphCaptureError naming the first part of the step a graph cannot capture."""
    parts = [("the step function", step), (f"the optimizer {type(optimizer).__name__}",
                                             optimizer)]
    parts += [(f"layer {name or type(m).__name__} ({type(m).__name__})", m)
              for name, m in model.named_modules()]
    for label, part in parts:
        reason = getattr(part, "graph_unsafe_reason", None)
        if callable(reason):
            reason = reason()
        if reason:
            raise GraphCaptureError(f"cuda_graph=True cannot capture {label}: {reason}. Train "
                                    f"with cuda_graph=False")


class GraphedStep:
    """``step(x, y) -> (loss, output)``, replaying one captured CUDA graph per call when
    the batch has the captured shape (see the module docstring). Returned arrays are
    fresh copies, valid after later steps.

    Attributes: ``replays`` and ``eager_steps`` count calls by path; ``capture_seconds``
    is the host time the capture took (excluded from per-step figures); ``phase`` is the
    phase running now (None between calls).
    """

    def __init__(self, backend, step, model, optimizer):
        check_capture_safe(step, model, optimizer)
        cupy = backend.xp
        self.backend, self.step, self.model, self.optimizer = backend, step, model, optimizer
        self._cupy = cupy
        with backend._cuda_device:
            self._stream = cupy.cuda.Stream(non_blocking=True)
            self._pool = cupy.cuda.MemoryPool()
        self._table = HyperTable()
        self._rng = None  # device (key, counter) of the generator, for the captured draws
        self._draws = 0  # draws per captured step
        self._synced = None  # the host generator's (key, counter) the device copy matches
        self._key = None
        self._graph = None
        self._rehearsed = False
        self.phase = None
        self.replays = self.eager_steps = 0
        self.capture_seconds = 0.0

    def pool_bytes(self) -> int:
        return self._pool.total_bytes()

    def __call__(self, x, y):
        key = _key(x, y, self.model.training)
        if self._key is None:
            self._key = key
        if key != self._key or not (self.backend.owns(x) and self.backend.owns(y)):
            self.eager_steps += 1
            return self.step(x, y)
        if not self._rehearsed:
            result = self._on_stream("rehearse", lambda: self.step(x, y))
            self._rehearsed = True
            self.eager_steps += 1
            return result
        if self._graph is None:
            self._capture(x, y)
        else:
            self._prepare_replay(x, y)
        current = self._cupy.cuda.get_current_stream()
        self._ring.upload(self._table, self._table.device_table, current)
        self._graph.launch(stream=current)
        self.replays += 1
        return self._loss.copy(), self._output.copy()

    # ------------------------------------------------------------------ what kernels ask
    def fused_update(self, update, param, grad, states, values) -> None:
        """Record the call in the HyperTable; launch the kernel that reads its scalars
        from device memory unless replaying (the graph then holds the launch)."""
        table = self._table
        arrays = (param, grad) + tuple(states)
        row = table.record(update.name, dtype_name(param.dtype),
                           tuple(a.data.ptr for a in arrays), values)
        if table.phase == "replay":
            return
        if table.phase == "rehearse":
            device_row = self._cupy.asarray(np.asarray(values, dtype=param.dtype))
        else:
            device_row = table.device_table[row]
        self.backend._kernels.elementwise(update_spec(update, device_scalars=True))(
            grad, device_row, param, *states)

    def refuse_generic_update(self, update, param) -> None:
        # The generic update would run eagerly while the graph replays: a second update.
        raise GraphCaptureError(
            f"CUDA-graph steps run optimizer updates as fused float32/float64 kernels; "
            f"{update.name!r} on {dtype_name(param.dtype)} parameters has none. Train with "
            f"cuda_graph=False")

    def bernoulli(self, shape, p, dtype):
        """``backend.bernoulli`` while capturing: the backend generator's hash
        (``cuda_kernels.BERNOULLI_COUNTER``) reading key and counter from device memory, and
        a captured kernel advancing that counter, so every replay draws the next masks: the
        same masks as eager steps. The host counter moves on as if the draw were eager."""
        backend = self.backend
        mask = self._cupy.empty(shape, dtype=dtype)
        kernels = backend._kernels
        kernels.elementwise(BERNOULLI_COUNTER)(self._rng, np.float64(p), mask)
        kernels.elementwise(RNG_ADVANCE)(np.uint64(1), self._rng[1:])
        backend._counter += 1
        self._draws += 1
        return mask

    def _upload_generator(self) -> None:
        """Bring the device copy of the generator up to the host's (after eager draws)."""
        state = (self.backend._key, self.backend._counter)
        if state != self._synced:
            self._rng.set(np.array(state, dtype=np.uint64))
            self._synced = state

    # ------------------------------------------------------------------ phases
    def _on_stream(self, phase: str, work, capture: bool = False):
        """Run ``work`` in ``phase`` on the private stream and pool, ordered after (and
        before) the caller's stream."""
        cupy, backend, stream = self._cupy, self.backend, self._stream
        current = cupy.cuda.get_current_stream()
        stream.wait_event(current.record())
        self._table.begin(phase)
        self.phase, backend._capture = phase, self
        graph = None
        try:
            with backend._cuda_device, cupy.cuda.using_allocator(self._pool.malloc), stream:
                if not capture:
                    result = work()
                else:
                    stream.begin_capture()
                    try:
                        result = work()
                    except BaseException as exc:
                        _abandon_capture(stream)
                        raise _capture_error(exc) from exc
                    graph = stream.end_capture()
            self._table.end()
        finally:
            self.phase, backend._capture = None, None
            current.wait_event(stream.record())
        return (result, graph) if capture else result

    def _capture(self, x, y) -> None:
        cupy, model = self._cupy, self.model
        start = time.perf_counter()
        with self.backend._cuda_device:
            self._x, self._y = cupy.empty_like(x), cupy.empty_like(y)
            self._x[...] = x
            self._y[...] = y
            dtype = self._table.dtype or "float32"
            shape = (max(self._table.count, 1), self._table.width)
            self._table.device_table = cupy.zeros(shape, dtype=dtype)
            self._ring = _PinnedRing(cupy, shape, dtype)
            self._rng = cupy.asarray(np.array([self.backend._key, self.backend._counter],
                                              dtype=np.uint64))
        self._draws = 0
        buffers, self._settings = _buffers(model), _host_settings(model)
        (loss, output), graph = self._on_stream("capture", lambda: self.step(self._x, self._y),
                                                capture=True)
        if _buffers(model) != buffers:
            changed = [k for k, v in _buffers(model).items() if buffers.get(k) != v]
            raise GraphCaptureError(f"buffers {changed} were replaced during the step instead "
                                    f"of updated in place; a CUDA graph would keep writing the "
                                    f"old arrays. Use cuda_graph=False for this model")
        graph.upload(stream=cupy.cuda.get_current_stream())
        self._synced = (self.backend._key, self.backend._counter)  # after its first launch
        self._loss, self._output, self._graph = loss, output, graph
        self._grads = [(p, p.grad) for p in model.parameters() if p.grad is not None]
        self._params = [(p, _pointer(p.data)) for p in model.parameters()]
        self.capture_seconds = time.perf_counter() - start

    def _prepare_replay(self, x, y) -> None:
        for param, ptr in self._params:
            if _pointer(param.data) != ptr:
                raise GraphInvalidatedError(f"{param!r} was replaced since the step was captured "
                                            f"(load_state_dict or .to()); {_RECOMPILE}")
        if _host_settings(self.model) != self._settings:
            raise GraphInvalidatedError(f"a layer setting (such as Dropout.p) changed since the "
                                        f"step was captured; {_RECOMPILE}")
        self._upload_generator()
        if x is not self._x:
            self._x[...] = x
        if y is not self._y:
            self._y[...] = y
        for param, grad in self._grads:  # zero_grad(set_to_none) between steps is fine
            param.grad = grad
        self._table.begin("replay")
        self.phase, self.backend._capture = "replay", self
        try:
            self.optimizer.step()  # host bookkeeping only: the graph holds the kernels
        finally:
            self.phase, self.backend._capture = None, None
        self._table.end()
        self.backend._counter += self._draws  # what the launch will draw
        self._synced = (self.backend._key, self.backend._counter)


def _pointer(array):
    """Device address of a CuPy array; None for anything else (a model moved to the CPU)."""
    return getattr(getattr(array, "data", None), "ptr", None)


def _abandon_capture(stream) -> None:
    try:
        stream.end_capture()
    except Exception:  # an invalidated capture cannot end cleanly; the stream is usable
        pass


def _capture_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (GraphCaptureError, GraphInvalidatedError)):
        return exc
    return GraphCaptureError(
        f"CUDA-graph capture of the training step failed: {type(exc).__name__}: {exc}. "
        f"Inside a graph the step may not sync with the host (.item(), float(), a loss with "
        f"check=True), draw random numbers other than bernoulli(), or call cuBLAS directly (use "
        f"tensornet.nn.functional.matmul, as Linear does). Use cuda_graph=False for this model")
