#!/usr/bin/env bash
# Runs on the accelerator machine: `vmambar bench` and PyTorch's figures for the same ops in one
# run, then one table with the ratios (WGSL / PyTorch). Arguments go to `vmambar bench`.
#   source .device/env.sh && tools/bench-device.sh --tiles auto,128x128x16-8x8
# Results land in $OUT (the device tool's output folder) or ./out.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv 2>/dev/null || true
export PYTHONUNBUFFERED=1
deno run --cached-only -A main.ts bench --json "$out/wgsl.json" "$@" 2>&1 | tee "$out/wgsl.log"
python3 tools/torch_bench.py --json "$out/torch.json" 2>&1 | tee "$out/torch.log"
python3 tools/torch_bench.py --compare "$out/wgsl.json" "$out/torch.json" | tee "$out/compare.txt"
