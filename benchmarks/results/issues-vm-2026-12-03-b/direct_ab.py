"""The direct 3x3 convolution (backends/jit/direct.py) against the im2col path, in one
process, alternating call by call: each convolution's forward, weight gradient and input
gradient alone, with one thread and two. From the repository root:

    DIRECT_AB=forced python benchmarks/results/issues-vm-2026-12-03-b/direct_ab.py parts \
        N,C_in,H,C_out ...

(``forced``: the direct kernels for every part, beyond the rule's channel limits too;
without it, the rule of ``backends/numpy_conv.py`` decides.) Whole epochs:
``python -m benchmarks.cnn_cpu`` and, with this path off, ``im2col.py`` beside this file.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import tensornet as tn  # noqa: E402
import tensornet.backends.numpy_conv as NC  # noqa: E402
from tensornet.backends import get_backend  # noqa: E402

pc = time.perf_counter
RULE = {name: getattr(NC, name) for name in ("_DIRECT_IN", "_DIRECT_OUT", "_DIRECT_DX_MIN",
                                              "_FEW_ROWS")}
FORCED = dict(_DIRECT_IN=64, _DIRECT_OUT=64, _DIRECT_DX_MIN=1, _FEW_ROWS=0)
MODE = os.environ.get("DIRECT_AB", "rule")   # rule: numpy_conv's choice; forced: always


def use(direct):
    """direct: the direct kernels (where numpy_conv's rule takes them, or for every part
    with DIRECT_AB=forced); else the im2col path everywhere."""
    settings = dict(RULE)
    if direct and MODE == "forced":
        settings.update(FORCED)
    elif not direct:
        settings["_DIRECT_IN"] = 0
    for name, value in settings.items():
        setattr(NC, name, value)


what = sys.argv[1]
if what == "parts":
    bk = get_backend("cpu")
    pad = ((1, 1), (1, 1))
    for spec in sys.argv[2:]:
        n, c, h, co = map(int, spec.split(","))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((co, c, 3, 3), dtype=np.float32)
        g = np.ascontiguousarray(rng.standard_normal((co, n, h, h), dtype=np.float32))
        g = g.transpose(1, 0, 2, 3)   # channel-major, as BatchNorm's backward gives it
        cache = ("input", x, x.shape)
        parts = {
            "forward": lambda: NC.conv2d(bk, x, w, None, (1, 1), pad, (1, 1), 1),
            "weight grad": lambda: NC.conv2d_backward(bk, g, cache, w, (1, 1), pad, (1, 1), 1,
                                                      input_grad=False),
            "input grad": lambda: NC.conv2d_backward(bk, g, cache, w, (1, 1), pad, (1, 1), 1,
                                                     weight_grad=False)}
        for threads in (1, 2):
            tn.set_num_threads(threads)
            line = []
            for name, f in parts.items():
                times = {True: [], False: []}
                for rep in range(42):
                    for direct in (True, False):
                        use(direct)
                        t = pc()
                        f()
                        if rep >= 2:
                            times[direct].append(pc() - t)
                d, i = np.median(times[True]) * 1e3, np.median(times[False]) * 1e3
                line.append(f"{name} {d:.3f} / {i:.3f} ({d / i:.2f})")
            print(f"{spec} threads {threads}, ms direct / im2col: " + ", ".join(line),
                  flush=True)
