"""``python -m benchmarks.cnn_cpu`` with the direct 3x3 convolution switched off (every
Conv2d on the im2col path): the same arguments, e.g.
``python benchmarks/results/issues-vm-2026-12-03-b/im2col.py --reps 5 --samples 20000``."""
import os
import runpy
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import tensornet.backends.numpy_conv as NC  # noqa: E402

NC._DIRECT_IN = 0
sys.argv = ["benchmarks.cnn_cpu"] + sys.argv[1:]
runpy.run_module("benchmarks.cnn_cpu", run_name="__main__")
