#!/usr/bin/env bash
# The GPU checks of issue 11, as one script for a machine with CUDA (run from the repository root, with
# the environment installed: `pip install -r requirements.txt -e .`; ../shared/data beside the repo).
# Writes bench/results/*_cuda* with the machine; every step's log goes to bench/results/gpu_checks.log.
#   bash bench/gpu_checks.sh
set -euo pipefail
log=bench/results/gpu_checks.log
: > "$log"
step() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; }

nvidia-smi | tee -a "$log"
# s/iteration and peak GPU memory of the cpu and paper presets
step python bench/train_speed.py --device cuda --presets cpu paper --precisions fp32 bf16
# images/s: fp32 and bf16 at batch 1 and 64
step python bench/latency.py --device cuda --precision fp32 --batches 1 64 --reps 10 --reps-large 10 --out bench/results/latency_cuda_fp32
step python bench/latency.py --device cuda --precision bf16 --batches 1 64 --reps 10 --reps-large 10 --out bench/results/latency_cuda_bf16
# 300 iterations of the paper preset with Lite2 (offline weights) on metal_plate, then the test split
step rdexpert train --data-root ../shared/data/mpdd --category metal_plate --preset paper --backbone tf_efficientnet_lite2 \
    --iterations 300 --textures ../shared/data/dtd/images --device cuda --out runs/gpu_paper_lite2
step rdexpert test --checkpoint runs/gpu_paper_lite2 --data-root ../shared/data/mpdd --category metal_plate \
    --device cuda --out bench/results/gpu_paper_lite2_test
