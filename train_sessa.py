"""
PyTorch reference for sessa.c: the Sessa language model of DESIGN.md section 1, its file formats
(section 4), reference dumps for the C/CUDA tests, and a small llm.c-style trainer (section 5).

    python train_sessa.py --write_refs dev/refs                  # reference dumps for test_sessa
    python train_sessa.py -i "data/x/train_*.bin" -j "data/x/val_*.bin" -e d4w256h4 -b 8 -t 256 -x 100
    python train_sessa.py --eval out/model_00000100.bin -j "data/x/val_*.bin"
    python train_sessa.py --sample out/model_00000100.bin --tokenizer data/x/tokenizer.bin -g 64
    python train_sessa.py --eval out/model_00000100.bin -t 512 -b 8 -j data/long_context/needle/needle_val_000000.bin \\
        --eval_tasks data/long_context/needle/needle_eval.bin

--eval_tasks (-E) EVALFILE: a long-context eval file of data/long_context.py, whose val shard is -j and whose
seq_len is -t. With --eval, and during training at every validation and at the end, it reports the accuracy
of the argmax prediction at the file's scored positions, one line per nominal distance ("step N eval_acc
d=128 0.953125 61/64" in main.log), as the C trainer's -E does (llmc/eval_tasks.h). -x 0 trains nothing.

Sessa mixer: s_t = f_t + gamma_t * sum_{j<t} alpha[t,j] s_j, where f is causal softmax attention and
alpha a strictly causal single-head attention over the full width. The training forward solves the
unit-lower-triangular system (I - diag(gamma) alpha) s = f in parallel; generate() runs the same
model one token at a time with caches of k, v, kb and s.
"""
import argparse
import glob
import math
import os
import re
import struct
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_MAGIC, DEBUG_MAGIC, EVAL_MAGIC = 20261122, 20261123, 20261125
SHARD_MAGIC, TOKENIZER_MAGIC = 20240520, 20240328
HEADER_INTS = 256


def fatal(msg):
    raise SystemExit(f"error: {msg}")


def f32(x):
    """x rounded to float32 (header floats are stored as float32 bits)"""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<i", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<i", int(b)))[0]

# -----------------------------------------------------------------------------
# config


@dataclass
class SessaConfig:
    """the fields of the checkpoint header (DESIGN.md section 4)"""
    max_seq_len: int
    vocab_size: int      # V
    n_layer: int         # L
    n_head: int          # H
    n_kv_head: int       # Hkv
    d_model: int         # D
    padded_vocab: int    # Vp: rows of wte, a multiple of 128
    use_rope: int = 1
    gamma_max: float = 0.999
    ln_eps: float = 1e-5
    no_feedback: int = 0  # 1: the feedback-off baseline "f0" (s = f; no Linear_fb, no gamma parameters), header slot 12

    def __post_init__(self):
        self.gamma_max, self.ln_eps = f32(self.gamma_max), f32(self.ln_eps)  # what the header can hold
        c, bad = self, None
        if min(c.max_seq_len, c.vocab_size, c.n_layer, c.n_head, c.n_kv_head, c.d_model) < 1:
            bad = "max_seq_len, vocab_size, n_layer, n_head, n_kv_head and d_model must all be >= 1"
        elif c.padded_vocab < c.vocab_size or c.padded_vocab % 128 != 0:
            bad = f"padded_vocab {c.padded_vocab} must be >= vocab_size {c.vocab_size} and a multiple of 128"
        elif c.n_head % c.n_kv_head != 0:
            bad = f"n_head {c.n_head} is not a multiple of n_kv_head {c.n_kv_head}"
        elif c.d_model % c.n_head != 0:
            bad = f"d_model {c.d_model} is not a multiple of n_head {c.n_head}"
        elif c.use_rope not in (0, 1):
            bad = f"use_rope must be 0 or 1 (got {c.use_rope})"
        elif c.use_rope and (c.d_model // c.n_head) % 2 != 0:
            bad = f"head width {c.d_model // c.n_head} must be even with RoPE"
        elif not 0.0 < c.gamma_max < 1.0:
            bad = f"gamma_max must be in (0, 1) (got {c.gamma_max})"
        elif not 0.0 < c.ln_eps < 1.0:
            bad = f"ln_eps must be in (0, 1) (got {c.ln_eps})"
        elif c.no_feedback not in (0, 1):
            bad = f"no_feedback must be 0 (Sessa) or 1 (feedback-off baseline f0) (got {c.no_feedback})"
        if bad:
            fatal(f"invalid model config: {bad}")

    @property
    def head_dim(self):
        return self.d_model // self.n_head


def pad_vocab(V):
    return (V + 127) // 128 * 128


def config_from_descriptor(desc, vocab_size, max_seq_len):
    """d<L>[w<D>][h<H>][k<Hkv>][f0]; defaults D = 64 L, H = max(1, D/64), Hkv = H; the suffix f0 makes the
    feedback-off baseline (same rule as llmc/sessa.h)"""
    m = re.fullmatch(r"d(\d+)(?:w(\d+))?(?:h(\d+))?(?:k(\d+))?(f0)?", desc)
    if not m:
        head = re.match(r"d\d+(?:w\d+)?(?:h\d+)?(?:k\d+)?", desc)
        suffix = f" (unknown suffix '{desc[head.end():]}')" if head else ""
        fatal(f"bad model descriptor '{desc}'{suffix}: expected d<layers>[w<width>][h<heads>][k<kv_heads>][f0], "
              "e.g. d12, d4w256h4, d4w256h4k2, d4w256h4f0 (f0 = no feedback branch)")
    L = int(m[1])
    D = int(m[2]) if m[2] else 64 * L
    H = int(m[3]) if m[3] else max(1, D // 64)
    Hkv = int(m[4]) if m[4] else H
    return SessaConfig(max_seq_len, vocab_size, L, H, Hkv, D, pad_vocab(vocab_size), no_feedback=int(bool(m[5])))

# -----------------------------------------------------------------------------
# the model


def apply_rope(x, pos0):
    """x (B,T,nh,d), positions pos0..pos0+T-1; interleaved pairs rotated by theta = t * 10000^(-2i/d)"""
    B, T, nh, d = x.shape
    w = torch.pow(10000.0, -torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)  # (d/2,)
    t = torch.arange(pos0, pos0 + T, dtype=torch.float64, device=x.device)
    theta = t[:, None] * w[None, :]                                                   # (T, d/2)
    cos, sin = theta.cos().to(x.dtype)[:, None, :], theta.sin().to(x.dtype)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]                                               # (B,T,nh,d/2)
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).reshape(B, T, nh, d)


# the feedback branch, one function per line of DESIGN.md section 1 (the test differentiates through these)

