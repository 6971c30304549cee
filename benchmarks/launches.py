"""GPU kernel launches per training step, counted on the CPU emulation of CUDA.

    python -m benchmarks.launches [--steps 3]

Runs the benchmark MLP (784-256-120-64-10, SGD momentum, batch 128) and CNN (2x[conv-BN-
ReLU-pool], Adam) through the CuPy backend on ``tests/cuda_emulation``'s fake CuPy (needs
g++), and counts per training step, after a warm-up step:

- ``tensornet``: launches of tensornet's own kernels (exact: the fake records each);
- ``cupy ops``: operations issued through CuPy (an elementwise ufunc, a reduction, a
  matmul, a copy, a cast, a fill), each counted as one launch, which is a lower bound: a
  cuBLAS call or a two-pass reduction may launch more.

The same script runs against any tensornet version (``backend.compile_step`` before the
redesign, ``tn.make_train_step`` after), so before/after figures come from one harness.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the emulation lives with the tests

# CuPy namespace functions that issue device work (creation of uninitialised memory and
# views do not).
_ISSUING = {"sum", "mean", "max", "min", "argmax", "matmul", "dot", "exp", "log", "sqrt",
            "maximum", "minimum", "where", "astype", "ascontiguousarray", "zeros", "ones",
            "full", "zeros_like", "ones_like", "full_like", "stack", "concatenate", "take",
            "abs", "tanh", "log1p", "expm1", "isfinite", "isnan", "all", "any", "copyto",
            "asarray", "clip", "sign", "argsort"}


class _Counter:
    """Counts the outermost CuPy operation of each call chain (the fake implements some
    operations with others: cupy.matmul through the matmul ufunc, for one)."""

    def __init__(self):
        self.cupy_ops = collections.Counter()
        self.depth = 0

    def _count(self, label, call):
        if self.depth:
            return call()
        self.depth += 1
        try:
            result = call()
        finally:
            self.depth -= 1
        self.cupy_ops[label] += 1
        return result

    def install(self, cupy, monkeypatch):
        ndarray = cupy.ndarray
        counter = self

        original_ufunc = ndarray.__array_ufunc__

        def ufunc(self, ufunc, method, *inputs, **kwargs):
            return counter._count(f"ufunc.{ufunc.__name__}", lambda: original_ufunc(
                self, ufunc, method, *inputs, **kwargs))
        monkeypatch.setattr(ndarray, "__array_ufunc__", ufunc)

        original_setitem = ndarray.__setitem__

        def setitem(self, key, value):
            return counter._count("copy", lambda: original_setitem(self, key, value))
        monkeypatch.setattr(ndarray, "__setitem__", setitem)

        for name in ("astype", "copy", "fill", "sum", "mean", "max", "argmax"):
            if hasattr(ndarray, name):
                monkeypatch.setattr(ndarray, name, self._counting(getattr(ndarray, name),
                                                                  f"method.{name}"))
        for name in _ISSUING:
            try:
                function = getattr(cupy, name)
            except (AttributeError, Exception):
                continue
            monkeypatch.setattr(cupy, name, self._counting(function, name))

    def _counting(self, function, label):
        counter = self

        def counted(*args, **kwargs):
            if label == "ascontiguousarray" and args and getattr(
                    getattr(args[0], "flags", None), "c_contiguous", False):
                return function(*args, **kwargs)  # already contiguous: no copy, no launch
            return counter._count(label, lambda: function(*args, **kwargs))
        return counted


def _models(tn):
    nn = tn.nn
    mlp = nn.Sequential(nn.Linear(784, 256, device="cuda"), nn.ReLU(),
                        nn.Linear(256, 120, device="cuda"), nn.ReLU(),
                        nn.Linear(120, 64, device="cuda"), nn.ReLU(),
                        nn.Linear(64, 10, device="cuda"))
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, device="cuda"), nn.BatchNorm2d(8, device="cuda"),
        nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, device="cuda"), nn.BatchNorm2d(16, device="cuda"),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(784, 128, device="cuda"), nn.ReLU(),
        nn.Linear(128, 10, device="cuda"))
    return {"mlp": (mlp, tn.optim.SGD(mlp.parameters(), lr=0.01, momentum=0.9), (128, 784)),
            "cnn": (cnn, tn.optim.Adam(cnn.parameters(), lr=1e-3), (128, 1, 28, 28))}


def _step(tn, backend, model, optimizer):
    loss_fn = tn.nn.CrossEntropyLoss()
    if hasattr(tn, "make_train_step"):
        return tn.make_train_step(model, loss_fn, optimizer)
    return backend.compile_step(model, loss_fn, optimizer)


def count(steps: int = 3) -> dict:
    import pytest

    from cuda_emulation import fakecupy
    if fakecupy.compiler() is None:
        raise SystemExit("benchmarks.launches needs g++ (the CUDA emulation compiles kernels)")
    results = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        cupy = fakecupy.install(monkeypatch)
        import tensornet as tn
        from tensornet import backends
        monkeypatch.setattr(backends, "_CACHE", {})
        backend = tn.get_backend("cuda")
        tn.manual_seed(0)
        counter = _Counter()
        for name, (model, optimizer, shape) in _models(tn).items():
            rng = np.random.default_rng(0)
            x = backend.asarray(rng.standard_normal(shape).astype(np.float32))
            y = backend.asarray(rng.integers(0, 10, shape[0]))
            step = _step(tn, backend, model, optimizer)
            step(x, y)  # warm-up: state creation, kernel builds
            if not counter.cupy_ops:
                counter.install(cupy, monkeypatch)
            state = cupy.__fake_state__
            before_kernels = len(state.launches)
            counter.cupy_ops.clear()
            for _ in range(steps):
                step(x, y)
            kernels = [entry[1] for entry in state.launches[before_kernels:]]
            results[name] = {
                "tensornet": len(kernels) / steps,
                "cupy_ops": sum(counter.cupy_ops.values()) / steps,
                "tensornet_by_kernel": {k: v / steps for k, v in
                                        sorted(collections.Counter(kernels).items())},
                "cupy_by_op": {k: v / steps for k, v in sorted(counter.cupy_ops.items())},
            }
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.launches",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--detail", action="store_true", help="list launches by kernel/op")
    args = parser.parse_args(argv)
    results = count(args.steps)
    import tensornet as tn
    print(f"GPU launches per training step (CPU emulation of CUDA), tensornet at "
          f"{Path(tn.__file__).resolve().parents[1]}")
    print(f"{'model':6s} {'tensornet kernels':>18s} {'CuPy operations':>16s} {'total':>7s}")
    for name, r in results.items():
        print(f"{name:6s} {r['tensornet']:18.1f} {r['cupy_ops']:16.1f} "
              f"{r['tensornet'] + r['cupy_ops']:7.1f}")
        if args.detail:
            for key, value in {**r["tensornet_by_kernel"], **r["cupy_by_op"]}.items():
                print(f"         {key:40s} {value:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
