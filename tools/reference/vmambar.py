"""VMambAR (DESIGN §4) in plain PyTorch: the judge of the WebGPU model.

The module tree gives the checkpoint's parameter names (`text.layers.0.attn.q_proj.weight`,
`blocks.3.mamba.A_log`, `gsa_out.1.weight`, ...), so a case file written by
tools/reference/dump_case.ts loads with `load_state`. The tokenizer's quantizer sits under
`tokenizer.quantize.` and only builds the image inputs (no gradient). Everything is written the
slow, obvious way: the selective scan is a loop over positions, attention a masked softmax. No
mamba_ssm, no numpy; the safetensors format is read and written here as well, so this runs with
any PyTorch from 1.13 on.

  model = VMambAR(config); model.load_state(tensors)
  logits, loss = model(text_ids, indices)        # [B, L, V], scalar
"""
import ctypes
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

PAD, BOS, EOS, TEXT_VOCAB = 256, 257, 258, 259
ROPE_THETA = 10000.0
EPS = 1e-6


# ----------------------------------------------------------------------------------- safetensors

ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
             "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}


def read_safetensors(path, keep=None):
    """(tensors {name: CPU tensor}, metadata {str: str}); `keep(name)` picks which tensors load.
    Layout: u64-LE header length, JSON header {name: {dtype, shape, data_offsets}}, raw data."""
    assert sys.byteorder == "little", "safetensors data is little-endian"
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        metadata = header.pop("__metadata__", None) or {}
        tensors = {}
        for name, e in header.items():
            if keep is not None and not keep(name):
                continue
            if e["dtype"] not in ST_DTYPES:
                raise ValueError(f"{path}: {name} has dtype {e['dtype']}, not one of {list(ST_DTYPES)}")
            dtype, (start, end) = ST_DTYPES[e["dtype"]], e["data_offsets"]
            count = math.prod(e["shape"])
            if end - start != count * torch.empty(0, dtype=dtype).element_size():
                raise ValueError(f"{path}: {name} has {end - start} bytes for {e['shape']} {e['dtype']}")
            fh.seek(8 + n + start)
            buf = bytearray(fh.read(end - start))  # its own buffer: aligned and writable
            if len(buf) != end - start:
                raise ValueError(f"{path}: {name} is cut short (truncated file?)")
            flat = torch.frombuffer(buf, dtype=dtype) if count else torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(e["shape"])
    return tensors, metadata


def tensor_bytes(t):
    """The raw bytes of a contiguous CPU tensor (no numpy needed, any dtype)."""
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} with string metadata; header padded with spaces to 8 bytes, as the
    reference writer; a temporary file renamed into place."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        data = tensor_bytes(t.detach().cpu().contiguous())
        header[name] = dict(dtype=ST_NAMES[t.dtype], shape=list(t.shape),
                            data_offsets=[offset, offset + len(data)])
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-(8 + len(head)) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for data in blobs:
            fh.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------- configuration

CAMEL = {"nLayers": "n_layers", "gsaEvery": "gsa_every", "textLayers": "text_layers",
         "textLength": "text_length", "dState": "d_state", "dConv": "d_conv",
         "quantResi": "quant_resi", "shareQuantResi": "share_quant_resi"}
DEFAULTS = dict(arch="hybrid", d_state=16, d_conv=4, expand=2, quant_resi=0.5, share_quant_resi=4)


def model_config(config):
    """The config dict with DESIGN's defaults filled in (camelCase keys accepted too)."""
    cfg = dict(DEFAULTS)
    cfg.update({CAMEL.get(k, k): v for k, v in config.items()})
    missing = [k for k in ("d", "n_layers", "gsa_every", "heads", "text_layers", "text_length",
                           "scales", "vocab", "cvae") if k not in cfg]
    if missing:
        raise ValueError(f"model config lacks {', '.join(missing)}")
    return cfg


def gsa_calls(n_layers, gsa_every):
    """Layers i > 0 with i % gsa_every == 0 call the shared GSA, each through its own gsa_out."""
    return [i for i in range(1, n_layers) if i % gsa_every == 0]


# ---------------------------------------------------------------------------------- basic layers

