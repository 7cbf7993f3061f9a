#!/usr/bin/env bash
# Runs on the accelerator machine: every WGSL benchmark beside PyTorch's figures for the same ops
# in one run, then tables with the ratios. Arguments go to `vmambar bench` (matmul, elementwise,
# dispatch); the scan and attention rows use the base256 shapes (DESIGN §4). Then the end-to-end
# rows (training steps of tiny64 at batch 64 and base256 at 16 with dispatches, submits and peak
# memory, generation of 1 and 16 images, each beside the PyTorch reference in fp32 and bf16):
# tools/measure-device.sh steps generate; END_TO_END=0 skips them.
#   source .device/env.sh && tools/bench-device.sh [--ops matmul] [--tiles auto]
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
deno run --cached-only -A tools/bench_scan.ts --json "$out/scan.json" --dump "$out/scan_dump.safetensors" 2>&1 | tee "$out/scan.log"
python3 tools/torch_scan.py --dump "$out/scan_dump.safetensors" --wgsl "$out/scan.json" 2>&1 | tee -a "$out/scan.log"
deno run --cached-only -A tools/bench_attention.ts --json "$out/attention.json" 2>&1 | tee "$out/attention.log"
python3 tools/torch_attention.py --ours "$out/attention.json" 2>&1 | tee -a "$out/attention.log"
echo
python3 tools/torch_bench.py --compare "$out/wgsl.json" "$out/torch.json" | tee "$out/compare.txt"
grep -A4 "speed ratio" "$out/scan.log" || true
tail -6 "$out/attention.log"
if [ "${END_TO_END:-1}" != 0 ]; then
  OUT="$out" tools/measure-device.sh steps generate
fi
