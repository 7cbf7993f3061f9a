"""PyTorch's time for one tokenizer training step, the baseline of the tokenizer-step target.

The model is tools/var_reference.py's VQVAE (VAR's module tree) at the tiny64 preset of
lib/tokenizer/config.ts (ch 64, ch_mult 1 2 2 4, two res blocks, no attention, Cvae 16, V 512,
scales 1 2 3 4 6 8) or at another width with --ch. One step is what vmambar's TokenizerTrainer
does: the loss of DESIGN §3 (L2 + L1 + VQ loss through the straight-through f_hat), backward, and
a fused AdamW step. Eager mode, timed with CUDA events around --steps back-to-back steps after
warm-up, best of --rounds; three modes in one run: fp32 with TF32 off, fp32 with TF32 on, bf16
autocast (the quantizer's
nearest-code search in fp32).
Run: python3 tools/torch_tokenizer_step.py [--batch 32] [--ch 64] [--steps 20] [--json FILE]
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from var_reference import VQVAE, random_images  # noqa: E402


def tiny64(ch):
    return dict(image_size=64, ch=ch, ch_mult=[1, 2, 2, 4], num_res_blocks=2, using_sa=False,
                using_mid_sa=False, z_channels=16, vocab_size=512,
                v_patch_nums=[1, 2, 3, 4, 6, 8], quant_resi=0.5, share_quant_resi=4)


def time_mode(model, opt, images, mode, steps, rounds):
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
            loss = model.train_loss(images)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / steps)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_tokenizer_step: needs a CUDA device")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = VQVAE(tiny64(args.ch)).to(dev).train()
    params = sum(p.numel() for p in model.parameters())
    # The nearest-code search runs in fp32 under autocast too (its addmm_ mixes dtypes otherwise).
    train_forward = model.quantize.train_forward

    def quantize_fp32(z):
        with torch.autocast("cuda", enabled=False):
            return train_forward(z.float())

    model.quantize.train_forward = quantize_fp32
    images = random_images(torch.Generator().manual_seed(1), args.batch, 64).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4,
                            fused=True)
    print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name(dev)}: tiny64 ch "
          f"{args.ch} ({params / 1e6:.2f} M parameters), batch {args.batch}")
    result = dict(torch=torch.__version__, batch=args.batch, ch=args.ch, params=params)
    torch.cuda.reset_peak_memory_stats()
    for mode in ("fp32", "tf32", "bf16"):
        ms = time_mode(model, opt, images, mode, args.steps, args.rounds)
        result[mode] = dict(ms_per_step=ms, images_per_s=args.batch / ms * 1e3)
        print(f"  {mode}: {ms:.2f} ms / step, {args.batch / ms * 1e3:.0f} images/s")
    result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(f"  peak memory {result['peak_mib']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
