#!/bin/bash
# The runs of this folder, in this order, from the repository root (one at a time, nothing
# else running): bash benchmarks/results/issues-vm-2026-12-03-b/run_all.sh
R=benchmarks/results/issues-vm-2026-12-03-b
set -x
DIRECT_AB=forced python $R/direct_ab.py parts 128,1,28,8 128,8,14,16 128,8,28,8 128,16,14,16 \
    128,16,14,32 128,32,14,32 > $R/direct-parts-forced.txt 2>&1
python $R/direct_ab.py parts 128,1,28,8 128,8,14,16 > $R/direct-parts-rule.txt 2>&1
python -m benchmarks.cnn_cpu --reps 5 --samples 20000 > $R/cnn-cpu-default-threads.txt 2>&1
python $R/im2col.py --reps 5 --samples 20000 > $R/cnn-cpu-default-threads-im2col.txt 2>&1
python -m benchmarks.cnn_cpu --reps 3 --samples 20000 --threads 1 > $R/cnn-cpu-1-thread.txt 2>&1
python $R/im2col.py --reps 3 --samples 20000 --threads 1 > $R/cnn-cpu-1-thread-im2col.txt 2>&1
python -m benchmarks.mlp_cpu --reps 5 > $R/mlp-cpu-default-threads.txt 2>&1
python -m benchmarks.mlp_cpu --reps 5 --threads 1 > $R/mlp-cpu-1-thread.txt 2>&1
OPENBLAS_THREAD_TIMEOUT=4 python -m benchmarks.cnn_cpu --reps 5 --samples 20000 \
    > $R/cnn-cpu-default-threads-openblas-timeout-4.txt 2>&1
python -m benchmarks.cnn_cpu --reps 5 --samples 20000 > $R/cnn-cpu-default-threads-again.txt 2>&1
python -m benchmarks.scaling --out $R/scaling > $R/scaling.txt 2>&1
