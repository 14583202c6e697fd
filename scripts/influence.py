"""
Influence by distance: how much does the input at position t-k move the output at position t?

For a checkpoint (any DESIGN.md checkpoint: Sessa or the feedback-off baseline f0) and a validation shard:

    g(k) = mean over sampled (sequence, t) of || d (r . out_t) / d in_{t-k} ||_2 ,   k = 0 .. K

  whole stack: in = the input embeddings x0 = wte[tokens], out = LayerNorm_f(x_L) (what the tied head reads);
  layer l:     in = the layer's input x_l,                  out = its output x_{l+1} = x_l + Linear_out(...)
               (on the same real activations; k = 0 includes the residual's identity).
r is a fresh random unit vector per sample (so E g^2 = ||J_k||_F^2 / D for the Jacobian J_k = d out_t / d in_{t-k}):
one backward pass per sample gives every k at once. Each of the B sequences of a batch gets its own t, drawn
uniformly from [K + jmin, T-1], so every k in 0..K has the same samples and every source position t-k is at least
jmin (--jmin): causal softmax mixing makes the first positions special (a token at j near 0 feeds every later
row; under uniform attention its weight in a Sessa chain grows like j^-gamma), and jmin > 0 keeps that effect of
absolute position out of the distance curve. The B samples share one backward, since sequences never mix.
Everything runs in float64 (or --dtype float32).

Written out: a CSV (k, stack, layer0, ..., layer{L-1}; the mean norm) and, for k in [--kmin, K], least-squares fits
in log space of a power law  g ~ C k^-p  (log g linear in log k) and an exponential  g ~ C exp(-k/lambda)
(log g linear in k), with their R^2 (of log g): a JSON next to the CSV, a log-log plot with the fits (--plot).

    python scripts/influence.py CKPT -j 'data/default/*_val_*.bin' -t 256 -K 128 -n 256 -o infl.csv --plot infl.png

A probe distance K >= T (or K + jmin >= T) is an error (position t-k must exist), as is a checkpoint or shard that
does not load.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import train_sessa as ts  # noqa: E402


def stack_forward(model, x0):
    """x0 (B,T,D) embeddings -> LayerNorm_f(x_L) (B,T,D), and the inputs of every layer [x_0 .. x_{L-1}]"""
    xs, h = [], x0
    for layer in model.layers:
        xs.append(h)
        h = layer(h)
    return model.lnf(h), xs


def input_gradient(fn, x_in, ts_, r):
    """d (sum_b r_b . fn(x_in)[b, ts_[b]]) / d x_in, (B,T,D): row b of the result is sample b's gradient"""
    x = x_in.detach().requires_grad_(True)
    out = fn(x)                                                    # (B,T,D)
    b = torch.arange(x.shape[0], device=x.device)
    (g,) = torch.autograd.grad((out[b, ts_] * r).sum(), x)
    return g


def probe_batch(model, idx, ts_, K, gen):
    """idx (B,T) tokens, ts_ (B,) positions >= K -> {name: (B, K+1) norms}, name = 'stack', 'layer0', ..."""
    B, T = idx.shape
    D = model.cfg.d_model
    dtype, dev = model.wte.dtype, model.wte.device
    idx, ts_ = idx.to(dev), ts_.to(dev)
    b = torch.arange(B, device=dev)
    cols = ts_[:, None] - torch.arange(K + 1, device=dev)[None, :]   # (B, K+1): position t - k

    def unit(shape):   # drawn on the CPU generator in float64: the same directions on every device
        r = torch.randn(shape, generator=gen, dtype=torch.float64)
        return (r / r.norm(dim=-1, keepdim=True)).to(dev, dtype)

    res = {}
    x0 = model.wte[idx].detach()
    g = input_gradient(lambda x: stack_forward(model, x)[0], x0, ts_, unit((B, D)))
    res["stack"] = g[b[:, None], cols].norm(dim=-1)
    with torch.no_grad():
        _, xs = stack_forward(model, x0)
    for l, layer in enumerate(model.layers):
        g = input_gradient(layer, xs[l], ts_, unit((B, D)))
        res[f"layer{l}"] = g[b[:, None], cols].norm(dim=-1)
    return res


