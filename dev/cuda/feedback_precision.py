"""
Precision of the feedback solve near gamma_max (issue 11's bar): on gamma_hi-like inputs (gamma = 0.999 tanh(r),
r ~ 4 +- 0.5 as in the gamma_hi reference config; logits O(1); f, qb, kb bf16 values as the model's activations),
compare against a float64 reference
  ours:     llmc/feedback.cuh (version 2) forward + backward, through the io mode of dev/cuda/feedback_backward
  official: train_sessa.py's feedback_logits / feedback_alpha / feedback_solve under bf16 autocast, i.e. what
            `train_sessa.py --dtype bfloat16` does (bf16 logits, fp32 softmax and triangular solve), autograd backward
and print the relative errors of s, u = dL/df, dqb, dkb, dgamma side by side: the normwise ||x - ref||_F / ||ref||_F
(the criterion) and, for information, max|x - ref| / max|ref|. The loss is sum(s * gs) with a random gs. Exit code 1
if ours has a larger normwise error than the official form on any tensor (2 on a usage or run error).
dqb and dkb are bf16 outputs in both forms, so both carry the final bf16 rounding (~2^-9 / sqrt(3) normwise); their
max-entry errors are one rounding of one entry each and differ by chance, which is why the max is not the criterion.

  GPU (the bar):  make -C dev/cuda bin/feedback_backward && python3 dev/cuda/feedback_precision.py   (T=4096, D=768)
  CPU (small):    make -C dev/cuda_emu build/bin/feedback_backward && \
                  python3 dev/cuda/feedback_precision.py --bin dev/cuda_emu/build/bin/feedback_backward --T 320 --D 64
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from train_sessa import feedback_alpha, feedback_logits, feedback_solve  # noqa: E402


def make_inputs(B, T, D, seed):
    g = torch.Generator().manual_seed(seed)
    bf = lambda x: x.to(torch.bfloat16).to(torch.float32)   # noqa: E731  bf16 values held in fp32
    f = bf(torch.randn(B, T, D, generator=g))
    qb = bf(torch.randn(B, T, D, generator=g))               # qb.kb / sqrt(D) ~ N(0, 1): O(1) logits
    kb = bf(torch.randn(B, T, D, generator=g))
    gamma = (0.999 * torch.tanh(4.0 + 0.5 * torch.randn(B, T, generator=g))).float()
    gs = torch.randn(B, T, D, generator=g)
    return f, qb, kb, gamma, gs


def run_torch(inputs, dtype, device, autocast):
    """s and the gradients of sum(s * gs) w.r.t. f (= u), qb, kb, gamma, as float64 CPU tensors"""
    leaves = [x.to(device=device, dtype=dtype).clone().requires_grad_(True) for x in inputs[:4]]
    f, qb, kb, gamma = leaves
    gs = inputs[4].to(device=device, dtype=dtype)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        Z = feedback_logits(qb, kb)
        # CUDA autocast runs softmax in fp32; CPU autocast would keep it in bf16: do what the GPU does everywhere
        alpha = feedback_alpha(Z.float() if autocast and device == "cpu" else Z)
        s = feedback_solve(f, gamma, alpha)
    (s.to(gs.dtype) * gs).sum().backward()
    if autocast:
        print(f"  official form dtypes: logits {Z.dtype}, alpha {alpha.dtype}, solve {s.dtype}")
    out = [s] + [x.grad for x in leaves]
    return [x.detach().to("cpu", torch.float64) for x in out]


def run_ours(binary, inputs):
    f, qb, kb, gamma, gs = [x.numpy().astype(np.float32) for x in inputs]
    B, T, D = f.shape
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        with open(fin, "wb") as fp:
            np.array([B, T, D], dtype=np.int32).tofile(fp)
            for x in (f, qb, kb, gamma, gs):
                x.tofile(fp)
        r = subprocess.run([binary, "io", fin, fout], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            sys.exit(f"{binary} io failed with exit code {r.returncode}")
        a = np.fromfile(fout, dtype=np.float32)
    n = B * T * D
    if a.size != 4 * n + B * T:
        sys.exit(f"{binary} io wrote {a.size} floats, expected {4 * n + B * T}")
    parts = [a[i * n:(i + 1) * n].reshape(B, T, D) for i in range(4)] + [a[4 * n:].reshape(B, T)]
    s, u, dq, dk, dg = [torch.from_numpy(p.copy()).double() for p in parts]
    return [s, u, dq, dk, dg]


def errors(x, ref):
    fro = ((x - ref).norm() / ref.norm()).item()
    mx = ((x - ref).abs().max() / ref.abs().max()).item()
    return fro, mx


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "dev", "cuda", "bin", "feedback_backward"),
                    help="dev/cuda/bin/feedback_backward (GPU, the default) or the emulator's build")
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--D", type=int, default=768)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"error: {args.bin} is not an executable (build it first)", file=sys.stderr)
        sys.exit(2)
    print(f"feedback precision, gamma_hi-like inputs: B={args.B} T={args.T} D={args.D} seed={args.seed}, "
          f"torch on {args.device}")
    inputs = make_inputs(args.B, args.T, args.D, args.seed)
    g = inputs[3]
    print(f"  gamma in [{g.min().item():.4f}, {g.max().item():.4f}]")
    ref = run_torch(inputs, torch.float64, args.device, autocast=False)
    official = run_torch(inputs, torch.float32, args.device, autocast=True)
    ours = run_ours(args.bin, inputs)
    names = ["s", "u=df", "dqb", "dkb", "dgamma"]
    print(f"  {'tensor':8s} {'ours ||e||/||ref||':>19s} {'official':>12s}   {'(info) ours max|e|/max|ref|':>28s} {'official':>12s}")
    worse = []
    for name, o, p, r in zip(names, ours, official, ref):
        fo, mo = errors(o, r)
        fp, mp = errors(p, r)
        bad = fo > fp
        if bad:
            worse.append(name)
        print(f"  {name:8s} {fo:19.3e} {fp:12.3e}   {mo:28.3e} {mp:12.3e}  {'WORSE' if bad else 'ok'}")
    if worse:
        print(f"FAIL: ours is less precise than the official form on {', '.join(worse)}")
        sys.exit(1)
    print("ok: ours is at least as precise as the official form on every tensor")


if __name__ == "__main__":
    main()
