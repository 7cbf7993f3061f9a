#!/usr/bin/env bash
# Runs on the accelerator machine: the seed's claim at equal parameters, data and steps (issue
# [Default]): a transformer (arch=transformer, 5 layers, 4.28 M parameters), the hybrid of the
# default model (d 192, 8 Mamba layers, GSA every 3: 4.38 M) and the same hybrid distilled from
# that transformer, each trained STEPS steps (default 5000) at batch 64 on the same IMAGES shapes
# images (default 60,000) tokenized by the shipped tokenizer, then `vmambar eval --set shapes` (the
# default sampling) on EVAL_SEEDS (default "0 1 2") and `vmambar bench generate`.
#   source .device/env.sh && tools/compare-device.sh STEPS PHASE…
# Phases, each within one device command (a later one on the warm machine; /tmp/compare persists):
#   data      the images, their tokens and the held-out tokens
#   pair      the transformer and the hybrid trained side by side (two processes on the one GPU)
#   distil    the distilled hybrid (its teacher: pair's transformer), with the other two rows'
#             evals beside it, then its own evals and every row's bench generate on a quiet GPU
#   rows      transformer, hybrid, distilled one after another, each evaluated (a CPU try)
# Default: data pair distil. MINUTES (default 8) caps each training (train --max-minutes: a row
# cut short says so in its "trained to step" line). IMAGES, VAL, EVAL_LIMIT, EVAL_SEEDS and RUNS
# shrink it for a try on a CPU. Back in $OUT: compare.log, each row's metrics, the evals' reports,
# the bench generate JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
run=/tmp/compare
steps=${1:-5000}
shift || true
phases=${*:-data pair distil}
for phase in $phases; do
  case $phase in
  data | pair | distil | rows) ;;
  *)
    echo "compare-device.sh: unknown phase '$phase' (data, pair, distil, rows)" >&2
    exit 2
    ;;
  esac
done
mkdir -p "$out" "$run"
log="$out/compare.log"
vm() { deno run --cached-only -A main.ts "$@"; }
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$log"; }
hybrid_set="d=192,n_layers=8,gsa_every=3,heads=4"
train() {
  local row=$1
  shift
  vm train --data $run/tokens --val $run/tokens-val --out "$run/$row.safetensors" --force \
    --steps "$steps" --batch 64 --lr 1e-3 --warmup 300 --log-every 500 --val-every 0 \
    --sample-every 0 --checkpoint-every 1000 --max-minutes "${MINUTES:-8}" "$@" >"$run/$row.log" 2>&1
  grep -E "^train:|trained to" "$run/$row.log" | sed "s/^/$row: /" | tee -a "$log"
  cp "$run/$row.metrics.jsonl" "$out/" 2>/dev/null || true
}
evals() {
  local row=$1
  for seed in ${EVAL_SEEDS:-0 1 2}; do
    vm eval --set shapes --limit "${EVAL_LIMIT:-100}" --model "$run/$row.safetensors" --seed "$seed" \
      --out "$run/eval-$row-$seed.md" --force >/dev/null 2>&1
    grep -E "^\| (colour|shape|count|relation|\*\*)" "$run/eval-$row-$seed.md" |
      sed "s/^/$row seed $seed /" | tee -a "$log"
    cp "$run/eval-$row-$seed.md" "$out/" 2>/dev/null || true
  done
}
bench() {
  local row=$1
  vm bench generate --model "$run/$row.safetensors" --runs "${RUNS:-10}" --no-breakdown \
    --json "$out/bench-$row.json" 2>&1 | grep -E "time to|memory" | sed "s/^/$row /" | tee -a "$log"
}
for phase in $phases; do
  stamp "== $phase"
  case $phase in
  data)
    vm data shapes --n "${IMAGES:-60000}" --size 64 --val "${VAL:-1000}" --edges mixed \
      --out $run/shapes --force | tail -1
    vm tokenize --data $run/shapes --out $run/tokens --force --batch 512 --decode-threads 16 | tail -1
    vm tokenize --data $run/shapes/val --out $run/tokens-val --force | tail -1
    ;;
  pair)
    train transformer --set arch=transformer,d=192,n_layers=5,heads=4 &
    train hybrid --set "$hybrid_set" &
    wait
    ;;
  distil)
    train distilled --set "$hybrid_set" --teacher $run/transformer.safetensors --kd-alpha 0.5 &
    evals transformer
    evals hybrid
    wait
    evals distilled
    for row in transformer hybrid distilled; do bench $row; done
    ;;
  rows)
    train transformer --set arch=transformer,d=192,n_layers=5,heads=4
    train hybrid --set "$hybrid_set"
    train distilled --set "$hybrid_set" --teacher $run/transformer.safetensors --kd-alpha 0.5
    for row in transformer hybrid distilled; do
      evals $row
      bench $row
    done
    ;;
  esac
  stamp "$phase done"
done
