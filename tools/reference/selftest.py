"""Self-test of the PyTorch reference (vmambar.py) and its judge (check.py), without the TypeScript
side: properties that a wrong reference would break, on a small random model of each arch.

  safetensors   write → read round trip (F32, F16, I32, F64, odd sizes, empty), header layout,
                and the `safetensors` package reading ours / we reading its, where it is installed
  phi_index     against numpy's linspace + argmin for every (k, K, n ≤ 6), ties included
  rope          table values by hand, adjacent pairs, the 2D halves, relative-position invariance
  attention     against a per-query loop; a query that sees no key gives 0
  scan          the loop against the closed form Σ_τ exp(A·Σ_(τ,t] Δ) Δ_τ B_τ u_τ · C_t; the
                doubling scan in chunks from a carried state against the loop
  generate      scale by scale with carried states and KV caches, guided and not: the full pass
                over the drawn indices gives the logits each scale saw; top-k 1 is the argmax
  mamba         a PAD prefix changes nothing after it (state carried through) and outputs 0;
                chunks carrying the conv and SSM states (generation) give the whole's outputs
  model (hybrid and transformer, float64):
    names       every parameter name and shape as the case file's (DESIGN §4, the brief's list)
    pad         junk in the PAD embedding row leaves the logits unchanged
    causal      changing scale k's indices changes no logit of scales ≤ k, but does change k+1's
    batch       each row alone gives the same logits as in the batch; text reaches the logits
    loss        equals −mean log_softmax at the indices; an all-PAD caption gives finite values
    gradients   autograd against central differences (Richardson) along a random direction, for
                every parameter; checkpointed blocks give the same gradients
    float32     the f32 reference within 1e-4 of f64
  check.py      on a case written here (the "WGSL" values = PyTorch f32): PASS; a gradient off by
                1% or logits off by 1e-2: FAIL

  /usr/bin/python3 tools/reference/selftest.py
  python3 tools/reference/selftest.py --write-case case.safetensors --preset base256 --batch 4
      (a case at a real preset, its "WGSL" values from PyTorch f32, to try check.py's memory and
      time on a GPU before dump_case.ts exists)
"""
import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402
from vmambar import (BOS, EOS, PAD, Mamba, VMambAR, attend, block_causal_visibility,  # noqa: E402
                     gsa_calls, parallel_scan, phi_index, read_safetensors, rope_table, rotate,
                     scale_positions, selective_scan, text_positions, write_safetensors)

SMALL = dict(d=32, n_layers=4, gsa_every=2, heads=2, text_layers=1, text_length=8,
             scales=[1, 2, 3], vocab=17, cvae=4, d_state=16, d_conv=4, expand=2, quant_resi=0.5,
             share_quant_resi=4)
PRESETS = {
    "tiny64": dict(d=256, n_layers=12, gsa_every=3, heads=4, text_layers=2, text_length=96,
                   scales=[1, 2, 3, 4, 6, 8], vocab=512, cvae=16),
    "base256": dict(d=1024, n_layers=24, gsa_every=6, heads=16, text_layers=4, text_length=128,
                    scales=[1, 2, 3, 4, 5, 6, 8, 10, 13, 16], vocab=4096, cvae=32),
}

failures = []


def expect(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def maxdiff(a, b):
    return float((a - b).abs().max())


# ----------------------------------------------------------------------------- random instances

def random_model(cfg, seed, dtype=torch.float64):
    """Weights at scales where every path matters: Δ = softplus(dt_proj) in about [0.05, 1] and
    A in [−3.5, −0.5] so the scan forgets measurably, norms near 1, Linear ~ N(0, 1/fan_in)."""
    torch.manual_seed(seed)
    model = VMambAR(cfg).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(0.5 + 3 * torch.rand_like(p)))
            elif name.endswith("dt_proj.bias"):
                dt = 0.05 + 0.95 * torch.rand_like(p)
                p.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹
            elif name.endswith("mamba.D") or "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "embed" in name or "embedding" in name or p.dim() == 1:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel()))
    return model


