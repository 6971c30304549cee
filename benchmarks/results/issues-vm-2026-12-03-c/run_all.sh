#!/bin/sh
# The runs of this folder's README, in order, from the repository root:
#   sh benchmarks/results/issues-vm-2026-12-03-c/run_all.sh
set -e
D=benchmarks/results/issues-vm-2026-12-03-c
export GRACE_US=3
{ python $D/openblas_spinner.py; OPENBLAS_THREAD_TIMEOUT=4 python $D/openblas_spinner.py; } > $D/openblas-spinner.txt
GRACE_US=2 python $D/handoff.py > $D/handoff.txt
GRACE_US=2 python $D/timeline.py > $D/timeline.txt
for model in cnn mlp; do
  CONFIGS=one,old,spin:20,spin:16,spingemm:16 ROUNDS=6 python $D/step_ab.py $model \
    > $D/step-$model-default.txt
  BLAS1=1 CONFIGS=one,old,spin:20,spin:16 ROUNDS=6 python $D/step_ab.py $model \
    > $D/step-$model-blas-1-thread.txt
  OPENBLAS_THREAD_TIMEOUT=20 CONFIGS=old,spin:16 ROUNDS=6 python $D/step_ab.py $model \
    > $D/step-$model-openblas-timeout-20.txt
done
python $D/gemm_shapes.py > $D/gemm-shapes.txt
python $D/layer_split_ab.py > $D/layer-split-blas-1-thread.txt