def fit_decay(k, g):
    """least squares in log space over the given k (>= 1): power law and exponential -> dict"""
    k, g = np.asarray(k, dtype=np.float64), np.asarray(g, dtype=np.float64)
    ok = g > 0
    k, y = k[ok], np.log(g[ok])
    out = {"k_range": [int(k.min()), int(k.max())] if len(k) else None}
    if len(k) < 3:
        return out

    def r2(pred):
        ss = ((y - y.mean()) ** 2).sum()
        return float(1.0 - ((y - pred) ** 2).sum() / ss) if ss > 0 else float("nan")
    a, c = np.polyfit(np.log(k), y, 1)
    out["power_law"] = {"exponent_p": float(-a), "C": float(math.exp(c)), "r2_log": r2(a * np.log(k) + c)}
    a, c = np.polyfit(k, y, 1)
    out["exponential"] = {"decay_length": float(-1.0 / a) if a != 0 else float("inf"), "C": float(math.exp(c)),
                          "r2_log": r2(a * k + c)}
    return out


def run_probe(model, loader, K, n_samples, seed=0, kmin=2, jmin=0):
    """-> (k array, {name: mean norm over samples (K+1,)}, {name: fits}); loader yields (B,T) batches in order"""
    T = loader.T
    if not 0 <= K < T:
        ts.fatal(f"probe distance K={K} must be in [0, T) with T = {T} (position t-K must exist in the sequence)")
    if not 0 <= jmin < T - K:
        ts.fatal(f"--jmin {jmin} must be in [0, T-K) = [0, {T - K}): t is drawn from [K + jmin, T)")
    if not 1 <= kmin <= K:
        ts.fatal(f"--kmin {kmin} must be in [1, K={K}]")
    gen = torch.Generator().manual_seed(seed)
    sums, n = {}, 0
    loader.reset()
    while n < n_samples:
        x, _ = loader.next_batch()
        x = x[:n_samples - n]
        ts_ = torch.randint(K + jmin, T, (x.shape[0],), generator=gen)
        for name, v in probe_batch(model, x, ts_, K, gen).items():
            sums[name] = sums.get(name, 0.0) + v.double().sum(0).cpu()
        n += x.shape[0]
    mean = {name: (v / n).numpy() for name, v in sums.items()}
    k = np.arange(K + 1)
    fits = {name: fit_decay(k[kmin:], v[kmin:]) for name, v in mean.items()}
    return k, mean, fits


def write_csv(path, k, mean):
    names = list(mean)
    with open(path, "w") as fp:
        fp.write(",".join(["k"] + names) + "\n")
        for i in range(len(k)):
            fp.write(",".join([str(int(k[i]))] + [f"{mean[nm][i]:.9e}" for nm in names]) + "\n")


def read_csv(path):
    with open(path) as fp:
        names = fp.readline().strip().split(",")[1:]
        rows = np.array([[float(v) for v in line.split(",")] for line in fp if line.strip()])
    return rows[:, 0].astype(int), {nm: rows[:, i + 1] for i, nm in enumerate(names)}


