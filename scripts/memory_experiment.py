"""
The memory experiment of issue 14, one command: does distant information survive, with and without the
feedback path? Trains Sessa and the feedback-off baseline f0 (DESIGN.md section 1: s = f, no Linear_fb, no
gamma) with EQUAL WIDTH AND DEPTH (same descriptor, suffix f0; f0 has 2D^2+3D+1 fewer parameters per layer),
the same data, the same tokens, the same seed, on
  (a) multi-query associative recall of data/long_context.py (mqar) at distances up to T, and
  (b) the default text corpus (data/default, Austen, bytes),
then probes each model (trained, and at its DESIGN.md initialisation) with scripts/influence.py and draws
accuracy by distance and influence by distance for both on one page.

    python scripts/memory_experiment.py                      # CPU, ~30 min on 2 shared cores: d2w64h2, T 64
    python scripts/memory_experiment.py --gpu                # GPU (./train_sessacu, probe on cuda): d4w256h4, T 1024
    python scripts/memory_experiment.py --steps 300 --text_steps 300 --out /tmp/quick   # a quick look

Writes into --out: data/ (the task's shards), runs/{task,text}_{sessa,f0}/ (main.log, checkpoints),
influence/*.csv (+ .json fits), memory_experiment.png (the page) and summary.md (configs, accuracy per
distance, final losses, fitted power-law exponents and exponential decay lengths with their R^2).
Trainings run with the C trainer (CPU, both models at once, one thread each) or the CUDA trainer (--gpu).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

PRESETS = {  # model, T, B, steps (task), steps (text), lr, mqar distances, pairs, probe K, jmin, samples
    "cpu": dict(model="d2w64h2", T=64, B=32, steps=12000, text_steps=3000, lr=3e-3, distances="2,8,20,40",
                pairs=4, K=32, jmin=16, samples=256, num_train=40000),
    "gpu": dict(model="d4w256h4", T=1024, B=32, steps=5000, text_steps=5000, lr=1e-3,
                distances="16,64,256,512,900", pairs=16, K=512, jmin=256, samples=256, num_train=100000),
}


def sh(cmd, log=None, env=None, cwd=ROOT):
    """run cmd (list), raise with its output on failure"""
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as fp:
        r = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=fp if log else None,
                           stderr=subprocess.STDOUT if log else None)
    if r.returncode != 0:
        tail = open(log).read()[-3000:] if log else ""
        raise SystemExit(f"error: command failed ({r.returncode}): {' '.join(cmd)}\n{tail}")


def parallel(jobs):
    """[(cmd, log, env)] run at once (CPU: one thread each); raise if any fails"""
    procs = []
    for cmd, log, env in jobs:
        print("+", " ".join(cmd), f"> {log}", flush=True)
        procs.append((cmd, log, subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=open(log, "w"),
                                                 stderr=subprocess.STDOUT)))
    bad = [(cmd, log) for cmd, log, p in procs if p.wait() != 0]
    if bad:
        raise SystemExit("error: failed: " + "; ".join(f"{' '.join(c)} (see {l})" for c, l in bad))


def read_log(path):
    """main.log (+ eval_final.log next to it, --gpu) -> (val [(step, loss)], acc {step: {d: (acc, correct, count)}})"""
    val, acc = [], {}
    extra = os.path.join(os.path.dirname(path), "eval_final.log")
    lines = list(open(path)) + (list(open(extra)) if os.path.isfile(extra) else [])
    for line in lines:
        w = line.split()
        if len(w) >= 4 and w[2] == "val_loss":
            val.append((int(w[1]), float(w[3])))
        elif len(w) >= 5 and w[2] == "eval_acc":
            c, n = w[5].split("/") if len(w) > 5 else (0, 0)
            acc.setdefault(int(w[1]), {})[int(w[3][2:])] = (float(w[4]), int(c), int(n))
    return val, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="the GPU preset: ./train_sessacu, bigger model, T, steps")
    ap.add_argument("--out", default=None, help="output dir (default out_memory_cpu / out_memory_gpu)")
    for k in ("model", "T", "B", "steps", "text_steps", "lr", "distances", "pairs", "K", "jmin", "samples", "num_train"):
        ap.add_argument(f"--{k}", default=None, type=type(PRESETS["cpu"][k]),
                        help=f"override the preset (cpu {PRESETS['cpu'][k]}, gpu {PRESETS['gpu'][k]})")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--skip_train", action="store_true", help="reuse the runs already in --out (probe and draw)")
    ap.add_argument("--draw_only", action="store_true", help="reuse the runs and probes already in --out (draw)")
    a = ap.parse_args()
    a.skip_train = a.skip_train or a.draw_only
    P = dict(PRESETS["gpu" if a.gpu else "cpu"])
    for k in P:
        if getattr(a, k) is not None:
            P[k] = getattr(a, k)
    out = os.path.abspath(a.out or ("out_memory_gpu" if a.gpu else "out_memory_cpu"))
    T, B, K = P["T"], P["B"], P["K"]
    if not (0 < K < T and 0 <= P["jmin"] < T - K):
        raise SystemExit(f"error: probe distance K={K} must be in (0, T) with T = {T}, and jmin {P['jmin']} in [0, T-K)")
    if P["model"].endswith("f0"):
        raise SystemExit("error: --model is the Sessa descriptor; the f0 baseline appends the suffix itself")
    os.makedirs(out, exist_ok=True)
    t_start = time.time()

    # data: the mqar task at distances up to T, and the default corpus
    task_dir = os.path.join(out, "data", "mqar")
    if not a.draw_only and not os.path.isfile(os.path.join(task_dir, "mqar_eval.bin")):
        sh([sys.executable, "data/long_context.py", "--task", "mqar", "--seq-len", str(T), "--distances",
            P["distances"], "--num-pairs", str(P["pairs"]), "--num-queries", str(P["pairs"]), "--num-train",
            str(P["num_train"]), "--num-val", str(16 * B), "--seed", "1", "--out", os.path.join(out, "data")],
           log=os.path.join(out, "data_mqar.log"))
    if not a.draw_only:
        sh(["bash", "data/prepare_default.sh"], log=os.path.join(out, "data_default.log"))
    data = {
        "task": dict(train=f"{task_dir}/mqar_train_*.bin", val=f"{task_dir}/mqar_val_000000.bin",
                     tok=f"{task_dir}/tokenizer.bin", steps=P["steps"],
                     extra=["-E", f"{task_dir}/mqar_eval.bin"]),
        "text": dict(train="data/default/*_train_*.bin", val="data/default/*_val_*.bin",
                     tok="data/default/tokenizer.bin", steps=P["text_steps"], extra=[]),
    }
    models = {"sessa": P["model"], "f0": P["model"] + "f0"}
    trainer = "./train_sessacu" if a.gpu else "./train_sessa"
    if not a.skip_train:
        sh(["make", "--no-print-directory", trainer[2:]], log=os.path.join(out, "build.log"))
    runs = {}
    for dname, d in data.items():
        jobs = []
        for mname, desc in models.items():
            rdir = os.path.join(out, "runs", f"{dname}_{mname}")
            runs[(dname, mname)] = rdir
            cmd = [trainer, "-e", desc, "-V", "256", "-k", d["tok"], "-i", d["train"], "-j", d["val"], "-t", str(T),
                   "-b", str(B), "-l", str(P["lr"]), "-u", str(min(100, d["steps"] // 10)), "-x", str(d["steps"]),
                   "-v", str(max(1, d["steps"] // 10)), "-m", "8", "-s", "0", "-n", "0", "-S", str(a.seed),
                   "-o", rdir] + d["extra"]
            jobs.append((cmd, rdir + ".out", {"OMP_NUM_THREADS": "1"}))
            os.makedirs(rdir, exist_ok=True)
        if not a.skip_train:
            if a.gpu:
                for j in jobs:
                    parallel([j])
            else:
                parallel(jobs)
        if a.gpu and dname == "task" and not a.skip_train:
            # the CUDA trainer has no -E: the final accuracy per distance comes from the PyTorch reference
            for mname in models:
                rdir = runs[(dname, mname)]
                ckpt = os.path.join(rdir, f"model_{d['steps']:08d}.bin")
                log = os.path.join(rdir, "eval_final.out")
                sh([sys.executable, "train_sessa.py", "--eval", ckpt, "-j", d["val"], "-t", str(T), "-b", str(B),
                    "-m", "1", "-E", d["extra"][1], "--device", "cuda"], log=log)
                with open(os.path.join(rdir, "eval_final.log"), "w") as fp:
                    for line in open(log):   # "step 0 | eval_acc d=16 0.95 (61/64)" -> main.log form at the last step
                        w = line.replace("|", " ").replace("(", " ").replace(")", " ").split()
                        if len(w) >= 6 and w[2] == "eval_acc":
                            fp.write(f"step {d['steps']} eval_acc {w[3]} {w[4]} {w[5]}\n")

    # the probe: every trained model and its initialisation, on the val shard of its data
    idir = os.path.join(out, "influence")
    os.makedirs(idir, exist_ok=True)
    probes = {}
    for (dname, mname), rdir in runs.items():
        ckpt = os.path.join(rdir, f"model_{data[dname]['steps']:08d}.bin")
        for init in (False, True):
            name = f"{dname}_{mname}_{'init' if init else 'trained'}"
            csv = os.path.join(idir, name + ".csv")
            cmd = [sys.executable, "scripts/influence.py", ckpt, "-j", data[dname]["val"], "-t", str(T), "-K", str(K),
                   "-n", str(P["samples"]), "--jmin", str(P["jmin"]), "-b", "8", "-o", csv, "--seed", "0"] + (["--init"] if init else []) + \
                  (["--device", "cuda", "--dtype", "float32"] if a.gpu else ["--threads", "2"])
            if not a.draw_only:
                sh(cmd, log=os.path.join(idir, name + ".log"))
            probes[name] = csv
    draw(out, P, runs, probes, data, models, None if a.draw_only else time.time() - t_start, a.gpu)


class _NoPlot:
    """stands in for matplotlib where it is not installed: every call does nothing, summary.md is still written"""
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs):
        return [self]


def draw(out, P, runs, probes, data, models, seconds, gpu):
    import influence
    import train_sessa as ts
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2, 3, figsize=(17, 10.5))
    except ImportError:
        print("warning: no matplotlib: writing summary.md only (draw later with --draw_only where it is installed)")
        fig, axes = _NoPlot(), {(r, c): _NoPlot() for r in range(2) for c in range(3)}

    colors = {"sessa": "tab:blue", "f0": "tab:red"}
    label = {"sessa": f"Sessa {models['sessa']}", "f0": f"f0 {models['f0']}"}
    summary = ["# Memory experiment (issue 14)", "",
               f"Equal width and depth: Sessa `{models['sessa']}` vs the feedback-off baseline `{models['f0']}`; "
               f"T {P['T']}, B {P['B']}, lr {P['lr']}, seed-matched, {'GPU (train_sessacu)' if gpu else 'CPU (train_sessa)'}; "
               f"mqar: {P['pairs']} pairs / {P['pairs']} queries, distances {P['distances']}, {P['steps']} steps; "
               f"text (data/default): {P['text_steps']} steps; probe K {P['K']}, t in [K + {P['jmin']}, T), {P['samples']} samples. "
               + (f"Wall time {seconds / 60:.1f} min." if seconds is not None else "Redrawn (--draw_only) from the runs."), ""]
    nparams = {m: ts.num_parameters(ts.config_from_descriptor(d, 256, P["T"])) for m, d in models.items()}
    summary += [f"Parameters: Sessa {nparams['sessa']:,}, f0 {nparams['f0']:,}.", ""]

    # (a) accuracy by distance on mqar, final step (and the curve over training, thin)
    ax = axes[0, 0]
    rows = []
    for m in models:
        val, acc = read_log(os.path.join(runs[("task", m)], "main.log"))
        last = max(acc)
        ds = sorted(acc[last])
        ax.plot(ds, [acc[last][d][0] for d in ds], "o-", color=colors[m], label=f"{label[m]} (step {last})")
        mid = sorted(acc)[len(acc) // 2]
        ax.plot(ds, [acc[mid][d][0] for d in ds], "o:", color=colors[m], alpha=0.5, label=f"  step {mid}")
        rows.append((m, last, acc[last], val[-1][1] if val else float("nan")))
    ax.set_xscale("log")
    ax.set_xticks(ds)
    ax.set_xticklabels([str(d) for d in ds])
    ax.minorticks_off()
    ax.axhline(1.0 / 96, color="gray", lw=0.8, ls="--", label="chance (1/96 values)")
    ax.axhline(1.0 / P["pairs"], color="gray", lw=0.8, ls=":", label=f"one of the {P['pairs']} values in context")
    ax.set_xlabel("nominal distance d (the key's value is >= d+2 tokens before the answer)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("(a) mqar: accuracy by distance")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    summary += ["## mqar accuracy by distance (final step)", "",
                "| model | step | " + " | ".join(f"d={d}" for d in sorted(rows[0][2])) + " | val loss |",
                "|---|---|" + "---|" * len(rows[0][2]) + "---|"]
    for m, last, accs, vl in rows:
        summary.append(f"| {label[m]} | {last} | " + " | ".join(f"{accs[d][0]:.3f}" for d in sorted(accs)) +
                       f" | {vl:.4f} |")
    summary.append("")

    # (d) text: val loss over training
    ax = axes[1, 0]
    summary += ["## text (data/default): validation loss", ""]
    for m in models:
        val, _ = read_log(os.path.join(runs[("text", m)], "main.log"))
        ax.plot([s for s, _ in val], [v for _, v in val], "o-", color=colors[m], label=label[m])
        summary.append(f"- {label[m]}: {val[0][1]:.4f} -> {val[-1][1]:.4f} nats/byte at step {val[-1][0]}")
    summary.append("")
    ax.set_xlabel("step")
    ax.set_ylabel("val loss (nats/byte)")
    ax.set_title("(d) text: validation loss")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)

    # (b, e) whole-stack influence, trained (solid, with fits) and at init (thin); (c, f) per layer, trained
    summary += ["## influence by distance: fits over k in [2, K] (log-space least squares)", "",
                "g(k) = mean ||d(r . out_t)/d(in_{t-k})||; power law g ~ k^-p, exponential g ~ exp(-k/lambda).", "",
                "| data | model | weights | curve | g(1) | g(K) | p | R2 (power) | lambda | R2 (exp) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
    for row, dname in enumerate(("task", "text")):
        ax, axl = axes[row, 1], axes[row, 2]
        for m in models:
            for state in ("trained", "init"):
                name = f"{dname}_{m}_{state}"
                k, mean = influence.read_csv(probes[name])
                fits = json.load(open(probes[name] + ".json"))["fits"]
                for curve in mean:
                    f = fits[curve]
                    pl, ex = f.get("power_law", {}), f.get("exponential", {})
                    summary.append(f"| {dname} | {label[m]} | {state} | {curve} | {mean[curve][1]:.3e} | "
                                   f"{mean[curve][-1]:.3e} | {pl.get('exponent_p', float('nan')):.3f} | "
                                   f"{pl.get('r2_log', float('nan')):.3f} | {ex.get('decay_length', float('nan')):.4g} | "
                                   f"{ex.get('r2_log', float('nan')):.3f} |")
                if state == "trained":
                    influence.plot_influence(ax, k, mean, fits, label=f"{m} ", names=["stack"], color=colors[m])
                    for l, curve in enumerate(c for c in mean if c.startswith("layer")):
                        axl.loglog(k[1:], mean[curve][1:], color=colors[m], alpha=1.0 - 0.5 * l / max(1, len(mean) - 2),
                                   ls=["-", "--", "-.", ":"][l % 4], label=f"{m} {curve}")
                else:
                    ax.loglog(k[1:], mean["stack"][1:], color=colors[m], lw=0.7, alpha=0.5, label=f"{m} stack at init")
        what = "mqar" if dname == "task" else "text"
        ax.set_title(f"({'b' if row == 0 else 'e'}) {what}: influence of input t-k on output t, whole stack")
        ax.legend(fontsize=6)
        axl.set_title(f"({'c' if row == 0 else 'f'}) {what}: per-layer influence (trained)")
        axl.set_xlabel("distance k")
        axl.set_ylabel("mean ||d x_{l+1,t} / d x_{l,t-k}||")
        axl.grid(True, which="both", alpha=0.3)
        axl.legend(fontsize=6)
    fig.suptitle(f"Sessa vs feedback-off baseline (equal width and depth): {models['sessa']} vs {models['f0']}, "
                 f"T={P['T']}", fontsize=12)
    fig.tight_layout()
    png = os.path.join(out, "memory_experiment.png")
    fig.savefig(png, dpi=75)
    open(os.path.join(out, "summary.md"), "w").write("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"wrote {png} and {os.path.join(out, 'summary.md')}")


if __name__ == "__main__":
    main()
