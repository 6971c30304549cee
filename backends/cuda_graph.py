"""Whole-step CUDA graphs for the CuPy backend (opt-in).

    step = get_backend("cuda").compile_step(model, loss_fn, optimizer, cuda_graph=True)
    for xb, yb in loader:
        loss, output = step(xb, yb)      # device arrays; read them once per epoch

A training step of a small model is dozens of kernel launches, each costing host time;
replaying the step as one CUDA graph costs one launch. How:

1. The first call with a new batch shape *rehearses*: a normal, real training step on the
   capture stream, but with the kernels the graph will use (the cuBLAS-free GEMM, optimizer
   kernels reading their scalars from device memory), all memory from a private pool. It
   compiles every kernel and creates the optimizer's state before anything is captured.
2. The second call *captures* the step (zero grads, forward, loss, backward,
   ``optimizer.step()``) into a graph, then launches it: that launch is the second step.
3. Later calls copy the batch into the graph's static input buffers, run the optimizer's
   host bookkeeping (step counts, learning rate from schedulers) to refresh one row of
   scalars per parameter update in a small device table, and launch the graph.

Limits (each detected and reported rather than silently wrong where possible):
- Fixed shapes: the first batch's shapes and dtypes are captured; other batches (the
  ragged last one) run eagerly, which is correct but not faster. Drop it with
  ``drop_last=True`` if it matters.
- No host synchronisation inside the step: ``.item()``, ``float(x)``, losses with
  ``check=True``, data-dependent Python branches. Capture fails with GraphCaptureError.
- Random draws: Dropout and DropConnect masks (``backend.bernoulli``) come from a
  counter-based hash whose counter lives in device memory and advances inside the graph,
  so each replay draws new masks (not the same stream as eager mode). Other draws
  (``normal``, ``uniform``, ``permutation``) inside the step are refused.
- Every matmul must go through ``backend.matmul`` (Linear does): CuPy refuses cuBLAS
  inside capture. The graph-safe GEMM is a plain tiled kernel, much slower than cuBLAS on
  large layers: graphs pay off for small, launch-bound models.
- Parameters, gradients and optimizer state must stay the same arrays: replacing them
  (``load_state_dict``, ``.to()``) after capture raises GraphInvalidatedError; build a new
  step then. Buffers must be updated in place (BatchNorm's running stats are).
"""
from __future__ import annotations

import time

import numpy as np

from .base import dtype_name, train_step
from .cuda_kernels import (BERNOULLI_COUNTER, C_TYPES, FUSED_DTYPES, GEMM_SPLIT_K_SUM,
                           GEMM_THREADS, GEMM_TILE_M, GEMM_TILE_N, HYPER_WIDTH, RNG_ADVANCE,
                           gemm_split_k)


class GraphCaptureError(NotImplementedError):
    """The training step does something a CUDA graph cannot capture."""


class GraphInvalidatedError(RuntimeError):
    """The model or optimizer changed in a way the captured graph cannot follow."""


_RECOMPILE = "build a new step with compile_step(..., cuda_graph=True), or use cuda_graph=False"


