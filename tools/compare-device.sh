#!/usr/bin/env bash
# Runs on the accelerator machine: the seed's claim at equal parameters, data and steps (issue
# [Default]): a transformer (arch=transformer, 5 layers, 4.28 M parameters), the hybrid of the
# default model (d 192, 8 Mamba layers, GSA every 3: 4.38 M) and the same hybrid distilled from
# that transformer, each trained STEPS steps (default 800) at batch 64 on the same 20,000 shapes
# images tokenized by the shipped tokenizer, then `vmambar eval --set shapes` (the default
# sampling) and `vmambar bench generate`.
#   source .device/env.sh && tools/compare-device.sh [STEPS]
# IMAGES, VAL, EVAL_LIMIT and RUNS shrink it for a try on a CPU.
# Back in $OUT: compare.log, each row's metrics and bench generate JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
run=/tmp/compare
steps=${1:-800}
mkdir -p "$out" "$run"
log="$out/compare.log"
vm() { deno run --cached-only -A main.ts "$@"; }
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$log"; }
vm data shapes --n "${IMAGES:-20000}" --size 64 --val "${VAL:-1000}" --edges mixed --out $run/shapes --force | tail -1
vm tokenize --data $run/shapes --out $run/tokens --force | tail -1
vm tokenize --data $run/shapes/val --out $run/tokens-val --force | tail -1
stamp "data and tokens"
train() {
  local row=$1
  shift
  vm train --data $run/tokens --val $run/tokens-val --out "$run/$row.safetensors" --force \
    --steps "$steps" --batch 64 --lr 1e-3 --warmup 100 --log-every 100 --val-every 0 \
    --sample-every 0 --checkpoint-every 0 --max-minutes 2 "$@" 2>&1 | grep -E "^train:|trained to" |
    tee -a "$log"
  stamp "$row trained"
  vm eval --set shapes --limit "${EVAL_LIMIT:-100}" --model "$run/$row.safetensors" 2>&1 | grep -E "^\| (count|\*\*)" |
    sed "s/^/$row /" | tee -a "$log"
  vm bench generate --model "$run/$row.safetensors" --runs "${RUNS:-5}" --no-breakdown \
    --json "$out/bench-$row.json" 2>&1 | grep -E "time to" | sed "s/^/$row /" | tee -a "$log"
  cp "$run/$row.metrics.jsonl" "$out/" 2>/dev/null || true
}
train transformer --set arch=transformer,d=192,n_layers=5,heads=4
train hybrid --set d=192,n_layers=8,gsa_every=3,heads=4
train distilled --set d=192,n_layers=8,gsa_every=3,heads=4 --teacher $run/transformer.safetensors \
  --kd-alpha 0.5
stamp done