def feedback_logits(qb, kb):
    """Z[t,j] = qb_t . kb_j / sqrt(D); (B,T,D) x (B,T,D) -> (B,T,T)"""
    return qb @ kb.transpose(-1, -2) / math.sqrt(qb.shape[-1])


def feedback_alpha(Z):
    """strictly causal softmax over j < t; row 0 has no keys and is all zero. (B,T,T) -> (B,T,T)"""
    T = Z.shape[-1]
    strict = torch.ones(T, T, dtype=torch.bool, device=Z.device).tril(-1)
    alpha = F.softmax(Z[:, 1:].masked_fill(~strict[1:], float("-inf")), dim=-1)      # rows 1..T-1
    return torch.cat((torch.zeros_like(Z[:, :1]), alpha), dim=1)


def feedback_gamma(abar, w_gamma, gamma_b, gamma_max):
    """gamma_t = gamma_max tanh(gamma_b + abar_t . w_gamma); (B,T,D) -> (B,T)"""
    return gamma_max * torch.tanh(gamma_b + abar @ w_gamma)


def feedback_solve(f, gamma, alpha):
    """s = (I - diag(gamma) alpha)^-1 f, a unit-lower-triangular solve, D right-hand sides. -> (B,T,D)"""
    T = f.shape[1]
    W = gamma[..., None] * alpha                                 # (B,T,T) W = diag(gamma) alpha (DESIGN.md §2)
    A = torch.eye(T, dtype=alpha.dtype, device=f.device) - W      # I - W
    dtype = torch.promote_types(A.dtype, f.dtype)  # under bf16 autocast the solve runs in fp32
    return torch.linalg.solve_triangular(A.to(dtype), f.to(dtype), upper=False, unitriangular=True)


class MixerCache:
    """what one mixer keeps while decoding: rotated k, v (B,t,Hkv,d), kb and s (B,t,D)"""

    def __init__(self, cfg, B, dtype, device):
        kv = (B, 0, cfg.n_kv_head, cfg.head_dim)
        self.k, self.v = torch.zeros(kv, dtype=dtype, device=device), torch.zeros(kv, dtype=dtype, device=device)
        self.kb = torch.zeros(B, 0, cfg.d_model, dtype=dtype, device=device)
        self.s = torch.zeros(B, 0, cfg.d_model, dtype=dtype, device=device)

    @property
    def t(self):
        return self.k.shape[1]


class SessaMixer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, d = cfg.d_model, cfg.head_dim
        self.q = nn.Linear(D, cfg.n_head * d)
        self.k = nn.Linear(D, cfg.n_kv_head * d)
        self.v = nn.Linear(D, cfg.n_kv_head * d)
        self.o = nn.Linear(D, D, bias=False) if cfg.n_head > 1 else None
        if cfg.no_feedback:   # the f0 baseline: s = f
            self.fb, self.gamma_w, self.gamma_b = None, None, None
        else:
            self.fb = nn.Linear(D, 2 * D)
            self.gamma_w = nn.Parameter(torch.zeros(D))
            self.gamma_b = nn.Parameter(torch.ones(1))

    def qkv(self, abar, pos0):
        """projections of abar (B,T,D) -> q (B,T,H,d), k, v (B,T,Hkv,d), RoPE'd at positions pos0.."""
        c = self.cfg
        B, T, _ = abar.shape
        q = self.q(abar).view(B, T, c.n_head, c.head_dim)
        k = self.k(abar).view(B, T, c.n_kv_head, c.head_dim)
        v = self.v(abar).view(B, T, c.n_kv_head, c.head_dim)
        if c.use_rope:
            q, k = apply_rope(q, pos0), apply_rope(k, pos0)
        return q, k, v

    def forward(self, abar):
        """parallel form: abar (B,T,D) -> s (B,T,D)"""
        B, T, D = abar.shape
        # forward branch: causal GQA softmax attention, query head h reads kv head h // g
        q, k, v = self.qkv(abar, 0)
        f = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)          # (B,H,T,d)
        f = f.transpose(1, 2).reshape(B, T, D)
        if self.o is not None:
            f = self.o(f)
        if self.fb is None:                               # f0: no feedback branch
            return f
        # feedback branch: s = f + diag(gamma) alpha s
        qb, kb = self.fb(abar).split(D, dim=-1)
        alpha = feedback_alpha(feedback_logits(qb, kb))
        gamma = feedback_gamma(abar, self.gamma_w, self.gamma_b, self.cfg.gamma_max)
        return feedback_solve(f, gamma, alpha)

    def step(self, abar, cache):
        """recurrent form, one token: abar (B,1,D) -> s (B,1,D); O(t) work at position t"""
        c = self.cfg
        B, _, D = abar.shape
        Hkv, g, d = c.n_kv_head, c.n_head // c.n_kv_head, c.head_dim
        q, k, v = self.qkv(abar, cache.t)
        cache.k, cache.v = torch.cat((cache.k, k), 1), torch.cat((cache.v, v), 1)   # (B,t+1,Hkv,d)
        q = q.view(B, Hkv, g, d)                          # query head h = kvh * g + i reads kv head kvh
        att = torch.einsum("bkgd,bskd->bkgs", q, cache.k) / math.sqrt(d)
        f = torch.einsum("bkgs,bskd->bkgd", F.softmax(att, dim=-1), cache.v).reshape(B, 1, D)
        if self.o is not None:
            f = self.o(f)
        if self.fb is None:                               # f0: s = f, nothing more to cache
            return f
        qb, kb = self.fb(abar).split(D, dim=-1)
        gamma = feedback_gamma(abar, self.gamma_w, self.gamma_b, c.gamma_max)     # (B,1)
        alpha = F.softmax(feedback_logits(qb, cache.kb), dim=-1)                   # (B,1,t), j < t only
        s = f + gamma[..., None] * (alpha @ cache.s)      # at t = 0 there is no j: alpha @ s is zero
        cache.kb, cache.s = torch.cat((cache.kb, kb), 1), torch.cat((cache.s, s), 1)
        return s


class SessaLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg.d_model
        self.ln = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.lin_in = nn.Linear(D, 2 * D)
        self.mixer = SessaMixer(cfg)
        self.lin_out = nn.Linear(D, D)

    def forward(self, x, cache=None):
        """x (B,T,D) -> (B,T,D); with a cache, T == 1 and the mixer runs its recurrent form"""
        a, gt = self.lin_in(self.ln(x)).chunk(2, dim=-1)
        abar = F.gelu(a)                                  # exact erf GELU
        s = self.mixer(abar) if cache is None else self.mixer.step(abar, cache)
        return x + self.lin_out(s * gt)                   # linear gate


class SessaLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Parameter(torch.empty(cfg.padded_vocab, cfg.d_model))
        self.layers = nn.ModuleList(SessaLayer(cfg) for _ in range(cfg.n_layer))
        self.lnf = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """DESIGN.md section 1: Linear W ~ N(0, 0.02), Linear_out W ~ N(0, 0.02/sqrt(2L)), biases 0, wte ~ N(0, 0.02),
        LayerNorm 1/0, w_gamma 0, gamma_b 1 (the last four are the module defaults)"""
        nn.init.normal_(self.wte, std=0.02)
        for layer in self.layers:
            for lin in (layer.lin_in, layer.mixer.q, layer.mixer.k, layer.mixer.v, layer.mixer.fb, layer.mixer.o):
                if lin is not None:
                    nn.init.normal_(lin.weight, std=0.02)
            nn.init.normal_(layer.lin_out.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layer))
            for lin in (layer.lin_in, layer.mixer.q, layer.mixer.k, layer.mixer.v, layer.mixer.fb, layer.lin_out):
                if lin is not None:
                    nn.init.zeros_(lin.bias)

    def head(self, x):
        """tied head over the real vocabulary: (B,T,D) -> (B,T,V)"""
        return self.lnf(x) @ self.wte[:self.cfg.vocab_size].t()

    def forward(self, idx, targets=None):
        """idx (B,T) -> logits (B,T,V), mean cross-entropy loss (None without targets)"""
        x = self.wte[idx]
        for layer in self.layers:
            x = layer(x)
        logits = self.head(x)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def step(self, idx, caches):
        """recurrent form: next tokens idx (B,) -> logits (B,V) for that position"""
        x = self.wte[idx][:, None, :]
        for layer, cache in zip(self.layers, caches):
            x = layer(x, cache)
        return self.head(x)[:, 0]

    def new_caches(self, B):
        return [MixerCache(self.cfg, B, self.wte.dtype, self.wte.device) for _ in self.layers]

    @torch.no_grad()
    def generate(self, prompt, n, temperature=1.0, generator=None, top_k=0, times=None):
        """prompt (B,P) -> (B,n) sampled continuation, decoded recurrently; temperature 0: greedy (argmax, the
        lowest id among equal logits); top_k > 0: only the logits >= the k-th largest (DESIGN.md section 5).
        times: a list that gets the wall-clock time after the prompt and at the end (GPU synchronized)"""
        caches = self.new_caches(prompt.shape[0])
        for t in range(prompt.shape[1]):
            logits = self.step(prompt[:, t], caches)
        if times is not None:
            if logits.is_cuda:
                torch.cuda.synchronize()
            times.append(time.time())
        out = []
        for i in range(n):
            logits = logits.float()
            if temperature == 0:
                out.append(torch.argmax(logits, dim=-1))
            else:
                if 0 < top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits / temperature, dim=-1)
                out.append(torch.multinomial(probs, 1, generator=generator)[:, 0])
            if i + 1 < n:
                logits = self.step(out[-1], caches)
        out = torch.stack(out, dim=1)
        if times is not None:
            out = out.cpu()
            times.append(time.time())
        return out

# -----------------------------------------------------------------------------
# checkpoints (DESIGN.md section 4)


def checkpoint_tensors(model):
    """[(name, [tensor per layer])] in checkpoint order: all layers of one tensor kind together"""
    ls = model.layers
    table = [("wte", [model.wte]),
             ("ln_w", [l.ln.weight for l in ls]), ("ln_b", [l.ln.bias for l in ls]),
             ("in_w", [l.lin_in.weight for l in ls]), ("in_b", [l.lin_in.bias for l in ls]),
             ("q_w", [l.mixer.q.weight for l in ls]), ("q_b", [l.mixer.q.bias for l in ls]),
             ("k_w", [l.mixer.k.weight for l in ls]), ("k_b", [l.mixer.k.bias for l in ls]),
             ("v_w", [l.mixer.v.weight for l in ls]), ("v_b", [l.mixer.v.bias for l in ls])]
    fb = not model.cfg.no_feedback   # f0: fb_w, fb_b, gamma_w, gamma_b have size 0
    if fb:
        table += [("fb_w", [l.mixer.fb.weight for l in ls]), ("fb_b", [l.mixer.fb.bias for l in ls])]
    if model.cfg.n_head > 1:
        table += [("o_w", [l.mixer.o.weight for l in ls])]
    if fb:
        table += [("gamma_w", [l.mixer.gamma_w for l in ls]), ("gamma_b", [l.mixer.gamma_b for l in ls])]
    table += [("out_w", [l.lin_out.weight for l in ls]), ("out_b", [l.lin_out.bias for l in ls]),
              ("lnf_w", [model.lnf.weight]), ("lnf_b", [model.lnf.bias])]
    n_table = sum(t.numel() for _, ts in table for t in ts)
    assert n_table == sum(p.numel() for p in model.parameters()) == num_parameters(model.cfg), "bad param table"
    return table


def flat_params(model, grads=False):
    """all parameters (or their gradients, zero where none) in checkpoint order, as one float32 vector"""
    ts = [t for _, kind in checkpoint_tensors(model) for t in kind]
    if grads:
        ts = [torch.zeros_like(t) if t.grad is None else t.grad for t in ts]
    return torch.cat([t.detach().reshape(-1).float().cpu() for t in ts])


def num_parameters(cfg):
    """the parameter count of DESIGN.md section 4, from the config alone (checked before allocating a model)"""
    D, Hd, Kd = cfg.d_model, cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    fb = 0 if cfg.no_feedback else (2 * D * D + 2 * D) + (D + 1)   # Linear_fb, w_gamma, gamma_b
    per_layer = (2 * D + (2 * D * D + 2 * D) + (Hd * D + Hd) + 2 * (Kd * D + Kd) + fb
                 + (D * D if cfg.n_head > 1 else 0) + (D * D + D))
    return cfg.padded_vocab * D + cfg.n_layer * per_layer + 2 * D


def model_header(cfg, version):
    h = np.zeros(HEADER_INTS, dtype="<i4")
    h[:13] = [MODEL_MAGIC, version, cfg.max_seq_len, cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_kv_head,
              cfg.d_model, cfg.padded_vocab, cfg.use_rope, f32_bits(cfg.gamma_max), f32_bits(cfg.ln_eps),
              cfg.no_feedback]   # [12] = 0 in checkpoints older than the f0 option: they read as Sessa
    return h


