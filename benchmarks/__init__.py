"""Benchmarks (not tests): how fast tensornet trains, and against what.

    python -m benchmarks --models mlp,cnn --modes looped,vectorized,gpu,gpu-graph,torch-cpu,torch-gpu --epochs 2 --reps 3
    python -m benchmarks.mlp_cpu          # MLP: tensornet vs its GEMMs, PyTorch, NumPy, tn.fit
    python -m benchmarks.cnn_cpu          # tensornet vs PyTorch on the CPU (CNN)
    python -m benchmarks.scaling          # tensornet vs PyTorch over width, batch, channels, threads
    python benchmarks/gpu.py              # GPU: CuPy eager / CUDA graph / PyTorch
    pytest benchmarks --benchmark-only    # micro-benchmarks of layers, loss, optimizers

``common.py`` holds what they share: thread pinning, machine info, data, the benchmark
models and their PyTorch twins, batch order, clocks and memory probes. Results go to
``benchmarks/results/``.
"""