def linear(din, dout):
    return nn.Linear(din, dout, bias=False)


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


class SwiGLU(nn.Module):
    """down(silu(gate(x)) · up(x)), hidden 4d."""

    def __init__(self, d):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = linear(d, 4 * d), linear(d, 4 * d), linear(4 * d, d)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# ------------------------------------------------------------------------------ RoPE and masks

def text_positions(T):
    """1D: text position p → [p]."""
    return [[p] for p in range(T)]


def scale_positions(scales, T):
    """2D: text → (0, 0), no rotation; token (r, c) of a pn×pn scale → ((r+0.5)·P/pn, (c+0.5)·P/pn)."""
    P = scales[-1]
    coords = [[0.0, 0.0] for _ in range(T)]
    for pn in scales:
        coords += [[(r + 0.5) * P / pn, (c + 0.5) * P / pn] for r in range(pn) for c in range(pn)]
    return coords


def rope_table(coords, head_dim):
    """(cos, sin) [S, Dh/2] in float64: axis a owns dims a·m .. a·m+m−1 (m = Dh/A); its pair j,
    dims (2j, 2j+1) within the axis, turns by coord[a]·θ^(−2j/m)."""
    A = len(coords[0])
    m = head_dim // A
    assert m * A == head_dim and m % 2 == 0, f"head dim {head_dim} does not split into {A} axes of pairs"
    freqs = [ROPE_THETA ** (-2 * j / m) for j in range(m // 2)]
    angle = torch.tensor([[c[a] * f for a in range(A) for f in freqs] for c in coords],
                         dtype=torch.float64)
    return angle.cos(), angle.sin()


def rotate(x, cos, sin):
    """x [B, S, H, Dh]: pair (2j, 2j+1) turned by the angle whose (cos, sin) is table[s, j]."""
    cos, sin = cos.to(x)[:, None], sin.to(x)[:, None]
    x0, x1 = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)


def levels(scales, T):
    """Level per position: text 0, scale k's tokens k + 1."""
    out = [0] * T
    for k, pn in enumerate(scales):
        out += [k + 1] * (pn * pn)
    return torch.tensor(out)


def block_causal_visibility(scales, text_valid):
    """[B, S, S] (query, key): a key is visible iff it is not PAD and its level ≤ the query's, i.e.
    text sees non-PAD text, scale k sees non-PAD text and every image key of scales ≤ k."""
    B, T = text_valid.shape
    lv = levels(scales, T).to(text_valid.device)
    key_valid = torch.cat([text_valid, text_valid.new_ones(B, len(lv) - T)], 1)
    return (lv[None, :] <= lv[:, None])[None] & key_valid[:, None, :]


# ------------------------------------------------------------------------------------ attention

def attend(q, k, v, visible):
    """Softmax(q·kᵀ/√Dh) v over q, k, v [B, S, H, Dh] and visible [B, S, S]; a query that sees no
    key outputs 0 (and passes no gradient)."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    vis = visible[:, None]
    scores = scores.masked_fill(~vis, float("-inf")).masked_fill(~vis.any(-1, keepdim=True), 0.0)
    p = torch.softmax(scores, -1) * vis
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


class Attention(nn.Module):
    """q, k, v: Linear din→din split into H heads, RoPE on q and k, o_proj din→dout."""

    def __init__(self, din, heads, dout=None):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = linear(din, din), linear(din, din), linear(din, din)
        self.o_proj = linear(din, dout or din)

    def forward(self, x, visible, rope, cache=None):
        """x [B, S, din]. With `cache` (a dict, generation): x is the next S positions, `rope` and
        `visible` [B, S, S_cached + S] are theirs, and their keys and values are appended."""
        B, S, _ = x.shape
        q, k, v = (p(x).reshape(B, S, self.heads, -1) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 1), torch.cat([cache["v"], v], 1)
            cache["k"], cache["v"] = k, v
        return self.o_proj(attend(q, k, v, visible).reshape(B, S, -1))


class TransformerBlock(nn.Module):
    """Pre-norm LLaMA block: the text encoder's layers and the teacher's blocks."""

    def __init__(self, d, heads):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(d), Attention(d, heads)
        self.mlp_norm, self.mlp = RMSNorm(d), SwiGLU(d)

    def forward(self, x, visible, rope, cache=None):
        x = x + self.attn(self.attn_norm(x), visible, rope, cache)
        return x + self.mlp(self.mlp_norm(x))


class GSA(nn.Module):
    """Shared global self-attention over concat(h, x0): RMSNorm(2d) → attention (2d→2d, 2D RoPE,
    o_proj 2d→d) → RMSNorm(d) → SwiGLU. No residual inside: each call site adds gsa_out[j] of it."""

    def __init__(self, d, heads):
        super().__init__()
        self.norm_in, self.attn = RMSNorm(2 * d), Attention(2 * d, heads, d)
        self.norm_mlp, self.mlp = RMSNorm(d), SwiGLU(d)

    def forward(self, h, x0, visible, rope, cache=None):
        a = self.attn(self.norm_in(torch.cat([h, x0], -1)), visible, rope, cache)
        return self.mlp(self.norm_mlp(a))


# ---------------------------------------------------------------------------------------- Mamba

def selective_scan(u, delta, A, B, C):
    """s_t = exp(Δ_t A) s_{t−1} + Δ_t B_t u_t, y_t = Σ_n s_t C_t: u, delta [B, S, di], A [di, n],
    B, C [B, S, n] → y [B, S, di]. A plain loop over t; unbind/stack keep the backward linear in S."""
    a = torch.exp(delta.unsqueeze(-1) * A)              # [B, S, di, n]
    b = (delta * u).unsqueeze(-1) * B.unsqueeze(2)      # [B, S, di, n]
    s = a.new_zeros(a[:, 0].shape)
    states = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        s = torch.addcmul(b_t, a_t, s)                  # a_t · s + b_t
        states.append(s)
    return torch.einsum("bsdn,bsn->bsd", torch.stack(states, 1), C.to(a.dtype))


def parallel_scan(u, delta, A, B, C, s0):
    """The same recurrence from the state s0 [B, di, n], by doubling (Hillis–Steele: log2 S steps
    of whole-tensor ops, not S small ones) → (y [B, S, di], the last state). For generation."""
    a = torch.exp(delta.unsqueeze(-1) * A)
    b = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    b = torch.cat([b[:, :1] + a[:, :1] * s0[:, None], b[:, 1:]], 1)
    S, step = u.shape[1], 1
    while step < S:
        b = torch.cat([b[:, :step], torch.addcmul(b[:, step:], a[:, step:], b[:, :-step])], 1)
        a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], 1)
        step *= 2
    return torch.einsum("bsdn,bsn->bsd", b, C.to(b.dtype)), b[:, -1]


class Mamba(nn.Module):
    """mamba_simple's reference path, with the PAD mask m [B, S, 1] (0 at PAD): PAD inputs are
    zeroed and Δ = 0 there, so the scan carries its state through them."""

    def __init__(self, d, d_state, d_conv, expand):
        super().__init__()
        di = self.d_inner = expand * d
        self.d_state, self.dt_rank = d_state, math.ceil(d / 16)
        self.in_proj = linear(d, 2 * di)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=True)
        self.x_proj = linear(di, self.dt_rank + 2 * d_state)
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1.0)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = linear(di, d)

    def forward(self, x, m, state=None):
        """x [B, S, d], m [B, S, 1]. With `state` (a dict, generation): x is the next S positions
        after those whose conv inputs and SSM state it holds, and it is updated to include them."""
        S, n = x.shape[1], self.d_state
        xs, z = self.in_proj(x * m).chunk(2, -1)
        if state is None:
            xc = self.conv1d(xs.transpose(1, 2))[..., :S]  # causal: left padding only
        else:
            w = self.conv1d.weight
            prev = state.get("conv", xs.new_zeros(x.shape[0], self.d_inner, w.shape[-1] - 1))
            window = torch.cat([prev, xs.transpose(1, 2)], -1)
            state["conv"] = window[..., window.shape[-1] - prev.shape[-1]:]
            xc = F.conv1d(window, w, self.conv1d.bias, groups=self.d_inner)
        u = F.silu(xc.transpose(1, 2)) * m
        dt, Bm, Cm = self.x_proj(u).split([self.dt_rank, n, n], -1)
        delta = F.softplus(self.dt_proj(dt)) * m
        A = -torch.exp(self.A_log)
        if state is None:
            y = selective_scan(u, delta, A, Bm, Cm)
        else:
            s0 = state.get("ssm", u.new_zeros(x.shape[0], self.d_inner, n))
            y, state["ssm"] = parallel_scan(u, delta, A, Bm, Cm, s0)
        return self.out_proj((y + u * self.D) * F.silu(z))


class MambaBlock(nn.Module):
    def __init__(self, d, cfg):
        super().__init__()
        self.norm = RMSNorm(d)
        self.mamba = Mamba(d, cfg["d_state"], cfg["d_conv"], cfg["expand"])

    def forward(self, u, m, state=None):
        return self.mamba(self.norm(u), m, state)


# ----------------------------------------------------------------------- tokenizer's quantizer

def phi_index(k, K, shared):
    """VAR's PhiPartiallyShared: the φ whose tick in np.linspace(1/3/n, 1−1/3/n, n) (n = 4; else
    linspace(1/2/n, 1−1/2/n, n)) is nearest to k/(K−1); the first on ties. The ticks are computed
    as numpy does (i·step + start, the last exactly stop): exact ties occur (k = 7 of K = 10)."""
    at = 0.0 if K == 1 else k / (K - 1)
    start = 1 / 3 / shared if shared == 4 else 1 / 2 / shared
    stop = 1 - start
    if shared == 1:
        return 0
    step = (stop - start) / (shared - 1)
    ticks = [start] + [i * step + start for i in range(1, shared - 1)] + [stop]
    dist = [abs(t - at) for t in ticks]
    return dist.index(min(dist))


class Quantizer(nn.Module):
    """`quantize.embedding` [V, Cvae] and the shared φ convs `quantize.quant_resi.qresi_ls.{m}`."""

    def __init__(self, vocab, cvae, share_quant_resi, quant_resi):
        super().__init__()
        self.ratio = quant_resi
        self.embedding = nn.Embedding(vocab, cvae)
        self.quant_resi = nn.Module()
        self.quant_resi.qresi_ls = nn.ModuleList(
            nn.Conv2d(cvae, cvae, 3, padding=1) for _ in range(share_quant_resi))

    def scale_term(self, idx, k, K, side):
        """Scale k's term of f_hat: φ_k(bicubic(e[idx], side)), idx [B, pn, pn]."""
        h = self.embedding(idx).permute(0, 3, 1, 2)
        if h.shape[-1] != side:
            h = F.interpolate(h, size=(side, side), mode="bicubic", align_corners=False)
        conv = self.quant_resi.qresi_ls[phi_index(k, K, len(self.quant_resi.qresi_ls))]
        return h * (1 - self.ratio) + conv(h) * self.ratio


