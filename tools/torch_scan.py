#!/usr/bin/env python3
"""PyTorch baselines for the selective scan at the base256 shapes, beside tools/bench_scan.ts.

The baseline is a parallel (Hillis-Steele, log2 L steps) associative scan written with PyTorch
ops in fp32, forward and forward+backward through autograd. It also checks the WGSL scan's
dumped output against a float64 sequential scan, and prints the ratio table.

  python3 tools/torch_scan.py [--dump scan_dump.safetensors] [--wgsl scan.json]
"""
import argparse
import json

import torch
from torch_bench import time_cuda  # same directory


def parallel_scan(u, delta, A, B, C):
    """y_t = C_t·h_t, h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, by doubling over [B, L, D, N]."""
    a = torch.exp(delta.unsqueeze(-1) * A)  # [B, L, D, N]
    b = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    L = u.shape[1]
    step = 1
    while step < L:
        b = torch.cat([b[:, :step], a[:, step:] * b[:, :-step] + b[:, step:]], dim=1)
        a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], dim=1)
        step *= 2
    return (b * C.unsqueeze(2)).sum(-1)


def sequential_scan(u, delta, A, B, C):
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=u.dtype, device=u.device)
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump")
    ap.add_argument("--wgsl")
    args = ap.parse_args()
    dev = "cuda"
    if args.dump:
        from safetensors.torch import load_file

        d = load_file(args.dump)
        x = [d[k].double().to(dev) for k in ("u", "delta", "A", "B", "C")]
        ref = sequential_scan(*x)
        par = parallel_scan(*[t.float() for t in x]).double()
        rel = lambda a: ((a - ref).norm() / ref.norm()).item()  # noqa: E731
        print(f"cross-check: WGSL y vs float64 sequential: {rel(d['y'].double().to(dev)):.2e}; "
              f"PyTorch parallel fp32 vs float64: {rel(par):.2e}")

    Bn, L, D, N = 8, 808, 2048, 16
    g = torch.Generator(device=dev).manual_seed(0)
    u = torch.randn(Bn, L, D, device=dev, generator=g, requires_grad=True)
    delta = (0.001 + 0.1 * torch.rand(Bn, L, D, device=dev, generator=g)).requires_grad_()
    A = (-torch.arange(1, N + 1, device=dev, dtype=torch.float32)).repeat(D, 1).requires_grad_()
    B = torch.randn(Bn, L, N, device=dev, generator=g, requires_grad=True)
    C = torch.randn(Bn, L, N, device=dev, generator=g, requires_grad=True)
    dy = torch.randn(Bn, L, D, device=dev, generator=g)

    def fwd():
        with torch.no_grad():
            parallel_scan(u, delta, A, B, C)

    def fwd_bwd():
        y = parallel_scan(u, delta, A, B, C)
        torch.autograd.grad(y, (u, delta, A, B, C), dy)

    torch_ms = {"scan_fwd": time_cuda(torch, fwd, 5), "scan_fwd_bwd": time_cuda(torch, fwd_bwd, 5)}
    print(f"PyTorch parallel scan fp32 on {torch.cuda.get_device_name()}: "
          f"forward {torch_ms['scan_fwd']:.3f} ms, forward+backward {torch_ms['scan_fwd_bwd']:.3f} ms")
    if args.wgsl:
        w = json.load(open(args.wgsl))["ms"]
        print(f"{'op':<22}{'WGSL ms':>10}{'PyTorch ms':>12}{'speed ratio':>13}")
        for k in ("scan_fwd", "scan_fwd_bwd"):
            print(f"{k:<22}{w[k]:>10.3f}{torch_ms[k]:>12.3f}{torch_ms[k] / w[k]:>12.2f}×")
        print(f"{'conv1d_fwd_bwd':<22}{w['conv_fwd_bwd']:>10.3f}")


if __name__ == "__main__":
    main()
