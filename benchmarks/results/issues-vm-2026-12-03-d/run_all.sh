#!/bin/sh
# The runs of this folder's README, from the repository root, one after the other.
set -e
D=benchmarks/results/issues-vm-2026-12-03-d
python -m benchmarks.cnn_cpu --reps 5 --samples 20000 > $D/cnn-cpu-2-threads-default.txt
TENSORNET_BLAS_POOL=0 python -m benchmarks.cnn_cpu --reps 5 --samples 20000 > $D/cnn-cpu-2-threads-blas-pool-0.txt
python -m benchmarks.mlp_cpu --reps 5 > $D/mlp-cpu-2-threads-default.txt
TENSORNET_BLAS_POOL=0 python -m benchmarks.mlp_cpu --reps 5 > $D/mlp-cpu-2-threads-blas-pool-0.txt
python $D/pool_ab.py cnn 8 > $D/pool-ab-cnn.txt
python $D/pool_ab.py mlp 12 > $D/pool-ab-mlp.txt
python $D/pool_ab.py mlp 24 > $D/pool-ab-mlp-24.txt
python $D/gemm_ab.py pool > $D/gemm-ab.txt
TENSORNET_BLAS_POOL=0 python $D/gemm_ab.py own >> $D/gemm-ab.txt
python $D/gemm_ab.py one >> $D/gemm-ab.txt
python $D/gemm_step_ab.py > $D/gemm-step-ab.txt
python $D/mlp_phases.py 2 > $D/mlp-phases.txt
python $D/mlp_phases.py 1 >> $D/mlp-phases.txt
