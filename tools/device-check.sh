#!/usr/bin/env bash
# Runs on the accelerator machine: the measurements this repository still owes a GPU, in one call
# of about five minutes (tools/BENCHMARKS.md says what each decides).
#   1. f16 matmul at 4096 and 8192: the default 256×128 tile against its column-accumulator
#      variant (-cm), f32 and PyTorch FP32 in the same run (issue 2's f16 ≥ 75% target).
#   2. tiny64's conv GEMMs (64×576×131072, 128×1152×32768): the automatic tile (64×256 for M = 64)
#      against 128×128, beside PyTorch.
#   3. Dispatches per second (bind groups are now reused) beside PyTorch's launch rate.
#   4. One tiny64 training step at batch 32: dispatches, host time, and GPU time by pipeline.
#   5. VAR tokenizer parity, forward and one training step's gradients, on the GPU.
#   source .device/env.sh && tools/device-check.sh
# Each step runs even when one before it failed: device time is too scarce to lose the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1
vm() { deno run --cached-only -A main.ts "$@"; }
step() { echo; echo "== $1"; }
failed=0
check() { local rc=$?; if ((rc != 0)); then echo "FAILED ($rc): $1"; failed=1; fi; }
step "1, 3: matmul at 4096 and 8192 (f32, f16, f16 -cm) and the dispatch rate"
vm bench --ops matmul,dispatch --sizes 4096,8192 --dtypes f32,f16 \
  --tiles auto,256x128x32-16x8-cm --json "$out/matmul.json" 2>&1 | tee "$out/matmul.log"
check "WGSL matmul"
step "2: the awkward and conv GEMM shapes"
vm bench --ops awkward --dtypes f32 --tiles auto,128x128x32-8x8,64x256x32-8x8 \
  --json "$out/awkward.json" 2>&1 | tee "$out/awkward.log"
check "WGSL awkward"
step "PyTorch, same shapes"
python3 tools/torch_bench.py --sizes 4096,8192 --json "$out/torch.json" 2>&1 | tee "$out/torch.log"
check "PyTorch bench"
python3 tools/torch_bench.py --compare "$out/matmul.json" "$out/torch.json" | tee "$out/compare.txt"
python3 tools/torch_bench.py --compare "$out/awkward.json" "$out/torch.json" | tee -a "$out/compare.txt"
step "4: one tiny64 step at batch 32"
deno run --cached-only -A tools/profile_tokenizer_step.ts --batch 32 --steps 5 --gpu 2>&1 |
  tee "$out/step.log"
check "step profile"
step "5: VAR parity, forward and training (GroupNorm + SiLU are one kernel now)"
python3 tools/var_reference.py --out "$out/var" 2>&1 | tee "$out/var.log" &&
  deno run --cached-only -A tools/var_parity.ts "$out/var" 2>&1 | tee -a "$out/var.log"
check "VAR parity"
rm -rf "$out/var"
exit $failed
