#!/usr/bin/env bash
# Runs on the accelerator machine: the end-to-end figures of tools/BENCHMARKS.md in one call, each
# beside PyTorch's in the same run.
#   source .device/env.sh && tools/measure-device.sh [SECTION ...]
# Sections (all by default):
#   tokenizer  tiny64 tokenizer step at batch 32: the conv/GroupNorm kernel variants new, v1 and
#              im2col (GPU profile and back-to-back timing), then tools/torch_tokenizer_step.py
#              (fp32, TF32, bf16)
#   model      VMambAR training step and generation at tiny64 (batch 64) and base256 (batch 16),
#              then the PyTorch reference's parity check and timing (tools/reference/check.sh)
#   default    the default model's training step (d 192, 8 layers) and `vmambar bench generate`
#   eval       `vmambar eval --set shapes` of the default model
#   steps      the training steps only, without the slower profiles and base256's batch of 16
#              images: tiny64 (GPU profile), base256, the tokenizer's (implicit GEMMs) and
#              PyTorch's tokenizer step and tiny64 reference step (fp32, bf16, peak memory)
#   scan       tools/bench_scan.ts: the one-pass selective scan against the chunked kernels (per-kernel
#              GPU time, cross-checked), then tools/torch_scan.py (PyTorch's parallel scan, the
#              ratio table); the mamba_ssm figure is tools/BENCHMARKS.md's
#   generate   generation latency, tokens only, 1 and 16 images, tiny64 and base256: VMambAR
#              (profile_model_step.ts --generate) beside the PyTorch reference's scale-by-scale
#              generation (tools/reference/check.py --time-only --generate), fp32 and bf16
#   candidates the defaults' best of 4 against one draw: `vmambar bench generate` alternating
#              --candidates auto and 1 (three rounds), where the time goes
#              (tools/profile_generate.ts --gpu), then `vmambar eval --set shapes` at the defaults
#              on seeds 0, 1 and 2
#   sampling   `vmambar eval --set shapes` under a few sampling settings (SAMPLING_OPTS, SAMPLING_MODELS,
#              SAMPLING_SEEDS: see below); one line per setting: [count relation all-right] per seed
# Logs land in $OUT (the device tool's output folder) or ./out.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
sections=${*:-tokenizer model default eval}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
  --format=csv,noheader 2>/dev/null || true
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
ts() { deno run --cached-only -A "$@"; }
default_set="d=192,n_layers=8,gsa_every=3,heads=4"
for s in $sections; do
  stamp "== $s"
  case $s in
  tokenizer)
    ts tools/profile_tokenizer_step.ts --batch 32 --steps 10 --compare --gpu 2>&1 |
      tee "$out/tokenizer-step.log"
    python3 tools/torch_tokenizer_step.py --batch 32 --json "$out/torch-tokenizer.json" 2>&1 |
      tee -a "$out/tokenizer-step.log"
    ;;
  model)
    ts tools/profile_model_step.ts --preset tiny64 --batch 64 --steps 5 --gpu --generate 1,16 2>&1 |
      tee "$out/model-step.log"
    ts tools/profile_model_step.ts --preset base256 --batch 16 --steps 3 --gpu --generate 1,16 2>&1 |
      tee -a "$out/model-step.log"
    tools/reference/check.sh /tmp/reference 2>&1 | tee "$out/reference.log"
    ;;
  default)
    ts tools/profile_model_step.ts --preset tiny64 --set "$default_set" --batch 64 --steps 5 \
      --generate 1,16 2>&1 | tee "$out/default-step.log"
    ts main.ts bench generate --runs 10 --json "$out/bench-generate.json" 2>&1 |
      tee -a "$out/default-step.log"
    ts main.ts bench generate --runs 5 --batch 16 --json "$out/bench-generate-16.json" 2>&1 |
      tee -a "$out/default-step.log" | grep -E "time to|per image"
    ;;
  eval)
    ts main.ts eval --set shapes --out "$out/eval/shapes.md" 2>&1 | tail -40
    ;;
  steps)
    ts tools/profile_model_step.ts --preset tiny64 --batch 64 --steps 5 --gpu --generate 1,16 2>&1 |
      tee "$out/model-step.log" | grep -E "dispatches,|total GPU|generate|^ +[0-9.]+ +[0-9.]+% " |
      head -14
    ts tools/profile_model_step.ts --preset base256 --batch 16 --steps 3 --generate 1 2>&1 |
      tee -a "$out/model-step.log" | grep -E "dispatches,|generate"
    ts tools/profile_tokenizer_step.ts --batch 32 --steps 10 2>&1 | tee "$out/tokenizer-step.log" |
      tail -3
    python3 tools/torch_tokenizer_step.py --batch 32 --json "$out/torch-tokenizer.json" 2>&1 |
      tee -a "$out/tokenizer-step.log"
    ts tools/reference/dump_case.ts --preset tiny64 --out /tmp/case-tiny64.safetensors >/dev/null
    python3 tools/reference/check.py --time --time-batch 64 /tmp/case-tiny64.safetensors 2>&1 |
      tee "$out/reference.log" | grep -E "FAIL of|PyTorch eager"
    ;;
  scan)
    ts tools/bench_scan.ts --json /tmp/scan.json --dump /tmp/scan-dump.safetensors 2>&1 |
      tee "$out/scan.log"
    python3 tools/torch_scan.py --dump /tmp/scan-dump.safetensors --wgsl /tmp/scan.json 2>&1 |
      tee -a "$out/scan.log"
    ;;
  generate)
    # Generation, tokens only (cfg 3, top-k 100), 1 and 16 images: VMambAR's profile beside the
    # PyTorch reference's scale-by-scale generation (fp32 and bf16) on the same random weights.
    for p in tiny64 base256; do
      ts tools/profile_model_step.ts --preset $p --batch 1 --steps 1 --generate 1,16 2>&1 |
        grep -E "^generate" | sed "s/^/VMambAR $p: /" | tee -a "$out/generate.log"
      ts tools/reference/dump_case.ts --preset $p --out /tmp/case-$p.safetensors >/dev/null
      python3 tools/reference/check.py --time --time-only --generate 1,16 /tmp/case-$p.safetensors \
        2>&1 | grep -E "==|generation" | tee -a "$out/generate.log"
    done
    ;;
  sampling)
    # SAMPLING_OPTS: option sets separated by ';' (VMAMBAR_RERANK_PMI=λ in one sets the reranking's
    # weight); SAMPLING_MODELS: checkpoints (default: models/model.safetensors); SAMPLING_SEEDS.
    IFS=';' read -ra sets <<<"${SAMPLING_OPTS:-"--cfg 1;--cfg 1 --temperature 1;--cfg 1 --top-k 8"}"
    for m in ${SAMPLING_MODELS:-models/model.safetensors}; do
      for opts in "${sets[@]}"; do
        line="$m $opts:"
        for seed in ${SAMPLING_SEEDS:-0}; do
          # shellcheck disable=SC2086
          r=$(env $(echo "$opts" | grep -o 'VMAMBAR_[A-Z_]*=[^ ]*') deno run --cached-only -A \
            main.ts eval --set shapes --model "$m" --seed "$seed" \
            $(echo "$opts" | sed 's/VMAMBAR_[A-Z_]*=[^ ]*//g') 2>&1 |
            grep -E "^\| (count|relation|\*\*)" | awk -F'|' '{ gsub(/[ *%]/, "", $5); printf "%s ", $5 }')
          line="$line  [$r]"
        done
        echo "$line" | tee -a "$out/sampling.log"
      done
    done
    ;;
  candidates)
    for round in 1 2 3; do
      for c in auto 1; do
        ts main.ts bench generate --runs 30 --no-breakdown --candidates $c 2>&1 |
          grep "time to" | sed "s/^/round $round, --candidates $c: /" | tee -a "$out/candidates.log"
      done
    done
    ts tools/profile_generate.ts --candidates 1,4 --gpu 2>&1 | tee "$out/profile-generate.log"
    for seed in 0 1 2; do
      ts main.ts eval --set shapes --seed $seed --out "$out/eval/seed$seed.md" --force 2>&1 |
        grep -E "^\| \*\*every" | sed "s/^/seed $seed: /" | tee -a "$out/candidates.log"
    done
    ;;
  *) echo "unknown section $s" ;;
  esac
done
stamp done
