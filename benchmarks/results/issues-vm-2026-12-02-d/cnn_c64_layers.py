"""Per-layer milliseconds of the benchmark CNN at C channels (benchmarks.cnn_cpu's split),
tensornet and (with --torch) PyTorch, on synthetic data. From the repository root:

    PYTHONPATH=. python benchmarks/results/issues-vm-2026-12-02-d/cnn_c64_layers.py 64 2 --torch

arguments: channels, threads, optionally log2 of numpy_conv's block size.
"""
import sys, numpy as np, tensornet as tn
from benchmarks.common import build_model, build_optimizer, torch_twin, synthetic_mnist, epoch_order
from benchmarks.cnn_cpu import layer_split, torch_layer_split
C = int(sys.argv[1]); threads = int(sys.argv[2])
import tensornet.backends.numpy_conv as nc
if len(sys.argv) > 3 and sys.argv[3].isdigit(): nc._BLOCK = 1 << int(sys.argv[3])
from threadpoolctl import threadpool_limits
threadpool_limits(threads); tn.set_num_threads(threads)
x, y = synthetic_mnist(4096)[:2]
x = x.reshape(-1, 1, 28, 28).astype(np.float32)
order = epoch_order(len(x), 0)
m = build_model("cnn", channels=C); opt = build_optimizer("cnn", m.parameters())
layer_split(m, opt, tn.nn.CrossEntropyLoss(), x, y, order, 5)
tn_rows = layer_split(m, opt, tn.nn.CrossEntropyLoss(), x, y, order, 20)
if "--torch" in sys.argv:
    import torch; torch.set_num_threads(threads)
    tm, topt = torch_twin("cnn", build_model("cnn", channels=C), channels=C)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    torch_layer_split(torch, tm, topt, xt, yt, order, 5)
    t_rows = torch_layer_split(torch, tm, topt, xt, yt, order, 20)
else:
    t_rows = {}
for k, (f, b) in tn_rows.items():
    tf, tb = t_rows.get(k, (0, 0))
    print(f"{k:16s} tn {f:7.2f} {b:7.2f}   torch {tf:7.2f} {tb:7.2f}")
print("sum tn", sum(f+b for f,b in tn_rows.values()), "torch", sum(f+b for f,b in t_rows.values()))
