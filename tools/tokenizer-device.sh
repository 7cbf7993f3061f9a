#!/usr/bin/env bash
# Runs on the accelerator machine: the tokenizer quality run of issue 5. Renders the shapes world,
# trains tiny64 for MINUTES (the cosine schedule fitted to them), then reports PSNR/SSIM and code
# usage on the shapes validation set and, when given, an emoji held-out shard.
#   source .device/env.sh && tools/tokenizer-device.sh [MINUTES] [EMOJI_VAL_SHARDS] [-- TRAIN FLAGS]
# The checkpoint (60 MB, over the device tool's 16 MiB a file) comes back split in $OUT as
# tokenizer-tiny64.safetensors.part-*; `cat` them to rebuild it.
# Runs longer than one command (10 min): STEPS=N fixes the schedule's length instead of --fit;
# then RESUME=1 continues from /tmp/tokrun, which survives while the machine stays warm
# (call again at once; the checkpoint and train state are too big to carry back in).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
minutes=${1:-5}
emoji=${2:-}
shift $(( $# > 2 ? 3 : $# ))
mkdir -p "$out" /tmp/tokrun
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
vm() { deno run --cached-only -A main.ts "$@"; }
t0=$(date +%s)
if [[ ${RESUME:-0} == 1 && -f /tmp/tokrun/tokenizer-tiny64.safetensors ]]; then
  mode=(--resume) # the schedule and settings come from the saved train state
else
  vm data shapes --n 20000 --size 64 --val 1000 --out /tmp/tokrun/shapes --force
  echo "data: $(( $(date +%s) - t0 )) s"
  if [[ -n ${STEPS:-} ]]; then mode=(--force --steps "$STEPS"); else mode=(--force --steps 20000 --fit); fi
fi
vm train-tokenizer --data /tmp/tokrun/shapes --val /tmp/tokrun/shapes/val \
  --out /tmp/tokrun/tokenizer-tiny64.safetensors "${mode[@]}" \
  --max-minutes "$minutes" --log-every 100 --val-every 0 --grid-every 500 \
  --checkpoint-every 1000 --decode-threads 16 "$@"
cp /tmp/tokrun/tokenizer-tiny64.metrics.jsonl /tmp/tokrun/tokenizer-tiny64.recon.png "$out/"
if [[ -n $emoji ]]; then
  deno run --cached-only -A tools/tokenizer_quality.ts --tokenizer \
    /tmp/tokrun/tokenizer-tiny64.safetensors --data "$emoji" --grid "$out/emoji-recon.png"
fi
split -b 16000000 -d /tmp/tokrun/tokenizer-tiny64.safetensors "$out/tokenizer-tiny64.safetensors.part-"
sha256sum /tmp/tokrun/tokenizer-tiny64.safetensors
echo "total: $(( $(date +%s) - t0 )) s"
