#!/usr/bin/env python3
"""PyTorch reference figures for `vmambar bench`: the same ops and shapes on CUDA.

FP32 runs with TF32 off (the plain FP32 rate WGSL can be judged against), then bf16 and fp16.
Timing: CUDA events around many back-to-back iterations, after a warm-up; median of repeats.

  python3 tools/torch_bench.py --json torch.json            # measure
  python3 tools/torch_bench.py --compare wgsl.json torch.json  # combined table with ratios
"""
import argparse
import json
import statistics
import sys
import time

SQUARE = [1024, 2048, 4096, 8192]
# label -> (op, batch, M, K, N, transB, sharedB); labels match lib/cli/bench.ts (M×K×N).
AWKWARD = {
    "130×256×512": ("matmul", 1, 130, 256, 512, False, False),
    "130×256×512ᵀ": ("linear", 1, 130, 256, 512, True, True),
    "8×808×1024×2048": ("bmm", 8, 808, 1024, 2048, False, False),
    "8×808×1024×2048ᵀ": ("linear", 8, 808, 1024, 2048, True, True),
    # conv2d's GEMM in tiny64's tokenizer (batch 32): 64 channels at 64², 128 at 32².
    "64×576×131072": ("conv", 1, 64, 576, 131072, False, False),
    "128×1152×32768": ("conv", 1, 128, 1152, 32768, False, False),
}


def time_cuda(torch, fn, repeats, target_ms=200.0, max_iters=2000):
    """Median ms per call of fn, timed with CUDA events over enough calls to fill target_ms."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    fn()
    end.record()
    end.synchronize()
    est = max(start.elapsed_time(end) / 2, 1e-3)
    iters = max(2, min(max_iters, int(target_ms / est) + 1))
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return statistics.median(times)


def measure(args):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device("cuda")
    results = []

    def add(op, shape, dtype, ms, value, unit):
        r = dict(op=op, shape=shape, dtype=dtype, kernel="torch", ms=ms, value=value, unit=unit)
        results.append(r)
        print(f"  {op:8} {shape:22} {dtype:5} {ms:10.4f} ms  {value:10.1f} {unit}", flush=True)

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    shapes = {f"{n}×{n}×{n}": ("matmul", 1, n, n, n, False, False) for n in args.sizes}
    shapes.update(AWKWARD)
    for label, (op, batch, M, K, N, transB, sharedB) in shapes.items():
        for name, dt in dtypes.items():
            a = torch.randn((batch, M, K) if batch > 1 else (M, K), device=dev, dtype=dt)
            b = torch.randn((N, K) if transB else (K, N), device=dev, dtype=dt)
            if batch > 1 and not sharedB:
                b = torch.randn((batch, K, N), device=dev, dtype=dt)
            if op == "linear":
                fn = lambda: torch.nn.functional.linear(a, b)  # noqa: E731
            elif op == "bmm":
                fn = lambda: torch.bmm(a, b)  # noqa: E731
            else:
                fn = lambda: torch.matmul(a, b)  # noqa: E731
            # A sanity check against float64, so a broken setup can't pass for a fast one.
            ref = fn().double()
            exact = (a.double() @ (b.double().transpose(-1, -2) if transB else b.double()))
            err = ((ref - exact).norm() / exact.norm()).item()
            tol = 1e-5 if name == "fp32" else 2e-2
            if not err <= tol:
                sys.exit(f"torch {label} {name}: relative error {err:.2e} > {tol}")
            ms = time_cuda(torch, fn, args.repeats)
            add(op, label, name, ms, 2 * batch * M * N * K / ms / 1e6, "GFLOP/s")
            del a, b, ref, exact
            torch.cuda.empty_cache()

    n = 1 << 26
    x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
    z = torch.empty_like(x)
    ms = time_cuda(torch, lambda: torch.add(x, y, out=z), args.repeats)
    add("add", str(n), "fp32", ms, 12 * n / ms / 1e6, "GB/s")

    # Launch rate, host cost included (as vmambar's: record + submit + finish).
    s, t = torch.randn(256, device=dev), torch.randn(256, device=dev)
    times = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4000):
            torch.add(s, t)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000 / 4000)
    ms = statistics.median(times)
    add("dispatch", "add 256", "fp32", ms, 1000 / ms, "/s")
    doc = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, results=results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


def best(results, op, shape, dtypes):
    vals = [r["value"] for r in results
            if r["op"] == op and r["shape"] == shape and r["dtype"] in dtypes
            and r["value"] == r["value"]]
    return max(vals) if vals else None


def compare(wgsl_path, torch_path):
    w, t = json.load(open(wgsl_path)), json.load(open(torch_path))
    wr, tr = w["results"], t["results"]
    print(f"\nWGSL device: {w['device']}   PyTorch device: {t['device']} (torch {t.get('torch')})")
    fmt = lambda v: "-" if v is None else (f"{v / 1000:.2f}" if v >= 100 else f"{v:.3f}")  # noqa
    ratio = lambda a, b: "-" if a is None or b is None else f"{100 * a / b:.0f}%"  # noqa
    print("\nper kernel variant (TFLOP/s, and its share of PyTorch fp32)")
    for r in wr:
        if r["unit"] != "GFLOP/s":
            continue
        t32 = best(tr, r["op"], r["shape"], ["fp32"])
        print(f"  {r['op']:7} {r['shape']:20} {r['dtype']:4} {r['kernel']:28} {fmt(r['value']):>7}"
              f"  {ratio(r['value'], t32):>5}")
    for op, unit in (("add", "GB/s"), ("dispatch", "/s")):
        a = next((r for r in wr if r["op"] == op), None)
        b = next((r for r in tr if r["op"] == op), None)
        if a and b:
            print(f"\n{op} {a['shape']}: WGSL {a['value']:.1f} {unit}, PyTorch {b['value']:.1f} {unit}"
                  f" ({ratio(a['value'], b['value'])})")

    print("\nmatmul, TFLOP/s (shape M×K×N; ratio = WGSL / PyTorch)")
    rows = [["op", "shape", "WGSL f32", "torch fp32", "f32/fp32", "WGSL f16", "torch bf16",
             "torch fp16", "f16/fp32", "f16/bf16"]]
    seen = []
    for r in wr:
        key = (r["op"], r["shape"])
        if r["unit"] != "GFLOP/s" or key in seen:
            continue
        seen.append(key)
        w32, w16 = best(wr, *key, ["f32"]), best(wr, *key, ["f16"])
        t32, tb, th = (best(tr, *key, [d]) for d in ("fp32", "bf16", "fp16"))
        rows.append([key[0], key[1], fmt(w32), fmt(t32), ratio(w32, t32), fmt(w16), fmt(tb),
                     fmt(th), ratio(w16, t32), ratio(w16, tb)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", help="write results here")
    p.add_argument("--sizes", default=",".join(map(str, SQUARE)), help="square sizes")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compare", nargs=2, metavar=("WGSL_JSON", "TORCH_JSON"))
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    measure(args)


if __name__ == "__main__":
    main()
