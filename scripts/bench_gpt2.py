"""
GPT-2 baseline for scripts/bench_gpu.sh: the standard PyTorch recipe for a GPT-2 of the same depth, width,
vocabulary and batch as the Sessa model being benchmarked, trained on random tokens, so its tok/s, MFU and
peak memory can be put next to train_sessacu's.
  - pre-LayerNorm GPT-2 blocks (attention + 4x GELU MLP), learned positions, tied head, biases
  - attention: F.scaled_dot_product_attention(is_causal=True) (flash / memory-efficient kernels)
  - bf16 autocast, fp32 weights, fused AdamW (torch.optim.AdamW(fused=True)), grad clip 1.0
  - --compile: torch.compile of the model
  - the embedding is padded to a multiple of 128 rows (as train_sessacu's wte, and nanoGPT's 50304)
 MFU uses the same convention as llmc/flops.h: 3 x forward, forward = 2 x weights of the Linears per token
 + 2*T*D of causal attention per layer (QK^T and PV, each 2*(T/2)*D) + 2*V*D for the head; elementwise work not
 counted; peak = 989 TFLOPS (H100/H200 dense bf16) unless --peak_tflops.
 Prints the same step lines as train_sessa.py ("... | X ms | Y% MFU | Z tok/s") and the peak memory.
 usage: python scripts/bench_gpt2.py -L 12 -D 768 -H 12 -V 50257 -b 8 -t 1024 -x 20 [--compile]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, D, H):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.fc_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.H, D // self.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, D))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, L, D, H, V, T):
        super().__init__()
        Vp = (V + 127) // 128 * 128
        self.wte, self.wpe = nn.Embedding(Vp, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList(Block(D, H) for _ in range(L))
        self.lnf = nn.LayerNorm(D)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.lnf(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def flops_per_token(L, D, V, T):
    linear = 3 * D * D + D * D + 8 * D * D        # qkv, proj, MLP
    layer = 2 * linear + 2 * T * D                # + causal attention
    return 3 * (L * layer + 2 * V * D)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-L", type=int, default=12, help="layers")
    ap.add_argument("-D", type=int, default=768, help="width")
    ap.add_argument("-H", type=int, default=12, help="heads")
    ap.add_argument("-V", type=int, default=50257, help="vocabulary")
    ap.add_argument("-b", type=int, default=8, help="batch")
    ap.add_argument("-t", type=int, default=1024, help="sequence length")
    ap.add_argument("-x", type=int, default=20, help="steps")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak_tflops", type=float, default=989.0)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: bench_gpt2.py needs a CUDA GPU")
    if a.D % a.H != 0:
        raise SystemExit(f"error: width {a.D} is not a multiple of the heads {a.H}")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = GPT2(a.L, a.D, a.H, a.V, a.t).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if a.compile else model
    print(f"GPT-2 L={a.L} D={a.D} H={a.H} V={a.V} | {nparams} parameters | B={a.b} T={a.t} | "
          f"{'compiled' if a.compile else 'eager'} | {torch.cuda.get_device_name()}")
    g = torch.Generator(device=dev).manual_seed(0)
    fpt = flops_per_token(a.L, a.D, a.V, a.t)
    ntok = a.b * a.t
    for step in range(a.x):
        x = torch.randint(0, a.V, (a.b, a.t), device=dev, generator=g)
        y = torch.randint(0, a.V, (a.b, a.t), device=dev, generator=g)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if not math.isfinite(lv):
            raise SystemExit(f"error: step {step + 1}: loss {lv}")
        print(f"step {step + 1}/{a.x} | loss {lv:.6f} | norm {norm.item():.4f} | {dt * 1e3:.1f} ms | "
              f"{100 * fpt * ntok / dt / (a.peak_tflops * 1e12):.1f}% MFU | {ntok / dt:.0f} tok/s")
    print(f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB (torch.cuda.max_memory_allocated)")


if __name__ == "__main__":
    main()
