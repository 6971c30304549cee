"""The in-process experiments of this folder's README: the thread pool, the work-split
threshold, Conv2d's block sizes and the few-rows kernel, by patching the modules tensornet
runs (``tensornet.backends.*``; a plain ``import backends`` loads a second copy, and
patching that one changes nothing). From the repository root:

    python benchmarks/results/issues-vm-2026-12-03/in_process_experiments.py pool
    python benchmarks/results/issues-vm-2026-12-03/in_process_experiments.py update
    python benchmarks/results/issues-vm-2026-12-03/in_process_experiments.py block
    python benchmarks/results/issues-vm-2026-12-03/in_process_experiments.py cnnblock 2|1

(``fwdblock`` needed a ``_FORWARD_BLOCK`` in ``backends/numpy_conv.py`` that was tried and
not kept.)
"""
import sys, os, time, itertools, threading, _thread, numpy as np
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import tensornet as tn
import tensornet.backends.jit as J
import tensornet.backends.numpy_conv as NC
import tensornet.backends.numpy as NB
from tensornet.backends import threads as TH
from benchmarks.common import build_model, build_optimizer, synthetic_mnist
pc = time.perf_counter

class LockPool:
    def __init__(self, workers):
        self.workers = workers
        self.go = [_thread.allocate_lock() for _ in range(workers)]
        self.done = [_thread.allocate_lock() for _ in range(workers)]
        self.job = None
        for k in range(workers):
            self.go[k].acquire(); self.done[k].acquire()
            threading.Thread(target=self.serve, args=(k,), daemon=True).start()
    def serve(self, k):
        TH._region.inside = True
        while True:
            self.go[k].acquire()
            self.work(); self.done[k].release()
    def work(self):
        f, chunks, nxt = self.job
        while True:
            i = nxt()
            if i >= len(chunks): return
            f(chunks[i])
    def run(self, f, chunks):
        self.job = (f, chunks, itertools.count().__next__)
        helpers = range(min(self.workers, len(chunks) - 1))
        for k in helpers: self.go[k].release()
        TH._region.inside = True
        try: self.work()
        finally:
            TH._region.inside = False
            for k in helpers: self.done[k].acquire()
_lp = {}
def lock_run_chunks(function, chunks, threads=None):
    workers = (TH.num_threads() if threads is None else threads) - 1
    if workers < 1 or len(chunks) == 1:
        for c in chunks: function(c)
        return
    pool = _lp.get(workers) or _lp.setdefault(workers, LockPool(workers))
    pool.run(function, chunks)
real_run_chunks = TH.run_chunks
def use_pool(kind):
    f = lock_run_chunks if kind == "lock" else real_run_chunks
    J.run_chunks = f; NB.run_chunks = f

tn.set_num_threads(2)
def steps(model_name, sizes=None, batch=128, nb=40, reps=5):
    x, y = synthetic_mnist(batch * nb, 0)
    if model_name == "mlp": x = np.ascontiguousarray(x.reshape(len(x), -1))
    kw = {"sizes": sizes} if sizes else {}
    model = build_model(model_name, **kw); opt = build_optimizer(model_name, model.parameters())
    loss = tn.nn.CrossEntropyLoss()
    def run(n):
        for b in range(n):
            tn.train_step(model, loss, opt, x[b*batch:(b+1)*batch], y[b*batch:(b+1)*batch])
    run(5)
    ts = []
    for _ in range(reps):
        t = pc(); run(nb); ts.append((pc() - t) / nb * 1e3)
    return np.median(ts)

what = sys.argv[1]
if what == "pool":
    for rep in range(2):
        for kind, cm in (("executor", 1 << 20), ("executor", 1 << 17), ("lock", 1 << 17), ("lock", 1 << 20)):
            use_pool(kind); J.CHUNK_MIN = cm
            cnn = steps("cnn"); mlp = steps("mlp", nb=200)
            wide = steps("mlp", sizes=(784, 4096, 2048, 1024, 10), nb=10, reps=3)
            print(f"rep {rep} {kind:8s} CHUNK_MIN={cm:>8d}: CNN {cnn:.2f} ms, MLP {mlp:.3f} ms, W=4096 {wide:.1f} ms", flush=True)
elif what == "block":
    from tensornet import nn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 8, 14, 14), dtype=np.float32)
    conv = nn.Conv2d(8, 16, 3, padding=1); y = conv(x); g = rng.standard_normal(y.shape, dtype=np.float32)
    def bench(f, n=100):
        for _ in range(10): f()
        ts = []
        for _ in range(n):
            t = pc(); f(); ts.append(pc() - t)
        return np.median(ts) * 1e3
    for b in (15, 17, 19, 21, 23):
        NC._BLOCK = 1 << b
        f = bench(lambda: conv(x)); fb = bench(lambda: (conv(x), conv.backward(g)))
        print(f"block 2^{b}: fwd {f:.3f} bwd {fb - f:.3f}", flush=True)
    NC._BLOCK = 1 << 19
    for fr in (36, 72):
        NC._FEW_ROWS = fr
        f = bench(lambda: conv(x)); fb = bench(lambda: (conv(x), conv.backward(g)))
        print(f"few rows <= {fr}: bwd {fb - f:.3f}", flush=True)
if what == "cnnblock":
    T = int(sys.argv[2]); tn.set_num_threads(T)
    res = {}
    for rep in range(3):
        for b, fr in ((19, 36), (21, 36), (23, 36), (19, 72), (23, 72)):
            NC._BLOCK = 1 << b; NC._FEW_ROWS = fr
            res.setdefault((b, fr), []).append(steps("cnn", nb=40, reps=3))
    for k, v in res.items():
        print(f"threads {T} block 2^{k[0]} few rows <= {k[1]}: CNN step {np.median(v):.2f} ms ({', '.join(f'{t:.2f}' for t in v)})")
if what == "fwdblock":
    T = int(sys.argv[2]); tn.set_num_threads(T)
    res = {}
    for rep in range(3):
        for fb in [int(a) for a in sys.argv[3].split(",")]:
            NC._FORWARD_BLOCK = 1 << fb
            res.setdefault(fb, []).append(steps("cnn", nb=40, reps=3))
    for k, v in res.items():
        print(f"threads {T} forward block 2^{k}: CNN step {np.median(v):.2f} ms ({', '.join(f'{t:.2f}' for t in v)})")
if what == "update":
    for rep in range(2):
        for kind, cm in (("executor", 1 << 20), ("executor", 1 << 16), ("lock", 1 << 16)):
            use_pool(kind); J.CHUNK_MIN = cm
            mlp = steps("mlp", nb=200)
            model = build_model("mlp"); opt = build_optimizer("mlp", model.parameters())
            x, y = synthetic_mnist(128, 0); x = np.ascontiguousarray(x.reshape(128, -1))
            tn.train_step(model, tn.nn.CrossEntropyLoss(), opt, x, y)
            for _ in range(50): opt.step()
            t = pc()
            for _ in range(2000): opt.step()
            hot = (pc() - t) / 2000 * 1e6
            print(f"rep {rep} {kind:8s} CHUNK_MIN={cm:>8d}: MLP step {mlp:.3f} ms; update alone (data in cache) {hot:.0f} us", flush=True)
