"""Judges the WebGPU VMambAR against the PyTorch reference (tools/reference/vmambar.py).

A case file (tools/reference/dump_case.ts) holds the model's config (`__metadata__.config`), its
parameters and the tokenizer's quantizer (`tokenizer.*`), the inputs (`input.text_ids`,
`input.indices`) and what the WebGPU model computed from them: `out.logits`, `out.loss`,
`out.logits_incremental` (scale-by-scale generation, teacher-forced) and `grad.<name>` for every
model parameter. The reference runs the same inputs in float64 (the truth) and in float32 with
TF32 off (the error PyTorch itself makes in f32), on CUDA when there is one, and every row is
judged against float64:

  logits, incremental logits, loss   WGSL within 1e-3 relative of float64
  each parameter's gradient          WGSL error ≤ max(10 × torch-f32 error, 1e-4)

where error = max|a − b| / max|b| (b the float64 value); ‖a − b‖ / ‖b‖ is printed beside it.
--time also measures a PyTorch eager training step (forward + backward) for the case's config and
batch, fp32 (TF32 off) and bf16 autocast, as tokens/s (B·L per step); with --generate 1,16, the
reference's scale-by-scale generation at those batches too (ms from text ids to indices).

  python3 tools/reference/check.py [--time] CASE.safetensors [CASE2 ...]   # exit 1 on any FAIL
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmambar import VMambAR, model_config, read_safetensors  # noqa: E402

OUT_TOL = 1e-3       # logits, incremental logits, loss: relative to float64
GRAD_FACTOR = 10.0   # a gradient may be off by this many times PyTorch f32's own error ...
GRAD_FLOOR = 1e-4    # ... or by this much, whichever is larger
RULE = (f"rule: logits, incremental logits and loss PASS when WGSL error ≤ {OUT_TOL:g}; a gradient "
        f"PASSes when WGSL error ≤ max({GRAD_FACTOR:g} × torch-f32 error, {GRAD_FLOOR:g}); "
        "error = max|a−b| / max|b| against float64 (norm = ‖a−b‖ / ‖b‖, shown, not judged)")


def errors(a, b, floor=0.0):
    """(max|a − b| / max|b|, ‖a − b‖ / ‖b‖), the denominators floored at `floor`."""
    a, b = a.double().cpu(), b.double().cpu()
    d = a - b
    tiny = max(floor, 1e-300)
    return (float(d.abs().max()) / max(float(b.abs().max()), tiny),
            float(d.norm()) / max(float(b.norm()), tiny))


def reference(cfg, state, text_ids, indices, dtype, device):
    """Logits, loss and every model gradient of the reference at `dtype` (float64 on the host)."""
    model = VMambAR(cfg).to(device=device, dtype=dtype)
    model.load_state(state)
    model.checkpoint = True  # one block's activations at a time: base256's scan is large in f64
    logits, loss = model(text_ids.to(device), indices.to(device))
    loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().double().cpu()
             for n, p in model.model_parameters()}
    out = dict(logits=logits.detach().double().cpu(), loss=loss.detach().double().cpu().reshape(1),
               grads=grads)
    del model, logits, loss
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def cuda_step_ms(step, warmup=3, repeats=10):
    """Median ms of step() over `repeats` runs after `warmup`, by CUDA events."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_training(cfg, state, text_ids, indices, device, batch=None):
    """The [Speed] baseline: PyTorch eager forward + backward of the reference (its scan is the
    plain loop over positions), fp32 with TF32 off and bf16 autocast; parameters in fp32. With
    `batch`, the case's rows are repeated to that batch."""
    if batch:
        reps = -(-batch // indices.shape[0])
        text_ids, indices = text_ids.repeat(reps, 1)[:batch], indices.repeat(reps, 1)[:batch]
    B, L = indices.shape
    text_ids, indices = text_ids.to(device), indices.to(device)
    print("  timing (the scan is the reference's loop over positions, so this is launch-bound: "
          "a floor for PyTorch without mamba_ssm, not a tuned baseline)")
    for label, bf16 in (("fp32 (TF32 off)", False), ("bf16 autocast", True)):
        model = VMambAR(cfg).to(device)
        model.load_state(state)

        def step():
            for p in model.parameters():
                p.grad = None
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                _, loss = model(text_ids, indices)
            loss.backward()

        try:
            torch.cuda.reset_peak_memory_stats()
            ms = cuda_step_ms(step)
            peak = torch.cuda.max_memory_allocated() / 2**20
            print(f"  PyTorch eager {label}: {ms:.1f} ms/step, {B * L / ms * 1e3:,.0f} tokens/s "
                  f"(B {B} × L {L}), peak memory {peak:,.0f} MiB")
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            print(f"  PyTorch eager {label}: failed ({str(e).splitlines()[0]})")
        del model
        torch.cuda.empty_cache()


def time_generation(cfg, state, text_ids, device, batches):
    """The [Speed] generation baseline: the reference's scale-by-scale generation (carried Mamba
    states and KV caches, each scale's scan by doubling, tokens drawn on the GPU) with cfg 3 and
    top-k 100 as tools/profile_model_step.ts --generate, from the text ids to the indices on the
    host; fp32 (TF32 off) and bf16 autocast; median wall-clock ms of 5 runs after a warm-up."""
    for label, bf16 in (("fp32 (TF32 off)", False), ("bf16 autocast", True)):
        model = VMambAR(cfg).to(device)
        model.load_state(state)
        for n in batches:
            ids = text_ids.repeat(-(-n // text_ids.shape[0]), 1)[:n].to(device)
            g = torch.Generator(device=device).manual_seed(1)

            def run():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    return model.generate(ids, cfg=3.0, top_k=100, generator=g).cpu()

            try:
                torch.cuda.reset_peak_memory_stats()
                run()
                times = []
                for _ in range(5):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    run()
                    times.append((time.perf_counter() - t0) * 1e3)
                peak = torch.cuda.max_memory_allocated() / 2**20
                print(f"  PyTorch eager generation {label}: {n} image{'s' if n > 1 else ''} "
                      f"(tokens only, cfg 3): median {statistics.median(times):.1f} ms, peak memory "
                      f"{peak:,.0f} MiB")
            except RuntimeError as e:
                print(f"  PyTorch eager generation {label}, {n} images: failed "
                      f"({str(e).splitlines()[0]})")
        del model
        torch.cuda.empty_cache()


def describe(cfg, B):
    L = sum(pn * pn for pn in cfg["scales"])
    return (f"{cfg['arch']} d {cfg['d']}, {cfg['n_layers']} layers, gsa_every {cfg.get('gsa_every')}, "
            f"{cfg['heads']} heads, {cfg['text_layers']} text layers; B {B}, T {cfg['text_length']}, "
            f"L {L}, V {cfg['vocab']}")


def check_case(path, device, time_it, time_batch=None, generate=(), judge=True):
    """Prints the case's table; returns the number of FAIL rows. judge=False: only the timings."""
    tensors, meta = read_safetensors(path)
    if "config" not in meta:
        print(f"{path}: no config in __metadata__; not a case file")
        return 1
    cfg = json.loads(meta["config"])
    text_ids, indices = tensors["input.text_ids"], tensors["input.indices"]
    print(f"\n== {os.path.basename(path)}: {describe(model_config(cfg), indices.shape[0])}")
    state = {k: v for k, v in tensors.items() if not k.startswith(("input.", "out.", "grad."))}
    if not judge:
        if device.type != "cuda":
            print("  no CUDA device, no timing")
        elif generate:
            time_generation(cfg, state, text_ids, device, generate)
        else:
            time_training(cfg, state, text_ids, indices, device, time_batch)
        return 0
    r64 = reference(cfg, state, text_ids, indices, torch.float64, device)
    r32 = reference(cfg, state, text_ids, indices, torch.float32, device)

    print(f"  {'':<44}{'WGSL vs f64':>22}{'torch-f32 vs f64':>22}")
    print(f"  {'row':<44}{'max':>11}{'norm':>11}{'max':>11}{'norm':>11}{'ratio':>9}  verdict")
    fails, worst = 0, (0.0, "")

    def row(name, wgsl, ref, f32, judge, floor=0.0):
        nonlocal fails
        if wgsl is None or tuple(wgsl.shape) != tuple(ref.shape):
            why = "missing" if wgsl is None else f"shape {list(wgsl.shape)} ≠ {list(ref.shape)}"
            print(f"  {name:<44}{why:>44}{'':>9}  FAIL")
            fails += 1
            return None
        w, t = errors(wgsl, ref, floor), errors(f32, ref, floor)
        ratio = w[0] / t[0] if t[0] > 0 else float("inf") if w[0] > 0 else 1.0
        ok = judge(w[0], t[0])
        fails += not ok
        print(f"  {name:<44}{w[0]:>11.2e}{w[1]:>11.2e}{t[0]:>11.2e}{t[1]:>11.2e}{ratio:>9.2f}  "
              f"{'PASS' if ok else 'FAIL'}")
        return ratio

    out_ok = lambda w, t: w <= OUT_TOL  # noqa: E731
    row("logits", tensors.get("out.logits"), r64["logits"], r32["logits"], out_ok)
    row("logits (incremental)", tensors.get("out.logits_incremental"), r64["logits"], r32["logits"],
        out_ok)
    loss = tensors.get("out.loss")
    row("loss", None if loss is None else loss.reshape(1), r64["loss"], r32["loss"], out_ok)
    grad_ok = lambda w, t: w <= max(GRAD_FACTOR * t, GRAD_FLOOR)  # noqa: E731
    # A gradient that is exactly zero in float64 is measured against 1e-8 of the largest one.
    floor = 1e-8 * max(float(g.abs().max()) for g in r64["grads"].values())
    for name, g64 in r64["grads"].items():
        ratio = row(f"grad.{name}", tensors.get(f"grad.{name}"), g64, r32["grads"][name], grad_ok,
                    floor)
        if ratio is not None and ratio > worst[0]:
            worst = (ratio, name)
    print(f"  loss: WGSL {float(loss.reshape(-1)[0]) if loss is not None else float('nan'):.6f}, "
          f"f64 {float(r64['loss']):.6f}, f32 {float(r32['loss']):.6f}")
    print(f"  worst gradient ratio (WGSL error / torch-f32 error): {worst[0]:.2f} ({worst[1]})")
    print(f"  {fails} FAIL of {3 + len(r64['grads'])} rows")
    if time_it:
        if device.type == "cuda":
            time_training(cfg, state, text_ids, indices, device, time_batch)
            if generate:
                time_generation(cfg, state, text_ids, device, generate)
        else:
            print("  --time: no CUDA device, no timing")
    return fails


def batch_list(text):
    """--generate's value: batches N1,N2,… (positive integers)."""
    try:
        out = [int(n) for n in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"batches must be positive integers N1,N2,…, got '{text}'")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="+", help="case .safetensors files from dump_case.ts")
    ap.add_argument("--time", action="store_true", help="also time a PyTorch eager training step")
    ap.add_argument("--time-batch", type=int, action="append", default=[],
                    help="with --time: the batch to time each case at (in case order)")
    ap.add_argument("--generate", type=batch_list, default=[],
                    help="with --time: also time generation at these batches, e.g. 1,16")
    ap.add_argument("--time-only", action="store_true",
                    help="skip the judging: only the timings (--generate's alone when given)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    # Plain f32: no TF32 in matrix products or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"PyTorch {torch.__version__} on {where}")
    if not args.time_only:
        print(RULE)
    batches = args.time_batch + [None] * len(args.cases)
    fails = sum(check_case(path, device, args.time, batches[i], args.generate, not args.time_only)
                for i, path in enumerate(args.cases))
    print(f"\n{'FAIL' if fails else 'PASS'}: {fails} failing rows over {len(args.cases)} case(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
