"""The convolution's forward product in both orientations (W @ cols and cols.T @ W.T),
at a block's width and the whole batch's, for the shapes of the 64- and 8-channel CNNs."""
import time, numpy as np
rng = np.random.default_rng(0)
def t(fn, reps=20):
    fn(); ts=[]
    for _ in range(reps):
        s=time.perf_counter(); fn(); ts.append(time.perf_counter()-s)
    return 1e3*sorted(ts)[len(ts)//2]
for (co, k, n) in [(128, 576, 784), (128, 576, 25088), (64, 288, 1568), (16, 72, 25088)]:
    w = rng.random((co, k), dtype=np.float32); cols = rng.random((k, n), dtype=np.float32)
    colsT = np.ascontiguousarray(cols.T); wT = np.ascontiguousarray(w.T)
    out = np.empty((co, n), np.float32); outT = np.empty((n, co), np.float32)
    a = t(lambda: np.matmul(w, cols, out=out)); b = t(lambda: np.matmul(colsT, wT, out=outT))
    c = t(lambda: np.matmul(colsT, w.T, out=outT))
    print(f"{co}x{k}x{n}: W@cols {a:.3f} ms  colsT@WT {b:.3f}  colsT@W.T(view) {c:.3f}  GFLOP/s {2*co*k*n/a/1e6:.0f} / {2*co*k*n/b/1e6:.0f}")