class HyperTable:
    """Optimizer hyper-parameters of a graph step: one row per fused update, in call order.

    ``phase`` is ``"rehearse"`` or ``"capture"`` (the calls are learnt afresh: a capture
    allocates new gradients) or ``"replay"`` (each call must match the captured one: same
    kind, dtype and arrays).
    Host-only logic; the backend launches the kernels and ``GraphStep`` moves rows to the
    device.
    """

    def __init__(self, width: int = HYPER_WIDTH):
        self.width = width
        self.phase = None
        self.signatures: list = []
        self.rows: list = []
        self.dtype = None
        self.device_table = None  # set by GraphStep before capture
        self._next = 0

    @property
    def count(self) -> int:
        return len(self.signatures)

    def begin(self, phase: str) -> None:
        if phase not in ("rehearse", "capture", "replay"):
            raise ValueError(f"unknown phase {phase!r}")
        if phase in ("rehearse", "capture"):
            self.signatures, self.rows = [], []
        self.phase, self._next = phase, 0

    def record(self, kind: str, dtype: str, pointers: tuple, values: tuple) -> int:
        """Note one update call; returns its row."""
        if len(values) > self.width:
            raise ValueError(f"{kind} has {len(values)} hyper-parameters; the table has "
                             f"{self.width} columns")
        signature = (kind, dtype, tuple(pointers))
        if self.phase in ("rehearse", "capture"):
            if self.phase == "capture" and self.count >= len(self.device_table):
                raise GraphInvalidatedError(f"the step made more optimizer updates while "
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
                f"optimizer update {row} ({kind}) does not match the captured graph: the "
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

    def device_row(self, row: int):
        return self.device_table[row]


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


class GraphStep:
    """``step(x, y) -> (loss, output)``, replaying one captured CUDA graph per call when
    the batch has the captured shape (see the module docstring). Returned arrays are
    fresh copies, valid after later steps.

    Attributes: ``replays`` and ``eager_steps`` count calls by path; ``capture_seconds``
    is the host time the capture took (excluded from per-step figures).
    """

    def __init__(self, backend, model, loss_fn, optimizer):
        cupy = backend.xp
        self.backend, self.model, self.loss_fn, self.optimizer = backend, model, loss_fn, optimizer
        self._cupy = cupy
        with backend._cuda_device:
            self._stream = cupy.cuda.Stream(non_blocking=True)
            self._pool = cupy.cuda.MemoryPool()
        self._table = HyperTable()
        self._key = None
        self._graph = None
        self._rehearsed = False
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
            return train_step(self.model, self.loss_fn, self.optimizer, x, y)
        if not self._rehearsed:
            result = self._on_stream("rehearse", lambda: train_step(
                self.model, self.loss_fn, self.optimizer, x, y))
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

    # ------------------------------------------------------------------ phases
    def _on_stream(self, phase: str, work, capture: bool = False):
        """Run ``work`` in ``phase`` on the private stream and pool, ordered after (and
        before) the caller's stream."""
        cupy, backend, stream = self._cupy, self.backend, self._stream
        current = cupy.cuda.get_current_stream()
        stream.wait_event(current.record())
        self._table.begin(phase)
        backend._graph = self._table
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
            backend._graph = None
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
        model.zero_grad(set_to_none=True)  # the graph must create fresh gradients
        buffers = _buffers(model)
        (loss, output), graph = self._on_stream("capture", lambda: train_step(
            model, self.loss_fn, self.optimizer, self._x, self._y), capture=True)
        if _buffers(model) != buffers:
            changed = [k for k, v in _buffers(model).items() if buffers.get(k) != v]
            raise GraphCaptureError(f"buffers {changed} were replaced during the step instead "
                                    f"of updated in place; a CUDA graph would keep writing the "
                                    f"old arrays. Use cuda_graph=False for this model")
        graph.upload(stream=cupy.cuda.get_current_stream())
        self._loss, self._output, self._graph = loss, output, graph
        self._grads = [(p, p.grad) for p in model.parameters() if p.grad is not None]
        self._params = [(p, _pointer(p.data)) for p in model.parameters()]
        self.capture_seconds = time.perf_counter() - start

    def _prepare_replay(self, x, y) -> None:
        for param, ptr in self._params:
            if _pointer(param.data) != ptr:
                raise GraphInvalidatedError(f"{param!r} was replaced since the step was captured "
                                            f"(load_state_dict or .to()); {_RECOMPILE}")
        if x is not self._x:
            self._x[...] = x
        if y is not self._y:
            self._y[...] = y
        for param, grad in self._grads:  # zero_grad(set_to_none) between steps is fine
            param.grad = grad
        self._table.begin("replay")
        self.backend._graph = self._table
        try:
            self.optimizer.step()  # host bookkeeping only: the graph holds the kernels
        finally:
            self.backend._graph = None
        self._table.end()


def capture_safe_matmul(backend, a, b):
    """``a @ b`` by the tiled RawKernel GEMM (no cuBLAS, so it can be captured in a CUDA
    graph): 2-D, or 3-D with equal batch sizes; any strides (transposed views need no
    copy); float32 or float64, never TF32. Returns a C-contiguous array."""
    xp = backend.xp
    if a.ndim != b.ndim or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[0] != b.shape[0]):
        raise NotImplementedError(f"inside a CUDA-graph step matmul supports 2-D @ 2-D and "
                                  f"batched 3-D @ 3-D, got {tuple(a.shape)} @ {tuple(b.shape)}")
    name = dtype_name(a.dtype)
    if a.dtype != b.dtype or name not in FUSED_DTYPES:
        raise TypeError(f"capture_safe_matmul needs two float32 or two float64 arrays, got "
                        f"{name} @ {dtype_name(b.dtype)}")
    batch = a.shape[0] if a.ndim == 3 else 1
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul shapes {tuple(a.shape)} @ {tuple(b.shape)} do not fit")
    out = xp.empty(a.shape[:-2] + (m, n), dtype=a.dtype)
    if out.size == 0:
        return out
    if k == 0:
        out.fill(0)
        return out
    tiles = -(-n // GEMM_TILE_N) * -(-m // GEMM_TILE_M)
    splits, chunk = gemm_split_k(tiles * batch, k)
    grid = (-(-n // GEMM_TILE_N), -(-m // GEMM_TILE_M), batch * splits)
    if grid[1] > 65535 or grid[2] > 65535:
        raise NotImplementedError(f"capture_safe_matmul: shape {tuple(out.shape)} exceeds "
                                  f"the kernel's grid")
    size = a.itemsize
    strides = [np.int64(s // size) for s in (*a.strides[-2:], *b.strides[-2:])]
    batch_strides = [np.int64(x.strides[0] // size if x.ndim == 3 else 0) for x in (a, b)]
    target = out if splits == 1 else xp.empty((batch * splits, m, n), dtype=a.dtype)
    kernel = backend._kernels.raw("gemm", C_TYPES[name])
    kernel(grid, (GEMM_THREADS,),
           (a, b, target, np.int32(m), np.int32(n), np.int32(k), *strides, *batch_strides,
            np.int32(splits), np.int64(chunk)))
    if splits > 1:
        backend._kernels.elementwise(GEMM_SPLIT_K_SUM)(target, np.int32(splits),
                                                       np.int64(m * n), out)
    return out


def bernoulli_in_graph(backend, shape, p, dtype):
    """``backend.bernoulli`` inside graph steps: the counter-based draw of
    ``cuda_kernels.BERNOULLI_COUNTER``, whose key and draw counter live in device memory
    (``backend._graph_rng``), created outside any capture at the rehearsal's first draw."""
    xp = backend.xp
    if backend._graph_rng is None:
        if backend._graph.phase == "capture":
            raise GraphCaptureError("the first random draw of a graph step happened while "
                                    "capturing; it must happen while rehearsing")
        key = int(backend._rng.integers(0, 2**63))
        # outlives any one graph step, so not from a step's private pool
        with xp.cuda.using_allocator(xp.get_default_memory_pool().malloc):
            backend._graph_rng = xp.asarray(np.array([key, 0], dtype=np.uint64))
    mask = xp.empty(shape, dtype=backend.dtype(dtype))
    backend._kernels.elementwise(BERNOULLI_COUNTER)(backend._graph_rng, np.float64(p), mask)
    backend._kernels.elementwise(RNG_ADVANCE)(np.uint64(1), backend._graph_rng[1:])
    return mask


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
        f"backend.matmul, as Linear does). Use cuda_graph=False for this model")
