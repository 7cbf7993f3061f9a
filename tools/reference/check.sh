#!/usr/bin/env bash
# Runs on the GPU machine: the WebGPU VMambAR against the PyTorch reference, at tiny64 and base256.
# dump_case.ts writes each preset's case (random weights, inputs, the WebGPU logits, loss,
# incremental logits and every gradient); check.py runs the reference in float64 and float32 on
# the same inputs, prints the table (PASS/FAIL per row) and PyTorch's training-step tokens/s.
#   source .device/env.sh && tools/reference/check.sh [DIR]     # DIR: where the cases go (out/reference)
# Exit status 1 when any row fails. check.py took 21 s for tiny64 at batch 8 and 81 s for base256
# at batch 4 on an H200 (torch 2.11, --time included; cases written by PyTorch f32 in their place).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-out/reference}
mkdir -p "$dir"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
for p in tiny64 base256; do
  echo "== dump_case $p"
  # --cached-only: the GPU machine reaches no registry; .device/ carries the dependencies.
  deno run --cached-only -A tools/reference/dump_case.ts --preset "$p" --out "$dir/case-$p.safetensors"
done
python3 tools/reference/check.py --time --time-batch 64 --time-batch 16 "$dir"/case-tiny64.safetensors "$dir"/case-base256.safetensors
