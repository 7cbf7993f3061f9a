#!/usr/bin/env bash
# Runs on the accelerator machine: the default tokenizer and model of models/, from nothing.
#   source .device/env.sh && tools/default-device.sh TOK_MINUTES MODEL_MINUTES
# 1. the shapes world at 64 px, edges hard and anti-aliased alternating (DESIGN §6), 20k + 1k val;
# 2. train-tokenizer, tiny64's structure at width 24 (2.1 M parameters), --fit to TOK_MINUTES;
# 3. its PSNR/SSIM on held-out sets drawn with hard and with smooth edges, each alone;
# 4. tokenize, then train the model (tiny64 narrowed to d 192, 8 layers: 4.1 M parameters) for
#    MODEL_MINUTES. RESUME=1 (call again while the machine is warm) continues the model's run
#    from /tmp/defrun for MODEL_MINUTES more.
# Environment: TOKENIZER=FILE skips step 2 and uses FILE (e.g. the shipped models/tokenizer.safetensors);
# IMAGES (default 20000) and STEPS (default 3000) size the data and the model's cosine schedule;
# LR (default 1e-3), WARMUP (default 300); SHAPES_SEED (default 0) draws other images; INIT=FILE
# starts the model from FILE's weights and architecture (train --init) instead of model_set below.
# EVAL=1 ends with `vmambar eval --set shapes` of the model (EVAL_SEEDS, default 0: one eval per
# seed); SHIP=1 writes the f16 checkpoints of models/ (tools/ship_default.ts) to $OUT/models.
# BUDGET_S=N: the model trains for what is left of N seconds after the data and tokenizing, less
# RESERVE_S (default 60) for eval and shipping; MODEL_MINUTES is then ignored.
# TRAIN_FLAGS="…" adds flags to `vmambar train` (e.g. "--scale-weights 16,8,4,2,1"; not with RESUME=1,
# which keeps the run's own settings). With INIT, TRAIN_FLAGS="--set ar_scales=2 --fit" turns the
# model's 2×2 and 3×3 scales autoregressive (ModelConfig.ar_scales) and fits the schedule to the time;
# the fourth version was three such runs on new images (SHAPES_SEED 7, 8, 9), each from the one before
# (tools/BENCHMARKS.md, "The default model, fourth version"). TRAIN_FLAGS="--set n_layers=12 --fit"
# grows INIT's hybrid to 12 layers (the new ones start as zero residuals); the shipped model is the
# fourth version grown so and trained in four runs (SHAPES_SEED 12, 12, 13, 14 with SHAPES_FLAGS
# below; tools/BENCHMARKS.md, "The default model, fifth version"), then three more (SHAPES_SEED 15,
# 16, 17, SHAPES_FLAGS="--pairs 0.4 --objects 1,3,1"; "The default model, sixth version").
# SHAPES_FLAGS="…" adds flags to `vmambar data shapes` (e.g. "--pairs 0.3 --objects 1,2,1": more
# scenes of the kinds the model gets wrong; the held-out set follows the same mix).
# QUALITY=0 skips the tokenizer's PSNR/SSIM sets (for a run that reuses a TOKENIZER); VAL_IMAGES
# (default 1000) sizes the held-out set.
# TEACHER_SET=KEYS trains a teacher first on the same tokens (e.g. "arch=transformer,d=384,n_layers=8,
# heads=6": a teacher need not fit models/' size budget), TEACHER_STEPS (default 6000) at batch 64
# within TEACHER_MINUTES (default 4), then distils the model from it (--teacher, --kd-alpha KD_ALPHA,
# default 0.5). At 5,000 steps a transformer teacher lowered the hybrid's validation loss by 0.056
# (tools/BENCHMARKS.md); a teacher better than the default model is the next step to try.
# Back in $OUT: the tokenizer and model checkpoints (f32, unless SHIP=1), their metrics, the grids.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
run=/tmp/defrun
tok_minutes=${1:-5}
model_minutes=${2:-3}
mkdir -p "$out" "$run"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
vm() { deno run --cached-only -A main.ts "$@"; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
model_set="d=192,n_layers=8,gsa_every=3,heads=4"
if [[ ${RESUME:-0} != 1 ]]; then
  vm data shapes --n "${IMAGES:-20000}" --size 64 --val "${VAL_IMAGES:-1000}" --edges mixed \
    --out $run/shapes --force --seed "${SHAPES_SEED:-0}" ${SHAPES_FLAGS:-}
  if [[ ${QUALITY:-1} == 1 ]]; then
    vm data shapes --n 500 --size 64 --seed 11 --edges hard --out $run/val-hard --force
    vm data shapes --n 500 --size 64 --seed 11 --edges smooth --out $run/val-smooth --force
  fi
  stamp data
  if [[ -n ${TOKENIZER:-} ]]; then
    cp "$TOKENIZER" $run/tokenizer.safetensors
  else
  echo '{"ch": 24}' >$run/tok.json
  vm train-tokenizer --data $run/shapes --val $run/shapes/val --config $run/tok.json \
    --out $run/tokenizer.safetensors --force --steps 20000 --fit --max-minutes "$tok_minutes" \
    --log-every 200 --val-every 0 --grid-every 1000 --checkpoint-every 2000 --decode-threads 16
  fi
  stamp tokenizer
  for e in $([[ ${QUALITY:-1} == 1 ]] && echo hard smooth); do
    echo "quality ($e edges): $(deno run --cached-only -A tools/tokenizer_quality.ts \
      --tokenizer $run/tokenizer.safetensors --data $run/val-$e --grid "$out/recon-$e.png")"
  done
  for set in shapes:tokens shapes/val:tokens-val; do
    vm tokenize --tokenizer $run/tokenizer.safetensors --data "$run/${set%%:*}" \
      --out "$run/${set##*:}" --force --batch 512 --decode-threads 16
  done
  stamp tokenize
  mode=(--force --steps "${STEPS:-3000}")
  if [[ -n ${INIT:-} ]]; then
    # A copy, so that INIT may be the run's own output from the call before ($run/model.safetensors).
    [[ $INIT -ef $run/init.safetensors ]] || cp "$INIT" $run/init.safetensors
    mode+=(--init $run/init.safetensors)
  else
    mode+=(--set "$model_set")
  fi
else
  mode=(--resume)
fi
teacher=()
if [[ ${RESUME:-0} != 1 && -n ${TEACHER_SET:-} ]]; then
  vm train --data $run/tokens --val $run/tokens-val --tokenizer $run/tokenizer.safetensors \
    --out $run/teacher.safetensors --force --set "$TEACHER_SET" --steps "${TEACHER_STEPS:-6000}" \
    --batch 64 --lr "${LR:-1e-3}" --warmup "${WARMUP:-300}" --max-minutes "${TEACHER_MINUTES:-4}" \
    --log-every 500 --val-every 0 --sample-every 0 --checkpoint-every 1000 || true
  stamp teacher
  teacher=(--teacher $run/teacher.safetensors --kd-alpha "${KD_ALPHA:-0.5}")
  cp $run/teacher.metrics.jsonl "$out/" 2>/dev/null || true
fi
if [[ -n ${BUDGET_S:-} ]]; then
  left=$(( BUDGET_S - ($(date +%s) - t0) - ${RESERVE_S:-60} ))
  model_minutes=$(awk "BEGIN { printf \"%.2f\", ($left > 30 ? $left : 30) / 60 }")
  stamp "model: $model_minutes minutes"
fi
vm train --data $run/tokens --val $run/tokens-val --tokenizer $run/tokenizer.safetensors \
  --out $run/model.safetensors "${mode[@]}" --batch 64 --lr "${LR:-1e-3}" \
  --warmup "${WARMUP:-300}" --max-minutes "$model_minutes" --log-every 100 --val-every 500 \
  --sample-every 500 --checkpoint-every 500 "${teacher[@]}" ${TRAIN_FLAGS:-} || true
stamp model
# The checkpoints first, so that they come back even if the eval runs out of time.
if [[ ${SHIP:-0} == 1 ]]; then
  deno run --cached-only -A tools/ship_default.ts --tokenizer $run/tokenizer.safetensors \
    --model $run/model.safetensors --out "$out/models"
  ls -l "$out/models"
else
  cp $run/tokenizer.safetensors $run/model.safetensors "$out/" 2>/dev/null || true
fi
cp $run/tokenizer.metrics.jsonl $run/model.metrics.jsonl "$out/" 2>/dev/null || true
cp $run/model.samples.png "$out/" 2>/dev/null || true
sha256sum $run/tokenizer.safetensors
if [[ ${EVAL:-0} == 1 ]]; then
  mkdir -p "$out/eval"
  for seed in ${EVAL_SEEDS:-0}; do
    vm eval --set shapes --model $run/model.safetensors --tokenizer $run/tokenizer.safetensors \
      --seed "$seed" --out "$out/eval/shapes-$seed.md" --force | tail -16
  done
  stamp eval
fi
