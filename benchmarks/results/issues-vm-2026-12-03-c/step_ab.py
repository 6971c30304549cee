"""Experiment of this folder's README (not kept); run from the repository root:

    [OPENBLAS_THREAD_TIMEOUT=N] [BLAS1=1] CONFIGS=one,old,spin:16,spingemm:16 GRACE_US=3 ROUNDS=6 python benchmarks/results/issues-vm-2026-12-03-c/step_ab.py [cnn|mlp]
"""
import sys, os, time, numpy as np
HERE = os.path.dirname(os.path.abspath(__file__)); sys.path[:0] = [HERE, os.path.join(HERE, "..", "..", "..")]
import tensornet as tn
import tensornet.backends.jit as J
import tensornet.backends.numpy as NB
from tensornet.backends import threads as TH
from benchmarks.common import build_model, build_optimizer, synthetic_mnist
import spin_pool as pool, split_gemm as gemm
pc = time.perf_counter
real = TH.run_chunks
from threadpoolctl import threadpool_limits
if os.environ.get("BLAS1"): threadpool_limits(1, user_api="blas")
def use(kind, chunk):
    if kind == "one":
        pass
    if kind == "one":
        TH._chosen = 1
    else:
        TH._chosen = int(os.environ.get("THREADS", "2"))
    gemm.install(kind == "spingemm")
    f = pool.run_chunks if kind.startswith("spin") else real
    J.run_chunks = NB.run_chunks = f
    J.CHUNK_MIN = chunk
tn.set_num_threads(int(os.environ.get("THREADS", "2")))
if os.environ.get("BLAS1"): threadpool_limits(1, user_api="blas")
def maker(name, batch=128, nb=30):
    x, y = synthetic_mnist(batch * nb, 0)
    if name == "mlp": x = np.ascontiguousarray(x.reshape(len(x), -1))
    model = build_model(name); opt = build_optimizer(name, model.parameters())
    loss = tn.nn.CrossEntropyLoss()
    def run(n=nb):
        for b in range(n):
            tn.train_step(model, loss, opt, x[b*batch:(b+1)*batch], y[b*batch:(b+1)*batch])
    run(3)
    return lambda: (lambda t: (run(), (pc() - t) / nb * 1e3)[1])(pc())
name = sys.argv[1]
configs = [(c.split(":")[0], 1 << int(c.split(":")[1]) if ":" in c else 1 << 20)
           for c in os.environ.get("CONFIGS", "one,old,spin:16,spingemm:16").split(",")]
step = maker(name)
res = {c: [] for c in configs}
for r in range(int(os.environ.get("ROUNDS", "6"))):
    for c in configs:
        use(*c); step(); res[c].append(step())
for c in configs:
    print(name, c[0], c[1], "median %.2f ms  min %.2f" % (np.median(res[c]), min(res[c])), np.round(res[c], 1))