def write_checkpoint(model, path, version=1):
    """version 1: float32 parameters; version 2: bfloat16, rounded to nearest even"""
    flat = flat_params(model)
    if version == 1:
        payload = flat.numpy().astype("<f4")
    elif version == 2:
        payload = flat.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2")
    else:
        fatal(f"checkpoint version must be 1 or 2 (got {version})")
    tmp = path + ".tmp"
    with open(tmp, "wb") as fp:
        fp.write(model_header(model.cfg, version).tobytes())
        fp.write(payload.tobytes())
    os.replace(tmp, path)


def read_checkpoint(path):
    """-> SessaLM (float32) from a version 1 or 2 checkpoint, validated"""
    if not os.path.isfile(path):
        fatal(f"cannot open checkpoint '{path}'")
    with open(path, "rb") as fp:
        data = fp.read()
    if len(data) < 4 * HEADER_INTS:
        fatal(f"checkpoint '{path}' is truncated: {len(data)} bytes, less than its 1024-byte header")
    h = np.frombuffer(data[:4 * HEADER_INTS], dtype="<i4")
    if h[0] != MODEL_MAGIC:
        fatal(f"checkpoint '{path}': bad magic {h[0]} (expected {MODEL_MAGIC}: not a sessa model checkpoint)")
    if h[1] not in (1, 2):
        fatal(f"checkpoint '{path}': unsupported version {h[1]} (expected 1 = fp32 or 2 = bf16)")
    cfg = SessaConfig(*[int(x) for x in h[2:10]], gamma_max=bits_f32(h[10]), ln_eps=bits_f32(h[11]),
                      no_feedback=int(h[12]))
    n = num_parameters(cfg)
    width = 4 if h[1] == 1 else 2
    if len(data) != 4 * HEADER_INTS + width * n:
        fatal(f"checkpoint '{path}' is {len(data)} bytes, but its header implies {4 * HEADER_INTS + width * n} "
              f"({n} parameters at {width} bytes): truncated or not matching its header")
    model = SessaLM(cfg)
    if h[1] == 1:
        flat = torch.from_numpy(np.frombuffer(data, dtype="<f4", offset=4 * HEADER_INTS).copy())
    else:
        raw = np.frombuffer(data, dtype="<i2", offset=4 * HEADER_INTS).copy()
        flat = torch.from_numpy(raw).view(torch.bfloat16).float()
    with torch.no_grad():
        off = 0
        for _, ts in checkpoint_tensors(model):
            for t in ts:
                t.copy_(flat[off:off + t.numel()].view_as(t))
                off += t.numel()
    return model

# -----------------------------------------------------------------------------
# reference dumps for the C and CUDA tests


REF_CONFIGS = {  # name: (config, B, T, seed, gamma_b before the noise)
    "gqa_rope": (dict(vocab_size=61, n_layer=2, d_model=64, n_head=4, n_kv_head=2, use_rope=1), 2, 16, 1, 1.0),
    "mh1_norope": (dict(vocab_size=61, n_layer=2, d_model=48, n_head=1, n_kv_head=1, use_rope=0), 2, 16, 2, 1.0),
    "odd_t": (dict(vocab_size=200, n_layer=3, d_model=32, n_head=2, n_kv_head=1, use_rope=1), 3, 13, 3, 1.0),
    "gamma_hi": (dict(vocab_size=61, n_layer=2, d_model=64, n_head=4, n_kv_head=2, use_rope=1,
                      gamma_max=0.999), 2, 32, 4, 4.0),
    # head widths 32 and 64, which the CUDA attention kernels take; T = 70 crosses a 64-row block edge
    "cuda_gqa": (dict(vocab_size=61, n_layer=2, d_model=128, n_head=4, n_kv_head=2, use_rope=1), 2, 70, 5, 1.0),
    "cuda_mh1": (dict(vocab_size=300, n_layer=2, d_model=64, n_head=1, n_kv_head=1, use_rope=0), 2, 40, 6, 1.0),
    # the feedback-off baseline (s = f, no fb/gamma tensors): grouped-query on the CPU, CUDA-sized for test_sessacu
    "f0_gqa": (dict(vocab_size=61, n_layer=2, d_model=64, n_head=4, n_kv_head=2, use_rope=1, no_feedback=1),
               2, 16, 7, 1.0),
    "cuda_f0": (dict(vocab_size=61, n_layer=2, d_model=128, n_head=4, n_kv_head=2, use_rope=1, no_feedback=1),
                2, 70, 8, 1.0),
}
REF_STEPS, REF_LR, REF_WD, REF_BETAS, REF_EPS = 5, 1e-3, 0.1, (0.9, 0.95), 1e-8


def reference_model(name):
    """the float32 model of a reference config -> (model, B, T, seed). DESIGN.md init, then changed so that no
    gradient is too small for a test to see a bug in it: Linear weights redrawn from N(0, 1/sqrt(D)), which
    makes the attention and feedback logits O(1) (under the DESIGN.md init they are ~1e-4 and the gradients of
    q_w, k_w, fb_w ~1e-8), and N(0, 0.02) noise on every bias, LayerNorm parameter, w_gamma and gamma_b"""
    kw, B, T, seed, gamma_b = REF_CONFIGS[name]
    torch.manual_seed(seed)
    model = SessaLM(SessaConfig(max_seq_len=T, padded_vocab=pad_vocab(kw["vocab_size"]), **kw))
    with torch.no_grad():
        for layer in model.layers:
            m = layer.mixer
            for lin in (layer.lin_in, m.q, m.k, m.v, m.fb, m.o, layer.lin_out):
                if lin is not None:
                    nn.init.normal_(lin.weight, std=1 / math.sqrt(model.cfg.d_model))
            if m.gamma_b is not None:
                m.gamma_b.fill_(gamma_b)
        for pname, p in model.named_parameters():
            if pname.endswith("bias") or ".ln." in pname or pname.startswith("lnf.") or "gamma" in pname:
                p.add_(0.02 * torch.randn_like(p))
    return model, B, T, seed


