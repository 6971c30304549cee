#!/bin/sh
# The runs of this folder's README, from the repository root, one after the other.
# cross-entropy-micro.txt: the commit before (384b658) and this one, in two trees; the
# tree before sits in /tmp/head384 (git worktree add /tmp/head384 384b658), and the
# editable install's finder is dropped so that each imports its own backends/.
set -e
D=benchmarks/results/issues-vm-2026-12-04
strip='import sys, runpy; sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")'
for i in 1 2; do
    for tree in /tmp/head384 "$PWD"; do
        (cd "$tree" && PYTHONPATH="$tree" python -c "$strip" $D/cross_entropy_micro.py)
    done
done > $D/cross-entropy-micro.txt
(python $D/update_ab.py sizes; python $D/update_ab.py sizes) > $D/update-ab-sizes.txt
(for i in 1 2 3; do python $D/update_ab.py step; done) > $D/update-ab-step.txt
python -m benchmarks.mlp_cpu --reps 5 > $D/mlp-cpu-2-threads.txt
python -m benchmarks.mlp_cpu --reps 5 --threads 1 > $D/mlp-cpu-1-thread.txt
python -m benchmarks.cnn_cpu --reps 5 --samples 20000 > $D/cnn-cpu-2-threads.txt
python -m benchmarks.cnn_cpu --reps 3 --samples 20000 --threads 1 > $D/cnn-cpu-1-thread.txt
python $D/../issues-vm-2026-12-03-d/mlp_phases.py 2 > $D/mlp-phases.txt
python $D/../issues-vm-2026-12-03-d/mlp_phases.py 1 >> $D/mlp-phases.txt
python -m benchmarks.scaling --out $D/scaling > $D/scaling.txt
(for i in 1 2; do python $D/update_ab.py step 1024; done) > $D/update-ab-step-1024.txt