def plot_influence(ax, k, mean, fits, label="", names=None, kmin=2, color=None, fit_of="power_law"):
    """g(k) on log-log axes (k >= 1), with the fitted power law (dashed) and exponential (dotted) of each curve"""
    names = names or list(mean)
    for nm in names:
        kk, g = k[1:], mean[nm][1:]
        line, = ax.loglog(kk, g, label=f"{label}{nm}", color=color, lw=1.4)
        f = fits.get(nm, {})
        ks = k[kmin:].astype(float)
        if "power_law" in f:
            p = f["power_law"]
            ax.loglog(ks, p["C"] * ks ** -p["exponent_p"], "--", color=line.get_color(), lw=0.8,
                      label=f"  power p={p['exponent_p']:.2f} (R2 {p['r2_log']:.2f})")
        if "exponential" in f:
            e = f["exponential"]
            ax.loglog(ks, e["C"] * np.exp(-ks / e["decay_length"]), ":", color=line.get_color(), lw=0.8,
                      label=f"  exp lambda={e['decay_length']:.3g} (R2 {e['r2_log']:.2f})")
    ax.set_xlabel("distance k")
    ax.set_ylabel("mean ||d out_t / d in_{t-k}||")
    ax.grid(True, which="both", alpha=0.3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="model checkpoint (DESIGN.md section 4), Sessa or f0")
    p.add_argument("-j", dest="val", required=True, help="validation shard glob")
    p.add_argument("-t", dest="seq_len", type=int, default=256, help="sequence length T (default %(default)s)")
    p.add_argument("-b", dest="batch", type=int, default=8, help="sequences per backward (default %(default)s)")
    p.add_argument("-K", dest="max_k", type=int, default=None, help="largest distance K < T (default T/2)")
    p.add_argument("-n", dest="samples", type=int, default=128, help="sampled positions t (default %(default)s)")
    p.add_argument("--kmin", type=int, default=2, help="smallest k of the fits (default %(default)s)")
    p.add_argument("--jmin", type=int, default=0, help="smallest source position t-k: t is drawn from [K+jmin, T) "
                   "(default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--init", action="store_true", help="probe the checkpoint's config at DESIGN.md initialisation "
                   "(seeded by --seed) instead of its trained weights")
    p.add_argument("-o", dest="out", required=True, help="output CSV (the fits go to OUT.json)")
    p.add_argument("--plot", default=None, help="also draw the log-log plot into this PNG")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    K = a.seq_len // 2 if a.max_k is None else a.max_k
    if not 0 <= K < a.seq_len:
        ts.fatal(f"probe distance -K {K} must be in [0, T) with T = {a.seq_len} (position t-K must exist)")
    if a.samples < 1 or a.batch < 1:
        ts.fatal("-n and -b must be >= 1")
    model = ts.read_checkpoint(a.ckpt)
    if a.init:
        torch.manual_seed(a.seed)
        model = ts.SessaLM(model.cfg)
    if a.device == "cuda" and not torch.cuda.is_available():
        ts.fatal("--device cuda but no CUDA device is available")
    model = model.to(device=a.device, dtype=getattr(torch, a.dtype)).eval()
    loader = ts.DataLoader(a.val, a.batch, a.seq_len, model.cfg.vocab_size)
    if not 0 <= a.jmin < a.seq_len - K:
        ts.fatal(f"--jmin {a.jmin} must be in [0, T-K) = [0, {a.seq_len - K})")
    k, mean, fits = run_probe(model, loader, K, a.samples, a.seed, a.kmin, a.jmin)
    write_csv(a.out, k, mean)
    meta = {"ckpt": a.ckpt, "no_feedback": model.cfg.no_feedback, "T": a.seq_len, "K": K, "jmin": a.jmin,
            "samples": a.samples,
            "init": a.init, "fits": fits}
    with open(a.out + ".json", "w") as fp:
        json.dump(meta, fp, indent=1)
    for nm, f in fits.items():
        pl, ex = f.get("power_law", {}), f.get("exponential", {})
        print(f"{nm:8s} g(1) {mean[nm][1]:.3e} g(K) {mean[nm][K]:.3e} | power p {pl.get('exponent_p', float('nan')):.3f} "
              f"R2 {pl.get('r2_log', float('nan')):.3f} | exp lambda {ex.get('decay_length', float('nan')):.3g} "
              f"R2 {ex.get('r2_log', float('nan')):.3f}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 5))
        plot_influence(ax, k, mean, fits, kmin=a.kmin)
        ax.set_title(f"{os.path.basename(a.ckpt)} ({'f0' if model.cfg.no_feedback else 'Sessa'}), T={a.seq_len}")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
    print(f"wrote {a.out}, {a.out}.json" + (f", {a.plot}" if a.plot else ""))


if __name__ == "__main__":
    main()