def write_refs(outdir, names=tuple(REF_CONFIGS)):
    os.makedirs(outdir, exist_ok=True)
    for name in names:
        model, B, T, seed = reference_model(name)
        cfg = model.cfg
        write_checkpoint(model, os.path.join(outdir, f"{name}_model.bin"), 1)
        write_checkpoint(model, os.path.join(outdir, f"{name}_model_bf16.bin"), 2)
        # the float32 parameters exactly, then all math in float64
        model = model.double()
        gen = torch.Generator().manual_seed(1000 + seed)
        inputs = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
        targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
        logits, loss = model(inputs, targets)
        loss.backward()
        grads = flat_params(model, grads=True)
        # AdamW in PyTorch's form, weight decay on every parameter, no gradient clipping
        opt = torch.optim.AdamW(model.parameters(), lr=REF_LR, betas=REF_BETAS, eps=REF_EPS, weight_decay=REF_WD)
        losses = [loss.item()]
        for _ in range(1, REF_STEPS):
            opt.step()
            opt.zero_grad()
            _, l = model(inputs, targets)
            l.backward()
            losses.append(l.item())
        h = np.zeros(HEADER_INTS, dtype="<i4")
        h[:10] = [DEBUG_MAGIC, 1, B, T, REF_STEPS, f32_bits(REF_LR), f32_bits(REF_WD),
                  f32_bits(REF_BETAS[0]), f32_bits(REF_BETAS[1]), f32_bits(REF_EPS)]
        with open(os.path.join(outdir, f"{name}_debug.bin"), "wb") as fp:
            fp.write(h.tobytes())
            fp.write(inputs.numpy().astype("<i4").tobytes())
            fp.write(targets.numpy().astype("<i4").tobytes())
            fp.write(logits.detach().numpy().astype("<f4").tobytes())
            fp.write(np.array([loss.item()], dtype="<f4").tobytes())
            fp.write(grads.numpy().astype("<f4").tobytes())
            fp.write(np.array(losses, dtype="<f4").tobytes())
        print(f"{name}: V {cfg.vocab_size} (Vp {cfg.padded_vocab}) L {cfg.n_layer} D {cfg.d_model} "
              f"H {cfg.n_head} Hkv {cfg.n_kv_head} rope {cfg.use_rope} B {B} T {T} | {grads.numel()} params | "
              f"loss {losses[0]:.6f} -> {losses[-1]:.6f} after {REF_STEPS - 1} AdamW steps | -> {outdir}/{name}_*.bin")

# -----------------------------------------------------------------------------
# data: llm.c token shards and tokenizer


def open_shard(path):
    """-> uint16/uint32 token memmap of one llm.c shard, validated against its header"""
    if not os.path.isfile(path):
        fatal(f"cannot open shard '{path}'")
    size = os.path.getsize(path)
    if size < 4 * HEADER_INTS:
        fatal(f"shard '{path}' is truncated: {size} bytes, less than its 1024-byte header")
    h = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if h[0] != SHARD_MAGIC:
        fatal(f"shard '{path}': bad magic {h[0]} (expected {SHARD_MAGIC}: not an llm.c token shard)")
    if h[1] not in (1, 2):
        fatal(f"shard '{path}': unsupported version {h[1]} (expected 1 = uint16 or 2 = uint32 tokens)")
    dtype = np.dtype("<u2" if h[1] == 1 else "<u4")
    n = int(h[2])
    want = 4 * HEADER_INTS + n * dtype.itemsize
    if n < 0 or size != want:
        fatal(f"shard '{path}' is {size} bytes, but its header says {n} tokens ({want} bytes): truncated or corrupt")
    return np.memmap(path, dtype=dtype, mode="r", offset=4 * HEADER_INTS, shape=(n,))


class DataLoader:
    """(B,T) batches cut as llmc/dataloader.h cuts them for one rank: a shard of N tokens holds R = (N-1)//T rows,
    row r = tokens[r*T : r*T+T+1]; a step reads B rows, in order, or through a seeded permutation per
    (epoch, shard) when shuffling (shard order shuffled too; not the C loader's permutation); the last
    R % B rows of a shard are skipped. Token ids are checked against the vocabulary in every batch."""

    def __init__(self, pattern, B, T, vocab_size, shuffle=False, seed=0):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            fatal(f"no shard matches '{pattern}'")
        self.shards = [open_shard(f) for f in self.files]
        self.B, self.T, self.V, self.shuffle, self.seed = B, T, vocab_size, shuffle, seed
        self.steps_per_epoch = sum(self.steps_in(s) for s in self.shards)
        if self.steps_per_epoch == 0:
            fatal(f"no shard of '{pattern}' holds one batch of B*T+1 = {B * T + 1} tokens")
        self.reset()

    def steps_in(self, shard):
        return max(0, len(shard) - 1) // self.T // self.B

    def reset(self):
        self.epoch = -1
        self.start_epoch()

    def start_epoch(self):
        self.epoch += 1
        self.gen = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        n = len(self.shards)
        self.order = torch.randperm(n, generator=self.gen).tolist() if self.shuffle else list(range(n))
        self.k = -1
        self.next_shard()

    def next_shard(self):
        """the next shard of this epoch that holds a step (a new epoch after the last), and its row order"""
        self.k += 1
        if self.k == len(self.order):
            return self.start_epoch()
        self.shard, self.step = self.order[self.k], 0
        if self.steps_in(self.shards[self.shard]) == 0:
            return self.next_shard()
        rows = (len(self.shards[self.shard]) - 1) // self.T
        self.rows = torch.randperm(rows, generator=self.gen).numpy() if self.shuffle else np.arange(rows)

    def next_batch(self):
        """-> inputs, targets (B,T) int64"""
        if self.step == self.steps_in(self.shards[self.shard]):
            self.next_shard()
        rows = self.rows[self.step * self.B:(self.step + 1) * self.B]
        buf = self.shards[self.shard][rows[:, None] * self.T + np.arange(self.T + 1)]   # (B, T+1)
        if int(buf.max()) >= self.V:
            fatal(f"shard '{self.files[self.shard]}': token {int(buf.max())} out of range for vocab_size {self.V}")
        self.step += 1
        buf = torch.from_numpy(buf.astype(np.int64))
        return buf[:, :-1], buf[:, 1:]


def read_tokenizer(path):
    """-> (list of token byte strings, eot id) from an llm.c tokenizer file (version 2)"""
    if not os.path.isfile(path):
        fatal(f"cannot open tokenizer '{path}'")
    data = open(path, "rb").read()
    if len(data) < 4 * HEADER_INTS:
        fatal(f"tokenizer '{path}' is truncated: {len(data)} bytes, less than its header")
    h = np.frombuffer(data[:4 * HEADER_INTS], dtype="<i4")
    if h[0] != TOKENIZER_MAGIC or h[1] != 2:
        fatal(f"tokenizer '{path}': bad magic {h[0]} / version {h[1]} (expected {TOKENIZER_MAGIC} / 2)")
    pos, tokens = 4 * HEADER_INTS, []
    for i in range(int(h[2])):
        if pos >= len(data) or pos + 1 + data[pos] > len(data):
            fatal(f"tokenizer '{path}' is truncated at token {i} of {h[2]}")
        tokens.append(data[pos + 1:pos + 1 + data[pos]])
        pos += 1 + data[pos]
    return tokens, int(h[3])

# -----------------------------------------------------------------------------
# training