def random_inputs(cfg, seed, B=4):
    """Left-padded captions: 3 PADs, none, the null caption [BOS, EOS], and all PAD (an edge the
    data never makes: every text query then sees no key)."""
    g = torch.Generator().manual_seed(seed)
    T, L = cfg["text_length"], sum(pn * pn for pn in cfg["scales"])
    rows = []
    for b in range(B):
        pads = (3, 0, T - 2, T)[b % 4]
        words = torch.randint(0, 256, (max(T - pads - 2, 0),), generator=g).tolist()
        rows.append([PAD] * pads + ([BOS] + words + [EOS] if pads < T else []))
    text_ids = torch.tensor(rows, dtype=torch.int32)
    indices = torch.randint(0, cfg["vocab"], (B, L), generator=g, dtype=torch.int32)
    return text_ids, indices


def scale_slices(scales):
    out, start = [], 0
    for pn in scales:
        out.append(slice(start, start + pn * pn))
        start += pn * pn
    return out


# ------------------------------------------------------------------------------------ the parts

def test_safetensors():
    print("safetensors")
    g = torch.Generator().manual_seed(1)
    tensors = {"a.f32": torch.randn(3, 5, generator=g),
               "b.f16": torch.randn(7, generator=g).half(),  # 14 bytes: what follows is unaligned
               "c.i32": torch.randint(-2**31, 2**31 - 1, (2, 3), generator=g, dtype=torch.int32),
               "d.one": torch.tensor([1.5]), "e.empty": torch.zeros(0, 4),
               "f.f64": torch.randn(2, 2, generator=g, dtype=torch.float64), "g.scalar": torch.tensor(2.0)}
    meta = {"format": "vmambar", "config": json.dumps(SMALL)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.safetensors")
        write_safetensors(path, tensors, meta)
        back, meta_back = read_safetensors(path)
        expect(meta_back == meta, "metadata round trip")
        expect(list(back) == list(tensors) and all(
            back[k].dtype == t.dtype and back[k].shape == t.shape and torch.equal(back[k], t)
            for k, t in tensors.items()), "tensors round trip: names, dtypes, shapes, bits")
        raw = open(path, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        ends = [header[k]["data_offsets"] for k in tensors]
        contiguous = all(a[1] == b[0] for a, b in zip(ends, ends[1:])) and ends[0][0] == 0
        expect((8 + n) % 8 == 0 and contiguous and 8 + n + ends[-1][1] == len(raw),
               "header padded to 8 bytes, data contiguous, file exactly that long")
        only = read_safetensors(path, keep=lambda k: k.startswith("c."))[0]
        expect(list(only) == ["c.i32"], "read with a name filter")
        try:
            from safetensors.torch import load_file, save_file
        except ImportError:
            print("  (safetensors package not installed: cross-check skipped)")
            return
        theirs = load_file(path)
        expect(all(torch.equal(theirs[k], t) for k, t in tensors.items()), "safetensors reads ours")
        save_file({k: t for k, t in tensors.items()}, path, metadata=meta)
        ours = read_safetensors(path)[0]
        expect(all(torch.equal(ours[k], t) for k, t in tensors.items()), "we read safetensors'")


def test_phi_index():
    print("phi_index")
    try:
        import numpy as np
    except ImportError:
        print("  (numpy not installed: only the known tie checked)")
        np = None
    if np is not None:
        bad = []
        for n in range(1, 7):
            lo = 1 / 3 / n if n == 4 else 1 / 2 / n
            ticks = np.linspace(lo, 1 - lo, n)
            for K in range(1, 17):
                for k in range(K):
                    want = int(np.argmin(np.abs(ticks - (k / (K - 1) if K > 1 else 0.0))))
                    if phi_index(k, K, n) != want:
                        bad.append((k, K, n))
        expect(not bad, f"matches numpy for n ≤ 6, K ≤ 16 {bad[:3] if bad else ''}")
    expect(phi_index(7, 10, 4) == 3, "the exact tie at k = 7 of K = 10 goes to φ 3, as numpy")
    expect([phi_index(k, 6, 4) for k in range(6)] == [0, 0, 1, 2, 3, 3], "tiny64's 6 scales")


def test_rope():
    print("rope")
    cos, sin = rope_table(text_positions(5), 8)
    f = [10000 ** (-2 * j / 8) for j in range(4)]
    expect(abs(float(cos[3, 1]) - math.cos(3 * f[1])) < 1e-15 and
           abs(float(sin[4, 3]) - math.sin(4 * f[3])) < 1e-15, "1D table: pos·10000^(−2j/Dh)")
    x = torch.zeros(1, 5, 1, 8, dtype=torch.float64)
    x[..., 2] = 1  # pair j = 1, first dim
    y = rotate(x, cos, sin)[0, :, 0]
    want = torch.zeros(5, 8, dtype=torch.float64)
    want[:, 2] = torch.tensor([math.cos(p * f[1]) for p in range(5)], dtype=torch.float64)
    want[:, 3] = torch.tensor([math.sin(p * f[1]) for p in range(5)], dtype=torch.float64)
    expect(maxdiff(y, want) < 1e-15, "pairs are adjacent dims (2j, 2j+1), turned counter-clockwise")
    coords = scale_positions([1, 2], 1)
    expect(coords == [[0, 0], [1, 1], [0.5, 0.5], [0.5, 1.5], [1.5, 0.5], [1.5, 1.5]],
           "2D coordinates: text (0, 0), (r+0.5)·P/pn")
    cos2, sin2 = rope_table(coords, 8)  # m = 4: dims 0-3 turn with the row, 4-7 with the column
    x = torch.zeros(1, 6, 1, 8, dtype=torch.float64)
    x[..., 6] = 1  # the column half's pair j = 1
    y = rotate(x, cos2, sin2)[0, :, 0]
    col = torch.tensor([c for _, c in coords], dtype=torch.float64) * 10000 ** (-2 / 4)
    expect(maxdiff(y[:, 6], col.cos()) < 1e-15 and maxdiff(y[:, 7], col.sin()) < 1e-15
           and float(y[:, :6].abs().max()) == 0 and maxdiff(y[0], x[0, 0, 0]) == 0,
           "2D: the second half turns with the column, pairs by 10000^(−2j/m); text unturned")
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 1, 1, 16, generator=g, dtype=torch.float64).unbind(0)
    c, s = rope_table(text_positions(40), 16)

    def dot(p, r):  # q at position p · k at position r
        return float((rotate(q, c[p:p + 1], s[p:p + 1]) * rotate(k, c[r:r + 1], s[r:r + 1])).sum())

    expect(abs(dot(7, 3) - dot(36, 32)) < 1e-12 and abs(dot(7, 3) - dot(3, 7)) > 1e-6,
           "1D: q·k depends on the position difference only")


def test_attention():
    print("attention")
    g = torch.Generator().manual_seed(4)
    B, S, H, Dh = 2, 6, 2, 4
    q, k, v = (torch.randn(B, S, H, Dh, generator=g, dtype=torch.float64) for _ in range(3))
    visible = torch.rand(B, S, S, generator=g) < 0.6
    visible[1, 2] = False
    out = attend(q, k, v, visible)
    want = torch.zeros_like(out)
    for b in range(B):
        for h in range(H):
            for i in range(S):
                keys = [j for j in range(S) if visible[b, i, j]]
                if not keys:
                    continue
                w = torch.softmax(torch.stack([q[b, i, h] @ k[b, j, h] for j in keys]) / 2, 0)
                want[b, i, h] = sum(wj * v[b, j, h] for wj, j in zip(w, keys))
    vis = block_causal_visibility([1, 2], torch.tensor([[False, True]])).int()[0]
    want_vis = torch.tensor([[0, 1, 0, 0, 0, 0, 0],   # text: non-PAD text
                             [0, 1, 0, 0, 0, 0, 0],
                             [0, 1, 1, 0, 0, 0, 0],   # scale 0: text and itself
                             *[[0, 1, 1, 1, 1, 1, 1]] * 4], dtype=torch.int32)  # scale 1: all
    expect(torch.equal(vis, want_vis), "block-causal mask: text sees non-PAD text, scale k ≤ k")
    expect(maxdiff(out, want) < 1e-14, "masked softmax(q·k/√Dh)·v, per-query loop")
    expect(float(out[1, 2].abs().max()) == 0, "a query that sees no key outputs 0")
    qg = q.clone().requires_grad_()
    attend(qg, k, v, visible).sum().backward()
    expect(bool(torch.isfinite(qg.grad).all()) and float(qg.grad[1, 2].abs().max()) == 0,
           "and passes a finite, zero gradient")


def test_scan():
    print("selective scan")
    g = torch.Generator().manual_seed(5)
    B, S, D, N = 2, 9, 3, 4
    u = torch.randn(B, S, D, generator=g, dtype=torch.float64)
    delta = torch.rand(B, S, D, generator=g, dtype=torch.float64)
    A = -0.5 - 2 * torch.rand(D, N, generator=g, dtype=torch.float64)
    Bm, Cm = torch.randn(2, B, S, N, generator=g, dtype=torch.float64).unbind(0)
    y = selective_scan(u, delta, A, Bm, Cm)
    cs = delta.cumsum(1)  # [B, S, D]
    gap = cs[:, :, None, :] - cs[:, None, :, :]  # [B, t, τ, D] = Σ_(τ, t] Δ
    decay = torch.exp(gap[..., None] * A) * torch.ones(S, S, dtype=torch.float64).tril()[..., None, None]
    want = torch.einsum("btsdn,bsd,bsn,btn->btd", decay, delta * u, Bm, Cm)
    expect(maxdiff(y, want) < 1e-12, "loop = closed form")
    # By doubling, in two chunks (the second from the first's last state) = the loop.
    y1, s1 = parallel_scan(u[:, :5], delta[:, :5], A, Bm[:, :5], Cm[:, :5], u.new_zeros(B, D, N))
    y2, _ = parallel_scan(u[:, 5:], delta[:, 5:], A, Bm[:, 5:], Cm[:, 5:], s1)
    expect(maxdiff(torch.cat([y1, y2], 1), y) < 1e-12, "doubling in chunks from a state = the loop")


def test_mamba():
    print("mamba")
    torch.manual_seed(6)
    mamba = Mamba(16, 16, 4, 2).double()
    with torch.no_grad():
        mamba.dt_proj.bias.uniform_(-1, 1)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    m = torch.ones(2, 11, 1, dtype=torch.float64)
    m[:, :3] = 0
    x_junk = x.clone()
    x_junk[:, :3] = 100 * torch.randn(2, 3, 16, dtype=torch.float64)
    y = mamba(x_junk, m)
    y_short = mamba(x[:, 3:], torch.ones(2, 8, 1, dtype=torch.float64))
    expect(maxdiff(y[:, 3:], y_short) < 1e-12, "a PAD prefix (junk inputs) changes nothing after it")
    expect(float(y[:, :3].abs().max()) == 0, "PAD positions output 0")
    # Chunks of 4, 1 and 6 positions (fewer than d_conv − 1 = 3 in one) carrying the conv and SSM
    # states give the whole sequence's outputs.
    state, parts, at = {}, [], 0
    for n in (4, 1, 6):
        parts.append(mamba(x_junk[:, at:at + n], m[:, at:at + n], state))
        at += n
    expect(maxdiff(torch.cat(parts, 1), y) < 1e-12, "chunks with carried states = the whole")


# ------------------------------------------------------------------------------------ the model

def test_generate(arch):
    """Generation's carried states, KV caches and per-scale inputs against the full pass: the full
    forward over the indices it drew gives the logits it saw, scale by scale."""
    print(f"generate ({arch})")
    cfg = dict(SMALL, arch=arch)
    model = random_model(cfg, 21)
    text_ids, _ = random_inputs(cfg, 22)
    for guidance in (0.0, 1.5):
        trace = []
        g = torch.Generator().manual_seed(23)
        idx = model.generate(text_ids, cfg=guidance, temperature=1.0, top_k=5, generator=g,
                             trace=trace)
        L = sum(pn * pn for pn in cfg["scales"])
        expect(tuple(idx.shape) == (text_ids.shape[0], L) and int(idx.min()) >= 0
               and int(idx.max()) < cfg["vocab"], f"cfg {guidance}: indices [B, L] in the vocabulary")
        logits, _ = model(text_ids, idx)
        seen = torch.cat([t.reshape(t.shape[0], -1, cfg["vocab"]) for t in trace], 1)
        expect(maxdiff(seen, logits) < 1e-9,
               f"cfg {guidance}: each scale's logits = the full pass's ({maxdiff(seen, logits):.1e})")
    # top-k 1 picks the argmax of the guided logits whatever the temperature.
    trace = []
    idx = model.generate(text_ids, cfg=0.0, temperature=5.0, top_k=1, trace=trace)
    want = torch.cat([t.argmax(-1).reshape(t.shape[0], -1) for t in trace], 1)
    expect(torch.equal(idx, want), "top-k 1 draws the argmax")


def expected_shapes(cfg):
    """The case file's names and shapes, written out from the spec independently of the model."""
    d, di, n, r = cfg["d"], cfg["expand"] * cfg["d"], cfg["d_state"], math.ceil(cfg["d"] / 16)
    V, C, K = cfg["vocab"], cfg["cvae"], len(cfg["scales"])
    s = {"text.embed.weight": [259, d], "text.norm.weight": [d], "sos": [d],
         "word_embed.weight": [d, C], "word_embed.bias": [d], "lvl_embed.weight": [K, d],
         "norm.weight": [d], "head.weight": [V, d], "head.bias": [V],
         "tokenizer.quantize.embedding.weight": [V, C]}
    for m in range(cfg["share_quant_resi"]):
        s[f"tokenizer.quantize.quant_resi.qresi_ls.{m}.weight"] = [C, C, 3, 3]
        s[f"tokenizer.quantize.quant_resi.qresi_ls.{m}.bias"] = [C]

    def transformer(prefix):
        s.update({f"{prefix}.attn_norm.weight": [d], f"{prefix}.mlp_norm.weight": [d],
                  f"{prefix}.mlp.gate_proj.weight": [4 * d, d], f"{prefix}.mlp.up_proj.weight": [4 * d, d],
                  f"{prefix}.mlp.down_proj.weight": [d, 4 * d]})
        s.update({f"{prefix}.attn.{p}_proj.weight": [d, d] for p in "qkvo"})

    for i in range(cfg["text_layers"]):
        transformer(f"text.layers.{i}")
    for i in range(cfg["n_layers"]):
        if cfg["arch"] == "transformer":
            transformer(f"blocks.{i}")
            continue
        b = f"blocks.{i}"
        s.update({f"{b}.norm.weight": [d], f"{b}.mamba.in_proj.weight": [2 * di, d],
                  f"{b}.mamba.conv1d.weight": [di, 1, cfg["d_conv"]], f"{b}.mamba.conv1d.bias": [di],
                  f"{b}.mamba.x_proj.weight": [r + 2 * n, di], f"{b}.mamba.dt_proj.weight": [di, r],
                  f"{b}.mamba.dt_proj.bias": [di], f"{b}.mamba.A_log": [di, n], f"{b}.mamba.D": [di],
                  f"{b}.mamba.out_proj.weight": [d, di]})
    if cfg["arch"] == "hybrid":
        s.update({"gsa.norm_in.weight": [2 * d], "gsa.attn.o_proj.weight": [d, 2 * d],
                  "gsa.norm_mlp.weight": [d], "gsa.mlp.gate_proj.weight": [4 * d, d],
                  "gsa.mlp.up_proj.weight": [4 * d, d], "gsa.mlp.down_proj.weight": [d, 4 * d]})
        s.update({f"gsa.attn.{p}_proj.weight": [2 * d, 2 * d] for p in "qkv"})
        s.update({f"gsa_out.{j}.weight": [d, d]
                  for j in range(len(gsa_calls(cfg["n_layers"], cfg["gsa_every"])))})
    return s


def var_inputs(model, indices):
    """VAR's VectorQuantizer2.idxBl_to_var_input and VAR.forward's input embedding, as VAR writes
    them (F.interpolate 'area', PhiPartiallyShared[si / (SN − 1)]), for comparison."""
    q, pns, r = model.tokenizer.quantize, model.scales, model.cfg["quant_resi"]
    B, C, SN, H = indices.shape[0], model.cfg["cvae"], len(pns), pns[-1]
    phis = q.quant_resi.qresi_ls
    spans = scale_slices(pns)
    f_hat = torch.zeros(B, C, H, H, dtype=torch.float64)
    next_scales = []
    for si in range(SN - 1):
        h = q.embedding(indices[:, spans[si]].long()).transpose(1, 2).reshape(B, C, pns[si], pns[si])
        h = F.interpolate(h, size=(H, H), mode="bicubic")
        f_hat = f_hat + h * (1 - r) + phis[phi_index(si, SN, len(phis))](h) * r
        z = F.interpolate(f_hat, size=(pns[si + 1], pns[si + 1]), mode="area")
        next_scales.append(z.reshape(B, C, -1).transpose(1, 2))
    x = torch.cat([model.sos.expand(B, 1, -1), model.word_embed(torch.cat(next_scales, 1))], 1)
    lvl = torch.cat([torch.full((pn * pn,), k) for k, pn in enumerate(pns)])
    return x + model.lvl_embed(lvl)


def directional_fd(model, name, p, v, text_ids, indices, eps=1e-3):
    """d loss / d p along v by central differences, Richardson-extrapolated (error O(eps⁴))."""
    def loss_at(t):
        with torch.no_grad():
            p.add_(t * v)
            loss = float(model(text_ids, indices)[1])
            p.sub_(t * v)
        return loss

    def central(h):
        return (loss_at(h) - loss_at(-h)) / (2 * h)

    return (4 * central(eps / 2) - central(eps)) / 3


def test_model(arch):
    print(f"model ({arch})")
    cfg = dict(SMALL, arch=arch)
    model = random_model(cfg, seed=10)
    text_ids, indices = random_inputs(cfg, seed=11)
    want = expected_shapes(model.cfg)
    have = {k: list(t.shape) for k, t in model.state_dict().items()}
    expect(have == want, f"{len(want)} names and shapes as the case file's"
           + ("" if have == want else f": extra {sorted(set(have) - set(want))[:3]}, "
              f"missing {sorted(set(want) - set(have))[:3]}"))
    with torch.no_grad():
        logits, loss = model(text_ids, indices)
        tiny = 1e-12 * float(logits.abs().max())

        saved = model.text.embed.weight[PAD].clone()
        model.text.embed.weight[PAD] = 50 * torch.randn_like(saved)
        junk = model(text_ids, indices)[0]
        model.text.embed.weight[PAD] = saved
        expect(maxdiff(junk, logits) <= tiny, "junk PAD embeddings leave the logits unchanged")

        spans, K = scale_slices(model.scales), len(model.scales)
        ok_same, ok_next = True, True
        for k in range(K):
            other = indices.clone()
            shift = torch.randint(1, cfg["vocab"], other[:, spans[k]].shape, dtype=torch.int32)
            other[:, spans[k]] = (other[:, spans[k]] + shift) % cfg["vocab"]  # every code differs
            changed = model(text_ids, other)[0]
            upto = spans[k].stop
            ok_same &= maxdiff(changed[:, :upto], logits[:, :upto]) <= tiny
            if k + 1 < K:
                ok_next &= maxdiff(changed[:, spans[k + 1]], logits[:, spans[k + 1]]) > 1e-6
        expect(ok_same, "changing scale k's indices changes no logit of scales ≤ k (last scale: none)")
        expect(ok_next, "... and does change scale k+1's logits")

        alone = torch.cat([model(text_ids[b:b + 1], indices[b:b + 1])[0] for b in range(len(text_ids))])
        expect(maxdiff(alone, logits) <= 1e-10 * float(logits.abs().max()), "each row alone = batched")
        other_text = text_ids.clone()
        other_text[0, -2] = (other_text[0, -2] + 1) % 256  # a byte of row 0's caption
        moved = model(other_text, indices)[0]
        expect(maxdiff(moved[0, :1], logits[0, :1]) > 1e-6 and maxdiff(moved[1:], logits[1:]) == 0,
               "the caption reaches its own row's first scale, and no other row")

        var = var_inputs(model, indices)
        expect(maxdiff(model.image_inputs(indices), var) <= 1e-12 * float(var.abs().max()),
               "image inputs = VAR's idxBl_to_var_input → word_embed, with sos and lvl_embed")

        ce = -torch.log_softmax(logits, -1).gather(-1, indices.long()[..., None]).mean()
        expect(abs(float(ce) - float(loss)) < 1e-12, "loss = mean cross-entropy at the indices")
        expect(bool(torch.isfinite(logits[3]).all()), "an all-PAD caption gives finite logits")

    model.zero_grad()
    model(text_ids, indices)[1].backward()
    grads = {n: p.grad.clone() for n, p in model.model_parameters()}
    expect(all(bool(torch.isfinite(g).all()) for g in grads.values()), "gradients finite")
    g = torch.Generator().manual_seed(12)
    worst, worst_name, flat = 0.0, "", []
    for name, p in model.model_parameters():
        v = torch.randn(p.shape, generator=g, dtype=p.dtype)
        v /= v.norm()
        fd = directional_fd(model, name, p.data, v, text_ids, indices)
        an = float((grads[name] * v).sum())
        err = abs(fd - an) / max(abs(an), 1e-8)
        if abs(an) < 1e-10:
            flat.append(name)
        if err > worst:
            worst, worst_name = err, name
    expect(worst < 1e-6, f"autograd = central differences for all {len(grads)} parameters "
           f"(worst relative gap {worst:.1e}, {worst_name})")
    expect(not flat, f"every parameter's directional derivative is measurable {flat[:3]}")

    model.checkpoint = True
    model.zero_grad()
    model(text_ids, indices)[1].backward()
    model.checkpoint = False
    gap = max(maxdiff(p.grad, grads[n]) / max(float(grads[n].abs().max()), 1e-30)
              for n, p in model.model_parameters())
    expect(gap < 1e-12, f"checkpointed blocks give the same gradients ({gap:.1e})")

    m32 = VMambAR(cfg).float()
    m32.load_state(model.state_dict())
    with torch.no_grad():
        l32 = m32(text_ids, indices)[0]
    expect(maxdiff(l32.double(), logits) / float(logits.abs().max()) < 1e-4, "float32 within 1e-4 of f64")


# ------------------------------------------------------------------------------- check.py itself

def write_case(path, cfg, batch, seed, device):
    """A case file as dump_case.ts writes it, with PyTorch f32 standing in for WGSL."""
    model = random_model(cfg, seed, torch.float32).to(device)
    text_ids, indices = random_inputs(cfg, seed + 1, batch)
    model.checkpoint = True
    logits, loss = model(text_ids.to(device), indices.to(device))
    loss.backward()
    tensors = {k: t.cpu() for k, t in model.state_dict().items()}
    tensors.update({"input.text_ids": text_ids, "input.indices": indices,
                    "out.logits": logits.detach().cpu(), "out.logits_incremental": logits.detach().cpu(),
                    "out.loss": loss.detach().cpu().reshape(1)})
    tensors.update({f"grad.{n}": p.grad.cpu() for n, p in model.model_parameters()})
    write_safetensors(path, tensors, {"format": "vmambar", "kind": "case", "config": json.dumps(cfg)})
    return tensors


def test_check():
    print("check.py")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("hybrid", "transformer"):
            path = os.path.join(tmp, f"case-{arch}.safetensors")
            tensors = write_case(path, dict(SMALL, arch=arch), 3, 20, "cpu")
            table = io.StringIO()
            with contextlib.redirect_stdout(table):
                rc = check.main(["--device", "cpu", path])
            if arch == "hybrid":
                print("    " + table.getvalue().strip().replace("\n", "\n    "))
            expect(rc == 0, f"{arch}: PyTorch f32 as the WGSL side: all PASS")
            name = "grad.blocks.1.mamba.A_log" if arch == "hybrid" else "grad.blocks.1.attn.k_proj.weight"
            for key, change, what in (
                    (name, lambda t: t * 1.01, f"{name} off by 1%"),
                    ("out.logits", lambda t: t + 1e-2 * t.abs().max(), "logits off by 1e-2")):
                bad = dict(tensors, **{key: change(tensors[key])})
                write_safetensors(path, bad, {"config": json.dumps(dict(SMALL, arch=arch))})
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    rc = check.main(["--device", "cpu", path])
                expect(rc == 1 and "FAIL" in out.getvalue(), f"{arch}: {what}: FAIL")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-case", help="only write a case file at --preset and exit")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny64")
    ap.add_argument("--arch", choices=("hybrid", "transformer"), default="hybrid")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    if args.write_case:
        cfg = dict(SMALL, **PRESETS[args.preset], arch=args.arch)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        write_case(args.write_case, cfg, args.batch, 30, device)
        print(f"wrote {args.write_case} ({args.preset}, {args.arch}, batch {args.batch})")
        return 0
    print(f"PyTorch {torch.__version__}")
    test_safetensors()
    test_phi_index()
    test_rope()
    test_attention()
    test_scan()
    test_mamba()
    test_model("hybrid")
    test_model("transformer")
    test_generate("hybrid")
    test_generate("transformer")
    test_check()
    print(f"\n{len(failures)} failure(s)" + (": " + "; ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
