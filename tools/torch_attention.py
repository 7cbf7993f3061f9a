#!/usr/bin/env python3
"""PyTorch reference for tools/bench_attention.ts: scaled_dot_product_attention in fp32 (TF32 off)
at the base256 shapes with the same block-causal boolean mask and text padding; CUDA events,
warm-up, median of repeats. With --ours, prints both and the ratio (SDPA time / ours: the
fraction of SDPA's speed that the WGSL kernels reach).

  python3 tools/torch_attention.py --json torch.json [--ours ours.json]
"""
import argparse
import json

from torch_bench import time_cuda  # same directory

SCALES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
TEXT = 128


def pads(batch):
    """PADs at the start of batch row b's caption (as tools/bench_attention.ts)."""
    return [(b * 29) % 100 for b in range(batch)]


def block_causal_mask(torch, batch, device):
    """[B, 1, S, S] bool, True = visible: key level <= query level and the key is not PAD."""
    levels = [0] * TEXT
    for k, pn in enumerate(SCALES):
        levels += [k + 1] * (pn * pn)
    lv = torch.tensor(levels, device=device)
    visible = lv[None, :] <= lv[:, None]  # [S(query), S(key)]
    pos = torch.arange(len(levels), device=device)
    key_ok = torch.stack([pos >= p for p in pads(batch)])  # text PADs are positions < pad count
    return (visible[None] & key_ok[:, None, :])[:, None]


def measure(batch=8, heads=16, head_dim=128):
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device("cuda")
    mask = block_causal_mask(torch, batch, dev)
    S = mask.shape[-1]
    q, k, v = (torch.rand(batch, heads, S, head_dim, device=dev) * 4 - 2 for _ in range(3))
    for t in (q, k, v):
        t.requires_grad_(True)
    dout = torch.rand_like(q) * 4 - 2

    def forward():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def forward_backward():
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.autograd.grad(out, (q, k, v), dout)

    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "shape": {"B": batch, "S": S, "H": heads, "Dh": head_dim},
        "forwardMs": time_cuda(torch, forward, 5),
        "forwardBackwardMs": time_cuda(torch, forward_backward, 5),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--ours", help="tools/bench_attention.ts --json output, for the comparison")
    args = ap.parse_args()
    r = measure()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    print(f"{r['device']}, torch {r['torch']}: SDPA fp32 {r['shape']}")
    if not args.ours:
        print(f"  forward {r['forwardMs']:.3f} ms, forward+backward {r['forwardBackwardMs']:.3f} ms")
        return
    with open(args.ours) as f:
        ours = json.load(f)
    print(f"{'attention':<18}{'WGSL ms':>10}{'SDPA ms':>10}{'SDPA/WGSL':>11}")
    for key, name in (("forwardMs", "forward"), ("forwardBackwardMs", "forward+backward")):
        print(f"{name:<18}{ours[key]:>10.3f}{r[key]:>10.3f}{r[key] / ours[key]:>10.2f}x")


if __name__ == "__main__":
    main()