def get_lr(step, args, max_steps):
    """linear warmup over -u steps, then cosine from lr down to lr * -q at the last step (llmc/schedule.h)"""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if max_steps <= args.warmup:
        return args.lr
    progress = min(1.0, (step - args.warmup) / (max_steps - args.warmup))
    return args.lr * (args.final_lr_frac + (1 - args.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def evaluate(model, loader, steps, autocast, device):
    """mean loss over the first `steps` batches of the loader"""
    loader.reset()
    total = 0.0
    for _ in range(steps):
        x, y = loader.next_batch()
        with autocast:
            _, loss = model(x.to(device), y.to(device))
        total += loss.item()
    return total / steps


class EvalTasks:
    """a long-context eval file of data/long_context.py (format in data/README.md and llmc/eval_tasks.h):
    records (M, 5) int64 = (sequence, t, distance, answer, nominal distance); the prediction at input
    position t of val row `sequence` must be `answer`"""

    def __init__(self, path, vocab_size):
        if not os.path.isfile(path):
            fatal(f"cannot open eval file '{path}'")
        data = open(path, "rb").read()
        if len(data) < 4 * HEADER_INTS:
            fatal(f"eval file '{path}': file has {len(data)} bytes, shorter than the 1024-byte header: truncated")
        magic, version, T, nseq, M, task, V, fields = (int(x) for x in np.frombuffer(data[:32], dtype="<i4"))
        if magic != EVAL_MAGIC:
            fatal(f"eval file '{path}': bad magic {magic} (expected {EVAL_MAGIC}): not a long-context eval file")
        if version != 1 or fields != 5:
            fatal(f"eval file '{path}': unknown version {version} / {fields} fields per record (expected 1 / 5)")
        if T < 2 or nseq < 1 or M < 1 or V < 1 or not 1 <= task <= 3:
            fatal(f"eval file '{path}': invalid header: seq_len {T}, num_sequences {nseq}, num_scored {M}, "
                  f"task {task}, vocab size {V}")
        want = 4 * HEADER_INTS + 4 * 5 * M
        if len(data) != want:
            fatal(f"eval file '{path}': file has {len(data)} bytes, but its header says {M} records ({want} bytes)"
                  f": {'truncated' if len(data) < want else 'trailing data'}")
        if V > vocab_size:
            fatal(f"eval file '{path}' is for a vocabulary of {V} tokens, the model has {vocab_size}")
        rec = np.frombuffer(data[4 * HEADER_INTS:], dtype="<i4").reshape(M, 5).astype(np.int64)
        s, t, dist, ans, nom = rec.T
        for bad, what in (((s < 0) | (s >= nseq), "sequence out of range [0, num_sequences)"),
                          ((t < 0) | (t >= T), "position t out of range [0, seq_len T)"),
                          ((ans < 0) | (ans >= V), "answer out of range [0, vocab size)"),
                          ((dist < 1) | (nom < 1), "distance < 1")):
            if bad.any():
                i = int(np.argmax(bad))
                fatal(f"eval file '{path}': record {i} {tuple(rec[i].tolist())}: {what} "
                      f"(T {T}, num_sequences {nseq}, vocab {V})")
        self.path, self.T, self.num_sequences, self.task, self.records = path, T, nseq, task, rec
        self.distances = np.unique(nom)

    def check_loader(self, loader):
        """the val rows must be the file's sequences: same T, unshuffled, whole batches, all in the first shard"""
        if loader.T != self.T:
            fatal(f"eval file '{self.path}' holds sequences of T={self.T}, but the run has -t {loader.T}: its val "
                  f"rows would not be the file's sequences")
        if loader.shuffle:
            fatal(f"eval file '{self.path}': the val loader must not shuffle")
        if self.num_sequences % loader.B:
            fatal(f"eval file '{self.path}' has {self.num_sequences} sequences, not a multiple of B = {loader.B} "
                  f"(the loader drops a partial batch): choose -b dividing it")
        rows = loader.steps_in(loader.shards[0]) * loader.B
        if rows < self.num_sequences:
            fatal(f"eval file '{self.path}' has {self.num_sequences} sequences, but the first val shard "
                  f"'{loader.files[0]}' gives only {rows} rows of T={loader.T}")

    @torch.no_grad()
    def evaluate(self, model, loader, autocast, device):
        """-> [(nominal distance, correct, count)] over the first num_sequences rows of the val loader"""
        loader.reset()
        argmax, targets = [], []
        for _ in range(self.num_sequences // loader.B):
            x, y = loader.next_batch()
            with autocast:
                logits, _ = model(x.to(device))
            argmax.append(logits.argmax(-1).cpu())
            targets.append(y)
        argmax, targets = torch.cat(argmax).numpy(), torch.cat(targets).numpy()
        s, t, _, ans, nom = self.records.T
        mismatch = targets[s, t] != ans
        if mismatch.any():
            i = int(np.argmax(mismatch))
            fatal(f"eval file '{self.path}' does not match the val shards: sequence {s[i]} has target "
                  f"{targets[s[i], t[i]]} at position {t[i]}, the file's answer is {ans[i]} (is -j the val shard "
                  f"this file was written with?)")
        hit = argmax[s, t] == ans
        return [(int(d), int(hit[nom == d].sum()), int((nom == d).sum())) for d in self.distances]


def report_eval(results, step, log):
    """one line per nominal distance: "step N | eval_acc d=D ACC (correct/count)", in main.log without the bar"""
    for d, correct, count in results:
        print(f"step {step} | eval_acc d={d} {correct / count:.6f} ({correct}/{count})")
        if log:
            log.write(f"step {step} eval_acc d={d} {correct / count:.6f} {correct}/{count}\n")
    if log:
        log.flush()


def prompt_ids(args, vocab_size):
    """--prompt "1,2,3" or --prompt_file FILE (decimal ids, whitespace or commas between them) -> list, or None"""
    if args.prompt is not None and args.prompt_file is not None:
        fatal("give the prompt by --prompt or by --prompt_file, not both")
    text = args.prompt if args.prompt is not None else open(args.prompt_file).read() if args.prompt_file else None
    if text is None:
        return None
    ids = []
    for w in re.split(r"[\s,]+", text.strip()):
        if not re.fullmatch(r"\d+", w):
            fatal(f"prompt: '{w[:20]}' is not a token id (decimal ids separated by commas or spaces)")
        if int(w) >= vocab_size:
            fatal(f"prompt: token id {w} is out of range [0, {vocab_size}) of the model's vocabulary")
        ids.append(int(w))
    if not ids:
        fatal("the prompt holds no token ids")
    return ids


def sample_text(model, n, tokenizer, seed, temperature, top_k=0, prompt=None):
    """n tokens after the prompt (default: the tokenizer's end-of-text token, token 0 without one), decoded
    recurrently; prints the time per new token"""
    vocab, eot = tokenizer if tokenizer else (None, 0)
    eot = eot if 0 <= eot < model.cfg.vocab_size else 0
    prompt = torch.tensor([prompt if prompt else [eot]], dtype=torch.long, device=model.wte.device)
    gen = torch.Generator(device=model.wte.device).manual_seed(seed)
    times = [time.time()]
    out = model.generate(prompt, n, temperature, gen, top_k, times)[0].tolist()
    print(f"sampled {n} tokens after a prompt of {prompt.shape[1]}: prompt {times[1] - times[0]:.3f} s (recurrent, one "
          f"step per token), {(times[2] - times[1]) / n * 1e3:.3f} ms per new token", file=sys.stderr)
    if vocab is None:
        return " ".join(map(str, out))
    return b"".join(vocab[t] if t < len(vocab) else b"?" for t in out).decode("utf-8", errors="replace")


def build_model(args, tokenizer):
    """-e: a checkpoint file, else a descriptor (V from -V, else the tokenizer's, else 50257)"""
    if os.path.isfile(args.init):
        model = read_checkpoint(args.init)
        model.cfg.max_seq_len = max(model.cfg.max_seq_len, args.seq_len)
        return model
    V = args.vocab_size if args.vocab_size > 0 else len(tokenizer[0]) if tokenizer else 50257
    if not re.fullmatch(r"d\d+.*", args.init):
        fatal(f"-e '{args.init}' is neither a checkpoint file nor a model descriptor like d12 or d4w256h4k2")
    cfg = config_from_descriptor(args.init, V, args.seq_len)
    try:
        return SessaLM(cfg)
    except (RuntimeError, MemoryError) as e:
        fatal(f"cannot allocate the model of descriptor '{args.init}' ({cfg}): {e}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="The one-letter flags and their defaults are those of the C trainers "
                                       "(llmc/args.h); -y (resume) is not supported here.")
    a = p.add_argument
    a("-i", dest="train", default="data/default/*_train_*.bin", help="train shard glob (default %(default)s)")
    a("-j", dest="val", default="data/default/*_val_*.bin", help="val shard glob (default %(default)s)")
    a("-o", dest="out", default=None, help="output dir: main.log and model_NNNNNNNN.bin (default: none)")
    a("-e", dest="init", default="d4w256h4",
      help="checkpoint path, or descriptor d<L>[w<D>][h<H>][k<Hkv>], D = 64L, H = D/64, Hkv = H (default %(default)s)")
    a("-k", "--tokenizer", dest="tokenizer", default=None,
      help="llm.c tokenizer file (default data/default/tokenizer.bin when it exists)")
    a("-V", dest="vocab_size", type=int, default=-1, help="vocab size for a descriptor init (default: the "
      "tokenizer's, else 50257)")
    a("-b", dest="batch", type=int, default=4, help="batch size B (default %(default)s)")
    a("-t", dest="seq_len", type=int, default=256, help="sequence length T (default %(default)s)")
    a("-d", dest="total_batch", type=int, default=-1, help="tokens per step, a multiple of B*T: gradient "
      "accumulation (default B*T)")
    a("-x", dest="max_steps", type=int, default=-1, help="training steps (default -1: one epoch; 0: none, only "
      "the validation and --eval_tasks at step 0)")
    a("-l", dest="lr", type=float, default=1e-3, help="peak learning rate (default %(default)s)")
    a("-u", dest="warmup", type=int, default=0, help="linear warmup steps (default %(default)s)")
    a("-q", dest="final_lr_frac", type=float, default=0.1, help="cosine decay to lr * this (default %(default)s)")
    a("-c", dest="weight_decay", type=float, default=0.1, help="AdamW weight decay of the 2D weight matrices "
      "(default %(default)s)")
    a("-G", "--grad_clip", dest="grad_clip", type=float, default=1.0, help="global-norm clip (default 1.0, 0 off)")
    a("-v", dest="val_every", type=int, default=50, help="validate every N steps (default 50, 0 never)")
    a("-m", dest="val_steps", type=int, default=10, help="val batches (default %(default)s)")
    a("-s", dest="sample_every", type=int, default=100, help="sample every N steps (default 100, 0 never)")
    a("-g", dest="gen_tokens", type=int, default=64, help="tokens per sample (default %(default)s)")
    a("-n", dest="ckpt_every", type=int, default=0, help="checkpoint every N steps (default 0: only at the end, "
      "when -o is set)")
    a("-S", dest="seed", type=int, default=1337, help="seed (default %(default)s)")
    a("-w", dest="shuffle", type=int, default=1, choices=[0, 1], help="shuffle training data (default 1)")
    a("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0: greedy)")
    a("--top_k", type=int, default=0, help="sample among the k largest logits (default 0: all)")
    a("--prompt", default=None, help="prompt token ids, comma-separated (default: the end-of-text token)")
    a("--prompt_file", default=None, help="prompt token ids from a file (whitespace or commas between them)")
    a("--device", default="cpu", choices=["cpu", "cuda"])
    a("--dtype", default="float32", choices=["float32", "bfloat16"], help="bfloat16 = autocast")
    a("--compile", action="store_true", help="torch.compile the model for training")
    a("--threads", type=int, default=0, help="CPU threads (default 0: all cores)")
    a("--peak_memory", action="store_true", help="print peak memory at the end (CUDA: max_memory_allocated)")
    a("--eval", metavar="CKPT", default=None, help="only print the loss of CKPT on -m batches of -j, and exit")
    a("-E", "--eval_tasks", metavar="EVALFILE", default=None, help="long-context eval file (data/long_context.py) "
      "of the -j shard: accuracy per distance with --eval, and at each validation and the end of training")
    a("--sample", metavar="CKPT", default=None, help="only sample -g tokens from CKPT, and exit")
    a("--write_refs", metavar="DIR", default=None, help="only write the reference dumps into DIR, and exit")
    args = p.parse_args()
    if min(args.batch, args.seq_len, args.val_steps, args.gen_tokens) < 1 \
            or args.max_steps < -1 or min(args.warmup, args.val_every, args.sample_every, args.ckpt_every) < 0:
        fatal("-b, -t, -m, -g must be >= 1; -x >= 0 or -1; -u, -v, -s, -n >= 0")
    if not (args.lr >= 0 and 0 <= args.final_lr_frac <= 1 and args.weight_decay >= 0 and args.grad_clip >= 0
            and args.temperature >= 0 and args.top_k >= 0):
        fatal("-l, -c, -G must be >= 0, -q in [0, 1], --temperature >= 0, --top_k >= 0")
    if args.total_batch == -1:
        args.total_batch = args.batch * args.seq_len
    if args.total_batch < 1 or args.total_batch % (args.batch * args.seq_len) != 0:
        fatal(f"-d {args.total_batch} (tokens per step) must be a multiple of B*T = {args.batch * args.seq_len}")
    if args.tokenizer is None and os.path.isfile("data/default/tokenizer.bin"):
        args.tokenizer = "data/default/tokenizer.bin"
    return args


def eval_flags_from_run(args):
    """--eval of a checkpoint in a run's output dir: its -b -t -m -j come from the run's args.txt (written by the
    C trainers, llmc/args.h) unless given on the command line, so the loss matches the run's main.log"""
    path = os.path.join(os.path.dirname(os.path.abspath(args.eval)), "args.txt")
    if not os.path.isfile(path):
        return ""
    saved = {}
    with open(path) as f:
        for line in f:
            flag, _, value = line.rstrip("\n").partition(" ")
            saved[flag] = value
    given = set(a for a in sys.argv[1:] if a.startswith("-"))
    taken = []
    for flag, dest, conv, long_name in (("-b", "batch", int, "--batch"), ("-t", "seq_len", int, "--seq_len"),
                                        ("-m", "val_steps", int, "--val_steps"), ("-j", "val", str, "--val")):
        if flag in saved and flag not in given and long_name not in given:
            setattr(args, dest, conv(saved[flag]))
            taken.append(f"{flag} {saved[flag]}")
    return f" (from the run's {path}: {' '.join(taken)})" if taken else ""


def main():
    args = parse_args()
    torch.set_num_threads(args.threads or os.cpu_count())
    if args.write_refs:
        write_refs(args.write_refs)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        fatal("--device cuda but no CUDA device is available")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    tokenizer = read_tokenizer(args.tokenizer) if args.tokenizer else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

    if args.eval or args.sample:
        model = read_checkpoint(args.eval or args.sample).to(device).eval()
        if args.eval:
            note = eval_flags_from_run(args)
            loader = DataLoader(args.val, args.batch, args.seq_len, model.cfg.vocab_size)
            loss = evaluate(model, loader, args.val_steps, autocast, device)
            print(f"val loss {loss:.6f} | {args.eval} | B {args.batch} T {args.seq_len}, {args.val_steps} batches of "
                  f"{args.val}{note}")
            if args.eval_tasks:
                tasks = EvalTasks(args.eval_tasks, model.cfg.vocab_size)
                tasks.check_loader(loader)
                report_eval(tasks.evaluate(model, loader, autocast, device), 0, None)
        else:
            with autocast:
                print(sample_text(model, args.gen_tokens, tokenizer, args.seed, args.temperature, args.top_k,
                                  prompt_ids(args, model.cfg.vocab_size)))
        return

    model = build_model(args, tokenizer).to(device)
    cfg = model.cfg
    if tokenizer and len(tokenizer[0]) != cfg.vocab_size:
        print(f"warning: tokenizer has {len(tokenizer[0])} tokens, the model {cfg.vocab_size}")
    accum = args.total_batch // (args.batch * args.seq_len)
    print(f"model: V {cfg.vocab_size} (Vp {cfg.padded_vocab}) L {cfg.n_layer} D {cfg.d_model} H {cfg.n_head} "
          f"Hkv {cfg.n_kv_head} rope {cfg.use_rope} {'no feedback (f0)' if cfg.no_feedback else f'gamma_max {cfg.gamma_max:g}'} | "
          f"{sum(p.numel() for p in model.parameters())} parameters | B {args.batch} T {args.seq_len} | "
          f"grad accumulation {accum} | threads {torch.get_num_threads()} | {args.device} {args.dtype}")
    train_loader = DataLoader(args.train, args.batch, args.seq_len, cfg.vocab_size, args.shuffle == 1, args.seed)
    val_loader = DataLoader(args.val, args.batch, args.seq_len, cfg.vocab_size) \
        if args.val_every > 0 or args.eval_tasks else None
    tasks = EvalTasks(args.eval_tasks, cfg.vocab_size) if args.eval_tasks else None
    if tasks:
        tasks.check_loader(val_loader)
    max_steps = args.max_steps if args.max_steps >= 0 else train_loader.steps_per_epoch // accum
    if args.max_steps < 0 and max_steps < 1:
        fatal(f"the training data holds less than one step of {args.total_batch} tokens")
    # AdamW, weight decay on the 2D weight matrices only (as the C trainers; the reference dumps decay all)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    fwd = torch.compile(model) if args.compile else model
    log = None
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        log = open(os.path.join(args.out, "main.log"), "w")

    for step in range(max_steps + 1):
        last = step == max_steps
        if args.val_every and (step % args.val_every == 0 or last):
            val = evaluate(fwd, val_loader, args.val_steps, autocast, device)
            print(f"step {step} | val loss {val:.6f}")
            if log:
                log.write(f"step {step} val_loss {val:.6f}\n")
                log.flush()
        if tasks and ((args.val_every and step % args.val_every == 0) or last):
            report_eval(tasks.evaluate(model, val_loader, autocast, device), step, log)
        if args.sample_every and step > 0 and (step % args.sample_every == 0 or last):
            text = sample_text(model, args.gen_tokens, tokenizer, args.seed + step, args.temperature, args.top_k,
                               prompt_ids(args, model.cfg.vocab_size))
            print(f"generating:\n---\n{text}\n---")
        if args.out and step > 0 and ((args.ckpt_every and step % args.ckpt_every == 0) or last):
            write_checkpoint(model, os.path.join(args.out, f"model_{step:08d}.bin"))
        if last:
            break
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for _ in range(accum):
            x, y = train_loader.next_batch()
            with autocast:
                _, micro_loss = fwd(x.to(device), y.to(device))
            (micro_loss / accum).backward()
            loss += micro_loss.item() / accum
        norm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip if args.grad_clip > 0 else math.inf).item()
        lr = get_lr(step, args, max_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        sync(device)
        dt = time.perf_counter() - t0
        print(f"step {step + 1}/{max_steps} | loss {loss:.6f} | lr {lr:.2e} | norm {norm:.4f} | {dt * 1e3:.1f} ms | "
              f"{args.total_batch / dt:.0f} tok/s")
        if log:
            log.write(f"step {step + 1} train_loss {loss:.6f} lr {lr:.6e} norm {norm:.6f} tok_s "
                      f"{args.total_batch / dt:.1f}\n")
            log.flush()
    if log:
        log.close()
    if args.peak_memory:
        if device.type == "cuda":
            print(f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB (torch.cuda.max_memory_allocated)")
        else:
            import resource
            print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB (max RSS)")


if __name__ == "__main__":
    main()