# ------------------------------------------------------------------------------------- VMambAR

class TextEncoder(nn.Module):
    def __init__(self, d, heads, n_layers):
        super().__init__()
        self.embed = nn.Embedding(TEXT_VOCAB, d)
        self.layers = nn.ModuleList(TransformerBlock(d, heads) for _ in range(n_layers))
        self.norm = RMSNorm(d)

    def forward(self, ids, valid):
        """ids [B, T], valid [B, T] (False at PAD) → [B, T, d]; bidirectional over non-PAD keys,
        1D RoPE at positions 0..T−1."""
        e = self.embed(ids)
        B, T = ids.shape
        visible = valid[:, None, :].expand(B, T, T)
        rope = rope_table(text_positions(T), e.shape[-1] // self.layers[0].attn.heads) \
            if len(self.layers) else None
        for layer in self.layers:
            e = layer(e, visible, rope)
        return self.norm(e)


class VMambAR(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = self.cfg = model_config(config)
        d, K = cfg["d"], len(cfg["scales"])
        self.arch, self.scales, self.T = cfg["arch"], list(cfg["scales"]), cfg["text_length"]
        self.checkpoint = False  # recompute each backbone block in backward (memory, not math)
        self.text = TextEncoder(d, cfg["heads"], cfg["text_layers"])
        self.sos = nn.Parameter(torch.zeros(d))
        self.word_embed = nn.Linear(cfg["cvae"], d)
        self.lvl_embed = nn.Embedding(K, d)
        if self.arch == "hybrid":
            self.blocks = nn.ModuleList(MambaBlock(d, cfg) for _ in range(cfg["n_layers"]))
            self.gsa = GSA(d, cfg["heads"])
            self.gsa_out = nn.ModuleList(
                linear(d, d) for _ in gsa_calls(cfg["n_layers"], cfg["gsa_every"]))
        elif self.arch == "transformer":
            self.blocks = nn.ModuleList(TransformerBlock(d, cfg["heads"]) for _ in range(cfg["n_layers"]))
        else:
            raise ValueError(f"arch {self.arch!r} is neither 'hybrid' nor 'transformer'")
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, cfg["vocab"])
        self.tokenizer = nn.Module()
        self.tokenizer.quantize = Quantizer(cfg["vocab"], cfg["cvae"], cfg["share_quant_resi"],
                                            cfg["quant_resi"])
        self.tokenizer.requires_grad_(False)

    def model_parameters(self):
        """(name, parameter) of the model proper: the case's `grad.<name>` entries."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("tokenizer.")]

    def load_state(self, tensors):
        """Copies every model and tokenizer tensor from {name: tensor} (other names ignored), cast
        to this model's dtype; a missing name or a shape mismatch is an error."""
        state = self.state_dict()
        missing = [n for n in state if n not in tensors]
        if missing:
            raise KeyError(f"{len(missing)} tensors missing, e.g. {missing[:4]}")
        with torch.no_grad():
            for name, t in state.items():
                if tuple(tensors[name].shape) != tuple(t.shape):
                    raise ValueError(f"{name}: shape {list(tensors[name].shape)}, model has {list(t.shape)}")
                t.copy_(tensors[name])

    # --- image inputs (DESIGN §4): sos, then word_embed of the area-resized f_hat of scales < k
    def image_inputs(self, indices):
        """indices [B, L] → [B, L, d]."""
        B, P, K = indices.shape[0], self.scales[-1], len(self.scales)
        quantize = self.tokenizer.quantize
        f_hat = self.sos.new_zeros(B, self.cfg["cvae"], P, P)
        tokens, start = [], 0
        for k, pn in enumerate(self.scales):
            if k == 0:
                x = self.sos.expand(B, pn * pn, -1)
            else:
                z = f_hat if pn == P else F.adaptive_avg_pool2d(f_hat, pn)
                x = self.word_embed(z.flatten(2).transpose(1, 2))  # raster order
            tokens.append(x + self.lvl_embed.weight[k])
            idx = indices[:, start:start + pn * pn].long().reshape(B, pn, pn)
            start += pn * pn
            with torch.no_grad():
                f_hat = f_hat + quantize.scale_term(idx, k, K, P)
        return torch.cat(tokens, 1)

    # --- backbone (DESIGN §4)
    def run(self, fn, *args):
        if self.checkpoint and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def attention_inputs(self, text_valid):
        """(visibility [B, S, S], RoPE (cos, sin) [S, Dh/2] in float64) of the whole sequence."""
        d, H = self.cfg["d"], self.cfg["heads"]
        width = d if self.arch == "transformer" else 2 * d
        return (block_causal_visibility(self.scales, text_valid),
                rope_table(scale_positions(self.scales, self.T), width // H))

    def backbone(self, x, text_valid, start=0, state=None, inputs=None):
        """x [B, n, d] → h: the blocks over positions [start, start + n) of the sequence (all of it
        in training). With `state` (a dict, generation) the positions before `start` come from it,
        each block's Mamba state and each attention's keys and values, and it takes in these.
        `inputs`: attention_inputs(text_valid), when the caller keeps them."""
        B, T, n = x.shape[0], self.T, x.shape[1]
        visible, (cos, sin) = inputs or self.attention_inputs(text_valid)
        visible, rope = visible[:, start:start + n, :start + n], (cos[start:start + n], sin[start:start + n])

        def cache(key):
            return None if state is None else state.setdefault(key, {})

        if self.arch == "transformer":
            h = x
            for i, block in enumerate(self.blocks):
                h = self.run(block, h, visible, rope, cache(("block", i)))
            return h
        L = sum(pn * pn for pn in self.scales)
        m = torch.cat([text_valid, text_valid.new_ones(B, L)], 1)[:, start:start + n, None].to(x.dtype)
        x0 = x

        def layer(h, x0, i, j):
            u = h
            if j is not None:  # the shared GSA's j-th call
                u = h + self.gsa_out[j](self.gsa(h, x0, visible, rope, cache(("gsa", j))))
            return h + self.blocks[i](u, m, cache(("mamba", i)))

        h, j = x, 0
        for i in range(len(self.blocks)):
            call = None
            if i > 0 and i % self.cfg["gsa_every"] == 0:
                call, j = j, j + 1
            h = self.run(layer, h, x0, i, call)
        return h

    def forward(self, text_ids, indices):
        """text_ids [B, T], indices [B, L] (integer tensors) → logits [B, L, V], mean CE loss."""
        text_ids, indices = text_ids.long(), indices.long()
        valid = text_ids != PAD
        x = torch.cat([self.text(text_ids, valid), self.image_inputs(indices)], 1)
        h = self.backbone(x, valid)
        logits = self.head(self.norm(h[:, self.T:]))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), indices.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, text_ids, cfg=3.0, temperature=1.0, top_k=0, generator=None, trace=None):
        """Scale by scale, as `vmambar generate` (DESIGN §4): the text and scale 1 first, then each
        scale's tokens alone, with the Mamba conv and SSM states and the attention keys and values
        carried (the Mamba state's scan over a scale by doubling). Guidance doubles the batch with
        the null caption; scale k's logits are (1 + t)·cond − t·uncond, t = cfg·k/(K − 1). Tokens
        are drawn on the device. text_ids [B, T] → indices [B, L]. `trace` (a list) receives each
        scale's conditional logits [B, pn², V], before guidance."""
        ids = text_ids.long()
        B, K, P, V = ids.shape[0], len(self.scales), self.scales[-1], self.cfg["vocab"]
        guided = cfg != 0
        if guided:
            null = torch.full_like(ids, PAD)
            null[:, -2:] = torch.tensor([BOS, EOS])
            ids = torch.cat([ids, null])
        valid = ids != PAD
        visible, (cos, sin) = self.attention_inputs(valid)
        inputs = (visible, (cos.to(self.sos), sin.to(self.sos)))
        text = self.text(ids, valid)
        f_hat = self.sos.new_zeros(B, self.cfg["cvae"], P, P)
        state, out, start = {}, [], 0
        for k, pn in enumerate(self.scales):
            if k == 0:
                sos = (self.sos + self.lvl_embed.weight[0]).expand(ids.shape[0], 1, -1)
                x = torch.cat([text, sos], 1)
            else:
                z = f_hat if pn == P else F.adaptive_avg_pool2d(f_hat, pn)
                x = self.word_embed(z.flatten(2).transpose(1, 2)) + self.lvl_embed.weight[k]
                x = torch.cat([x, x]) if guided else x
            h = self.backbone(x, valid, start, state, inputs)
            start += x.shape[1]
            logits = self.head(self.norm(h[:, -pn * pn:]))
            if trace is not None:
                trace.append(logits[:B])
            logits = logits.float()  # bf16 under autocast
            if guided:
                t = cfg * k / (K - 1) if K > 1 else 0.0
                logits = (1 + t) * logits[:B] - t * logits[B:]
            logits = logits.reshape(B * pn * pn, V) / temperature
            if top_k:
                kth = logits.topk(top_k, -1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            idx = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).reshape(B, pn, pn)
            out.append(idx.reshape(B, -1))
            f_hat = f_hat + self.tokenizer.quantize.scale_term(idx, k, K, P).to(f_hat)
        return torch.cat(out, 1)
