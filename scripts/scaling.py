"""
Multi-GPU scaling of the CUDA trainer on one node: runs ./train_sessacu on 1, 2, 4, ... GPUs (through
scripts/launch_local.sh, one process per GPU) on a synthetic shard, reads rank 0's step lines
("step S/N | ... | X tok/s", with "Y% MFU" when the trainer prints it), and writes a CSV and a PNG of
tokens/s and scaling efficiency.

  weak scaling:   micro-batch B per GPU, one micro-batch per GPU per step (-d B*T*n): the work per GPU is
                  fixed, ideal tokens/s grows as n.
  strong scaling: the step is fixed at B*T*max(n) tokens (-d), so n GPUs accumulate max(n)/n micro-batches:
                  the work per step is fixed, ideal step time shrinks as 1/n.
  efficiency(n) = (tok/s(n) / n) / (tok/s(n0) / n0), n0 the smallest GPU count of the sweep (normally 1).
tok/s is the trainer's: tokens of the whole optimizer step (all GPUs) per second; the median over the
steps after --warmup is used.

CUDA graphs: the trainer replays each micro-step as a CUDA graph (-cg 1, its default), on several GPUs with the
gradient reductions inside the last micro-step's graph; the multi-GPU runs get the default (--extra "-cg 0" turns
graphs off everywhere, and the rows then still say 1). The single-GPU runs are made with each -cg of --one-gpu-cg
(default 1,0) and two efficiencies are written: `efficiency` against the 1-GPU run with the trainer's default
-cg 1 (what a user gains from more GPUs), `efficiency_same_path` against the 1-GPU -cg 0 run (the ungraphed step,
as the multi-GPU runs were before the twelfth session). --zero takes a list (0,1): one multi-GPU run per ZeRO stage; the 1-GPU runs are the
same for every stage (a world of 1 has nothing to shard) and are made once.

  python scripts/scaling.py --gpus 1,2,4,8 --desc d12 -B 16 -T 1024 --zero 1 --out scaling_d12
      -> scaling_d12.csv, scaling_d12.png (and scaling_d12_logs/ with every run's rank-0 output)
  python scripts/scaling.py --gpus 1,2 --mode weak --zero 0,1 -B 8 --steps 20 --warmup 5 --out weak_d12_B8
  python scripts/scaling.py --plot-only scaling_d12.csv       re-draw the PNG from a CSV
  python scripts/scaling.py ... --dry-run                     print the commands only
"""
import argparse
import csv
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_RE = re.compile(r"^step\s+(\d+)")
TOKS_RE = re.compile(r"([0-9.]+(?:e[+-]?\d+)?)\s*tok/s")
MFU_RE = re.compile(r"([0-9.]+)\s*%\s*MFU|MFU\s*([0-9.]+)\s*%")   # "41.2% MFU" or "MFU 41.2%"
FIELDS = ["mode", "desc", "gpus", "B", "T", "total_batch", "grad_accum", "zero", "cuda_graph", "steps_timed", "tok_per_s",
          "tok_per_s_per_gpu", "mfu_percent", "efficiency", "efficiency_same_path", "device", "status"]


def parse_log(text, warmup):
    """median tok/s and MFU (or None) of the step lines after `warmup` steps, and how many were used"""
    toks, mfus = [], []
    for line in text.splitlines():
        m = STEP_RE.match(line.strip())
        t = TOKS_RE.search(line)
        if not m or not t or int(m.group(1)) <= warmup:
            continue
        toks.append(float(t.group(1)))
        f = MFU_RE.search(line)
        if f:
            mfus.append(float(f.group(1) or f.group(2)))
    if not toks:
        return None, None, 0
    return statistics.median(toks), (statistics.median(mfus) if mfus else None), len(toks)


def write_shard(path, n_tokens, vocab, seed=0):
    """one llm.c token shard of random tokens (uint16 when the vocabulary fits, else uint32)"""
    version, dtype = (1, "<u2") if vocab <= 65536 else (2, "<u4")
    header = np.zeros(256, dtype="<i4")
    header[:3] = [20240520, version, n_tokens]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.random.default_rng(seed).integers(0, vocab, n_tokens).astype(dtype).tobytes())


def run_bounded(cmd, env, timeout):
    """runs cmd in its own process group; on timeout the whole group (every rank) is killed"""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return out, p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return out + "\nscaling.py: killed after %.0f s\n" % timeout, -1


def efficiencies(rows):
    """fills row['efficiency'] (against the smallest GPU count's run with -cg 1, else its only run) and
    row['efficiency_same_path'] (against its -cg 0 run), per mode; '' where that base did not run"""
    for mode in {r["mode"] for r in rows}:
        ok = [r for r in rows if r["mode"] == mode and r["tok_per_s"] not in ("", None)]
        if not ok:
            continue
        n0 = min(int(r["gpus"]) for r in ok)
        bases = {str(r.get("cuda_graph", "")): r for r in ok if int(r["gpus"]) == n0}
        for col, base in (("efficiency", bases.get("1") or next(iter(bases.values()))),
                          ("efficiency_same_path", bases.get("0"))):
            if base is None:
                continue
            per_gpu = float(base["tok_per_s"]) / n0
            for r in ok:
                r[col] = "%.4f" % (float(r["tok_per_s"]) / int(r["gpus"]) / per_gpu)


def plot(rows, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    done = [r for r in rows if r["tok_per_s"] not in ("", None)]
    colors = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"])
    for mode in ("weak", "strong"):
        rs = [r for r in done if r["mode"] == mode]
        if not rs:
            continue
        n0 = min(int(r["gpus"]) for r in rs)
        base = [r for r in rs if int(r["gpus"]) == n0]
        b_def = next((r for r in base if str(r.get("cuda_graph", "")) != "0"), base[0])
        b_same = next((r for r in base if str(r.get("cuda_graph", "")) == "0"), None)
        for z in sorted({str(r["zero"]) for r in rs if int(r["gpus"]) > n0}) or [str(b_def["zero"])]:
            color = next(colors)
            more = sorted((r for r in rs if int(r["gpus"]) > n0 and str(r["zero"]) == z), key=lambda r: int(r["gpus"]))
            n = [n0] + [int(r["gpus"]) for r in more]
            ax1.plot(n, [float(b_def["tok_per_s"])] + [float(r["tok_per_s"]) for r in more], "o-", color=color,
                     label="%s, ZeRO-%s" % (mode, z))
            ax2.plot(n, [1.0] + [float(r["efficiency"]) for r in more], "o-", color=color,
                     label="%s ZeRO-%s vs 1 GPU -cg 1" % (mode, z))
            if b_same is not None and more:
                ax2.plot(n, [1.0] + [float(r["efficiency_same_path"]) if r.get("efficiency_same_path") else float("nan")
                                     for r in more], "s--", color=color, alpha=0.6,
                         label="%s ZeRO-%s vs 1 GPU -cg 0" % (mode, z))
        ideal = [float(b_def["tok_per_s"]) * k / n0 for k in sorted({int(r["gpus"]) for r in rs})]
        ax1.plot(sorted({int(r["gpus"]) for r in rs}), ideal, "--", color="gray", alpha=0.5, label="%s ideal" % mode)
        if b_same is not None:
            ax1.plot([n0], [float(b_same["tok_per_s"])], "s", color="gray", label="%s 1 GPU -cg 0" % mode)
    all_n = sorted({int(r["gpus"]) for r in rows})
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_n, [str(k) for k in all_n])
        ax.minorticks_off()
        ax.set_xlabel("GPUs")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax1.set_yscale("log")
    ax1.set_ylabel("tokens / s (all GPUs)")
    ax2.set_ylabel("scaling efficiency")
    ax2.set_ylim(0, 1.1)
    ax2.axhline(0.9, color="gray", lw=0.8, ls=":")
    title = rows[0]
    fig.suptitle("sessa.c data-parallel scaling: %s B=%s T=%s per GPU%s" % (
        title.get("desc", ""), title["B"], title["T"], (" on " + title["device"]) if title.get("device") else ""))
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print("wrote %s" % png)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", default=None, help="comma-separated GPU counts (default: 1,2,4,.. up to all visible)")
    ap.add_argument("--mode", default="weak,strong", help="weak, strong or both")
    ap.add_argument("--desc", default="d12", help="model descriptor passed as -e")
    ap.add_argument("-B", type=int, default=16, help="micro-batch per GPU")
    ap.add_argument("-T", type=int, default=1024, help="sequence length")
    ap.add_argument("-V", type=int, default=50257, help="vocabulary size (-V)")
    ap.add_argument("--zero", default="1", help="ZeRO stage(s) of the multi-GPU runs (-z): 0, 1 or 0,1")
    ap.add_argument("--one-gpu-cg", default="1,0", help="-cg value(s) of the 1-GPU runs (default 1,0: both)")
    ap.add_argument("--steps", type=int, default=30, help="steps per run (-x)")
    ap.add_argument("--warmup", type=int, default=10, help="first steps left out of the median")
    ap.add_argument("--trainer", default=os.path.join(ROOT, "train_sessacu"))
    ap.add_argument("--extra", default="", help="more trainer flags, e.g. \"-pi 989\" (peak TFLOPS for the MFU)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--out", default="scaling", help="writes OUT.csv, OUT.png, OUT_logs/")
    ap.add_argument("--plot-only", metavar="CSV", help="only re-draw the PNG of this CSV")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args()

    if args.plot_only:
        with open(args.plot_only) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            sys.exit("error: %s has no rows" % args.plot_only)
        plot(rows, os.path.splitext(args.plot_only)[0] + ".png")
        return

    if args.steps <= args.warmup:
        sys.exit("error: --steps %d must be larger than --warmup %d" % (args.steps, args.warmup))
    if args.gpus:
        gpus = sorted({int(g) for g in args.gpus.split(",")})
    else:
        try:
            visible = len(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
                          .stdout.strip().splitlines())
        except (OSError, subprocess.CalledProcessError):
            sys.exit("error: nvidia-smi lists no GPU; pass --gpus")
        gpus = [2 ** k for k in range(int(math.log2(max(visible, 1))) + 1)]
    if gpus[0] < 1:
        sys.exit("error: GPU counts must be positive: %s" % gpus)
    try:
        zeros = sorted({int(z) for z in args.zero.split(",")})
        cgs = sorted({int(c) for c in args.one_gpu_cg.split(",")}, reverse=True)
    except ValueError:
        sys.exit("error: --zero '%s' and --one-gpu-cg '%s' take comma-separated 0s and 1s" % (args.zero, args.one_gpu_cg))
    if not zeros or not set(zeros) <= {0, 1} or not cgs or not set(cgs) <= {0, 1}:
        sys.exit("error: --zero '%s' and --one-gpu-cg '%s' take comma-separated 0s and 1s" % (args.zero, args.one_gpu_cg))
    modes = [m for m in args.mode.split(",") if m]
    if not set(modes) <= {"weak", "strong"}:
        sys.exit("error: --mode takes weak, strong or weak,strong")
    if not args.dry_run and not os.access(args.trainer, os.X_OK):
        sys.exit("error: trainer %s is not built (make train_sessacu)" % args.trainer)

    BT, nmax = args.B * args.T, max(gpus)
    logs = args.out + "_logs"
    tmp = tempfile.mkdtemp(prefix="sessa_scaling_") if not args.dry_run else "TMP"
    shard = os.path.join(tmp, "synthetic_train_000000.bin")
    device = ""
    if not args.dry_run:
        try:
            device = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            device = "unknown"
        os.makedirs(logs, exist_ok=True)
        write_shard(shard, BT * nmax * (args.steps + 1) + 1, args.V)   # every run reads fresh rows each step

    rows = []
    for mode in modes:
        for n in gpus:
            total = BT * n if mode == "weak" else BT * nmax
            if total % (BT * n) != 0:
                print("skip %s n=%d: %d tokens per step is not a multiple of B*T*n" % (mode, n, total))
                continue
            # one GPU: one run per -cg (the ZeRO stage means nothing there: -z 0); several: one per ZeRO stage with
            # the trainer's default -cg 1 (no -cg passed; the row says 1)
            variants = [(0, cg) for cg in cgs] if n == 1 else [(z, 1) for z in zeros]
            for zero, cg in variants:
                cmd = [os.path.join(ROOT, "scripts", "launch_local.sh"), str(n), args.trainer, "-i", shard,
                       "-e", args.desc, "-V", str(args.V), "-b", str(args.B), "-t", str(args.T), "-d", str(total),
                       "-x", str(args.steps), "-v", "0", "-s", "0", "-n", "0", "-z", str(zero)]
                cmd += (["-cg", str(cg)] if n == 1 else []) + args.extra.split()
                row = {"mode": mode, "desc": args.desc, "gpus": n, "B": args.B, "T": args.T, "total_batch": total,
                       "grad_accum": total // (BT * n), "zero": zero, "cuda_graph": cg, "steps_timed": 0, "tok_per_s": "",
                       "tok_per_s_per_gpu": "", "mfu_percent": "", "efficiency": "", "efficiency_same_path": "",
                       "device": device, "status": ""}
                print(" ".join(cmd), flush=True)
                if args.dry_run:
                    continue
                name = "%s_%dgpu_%s" % (mode, n, ("cg%d" % cg) if n == 1 else ("zero%d" % zero))
                log = os.path.join(logs, name + ".log")
                env = dict(os.environ, RANK_LOG_DIR=os.path.join(logs, name + "_ranks"))
                out, rc = run_bounded(cmd, env, args.timeout)
                with open(log, "w") as f:
                    f.write(out)
                tps, mfu, used = parse_log(out, args.warmup)
                row["status"] = "ok" if rc == 0 and tps is not None else ("exit %d" % rc if rc != 0 else "no step lines")
                if tps is not None and rc == 0:
                    row.update(tok_per_s="%.1f" % tps, tok_per_s_per_gpu="%.1f" % (tps / n), steps_timed=used,
                               mfu_percent="" if mfu is None else "%.2f" % mfu)
                print("  -> %s: %s tok/s%s (%s)" % (row["status"], row["tok_per_s"] or "-",
                                                      "" if mfu is None else ", MFU %.1f%%" % mfu, log), flush=True)
                rows.append(row)
    if args.dry_run:
        return
    os.remove(shard)
    os.rmdir(tmp)
    efficiencies(rows)
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    print("wrote %s.csv" % args.out)
    print("%s %s B=%d T=%d per GPU on %s; efficiency against 1 GPU with -cg 1 (the trainer's default) and, in "
          "parentheses, with -cg 0 (the multi-GPU runs' ungraphed step)" % (args.mode, args.desc, args.B, args.T, device))
    for r in rows:
        what = ("-cg %s" % r["cuda_graph"]) if int(r["gpus"]) == 1 else ("ZeRO-%s" % r["zero"])
        print("%-6s %2s GPUs %-7s %12s tok/s  %10s tok/s/GPU  efficiency %s (%s)  %s" % (
            r["mode"], r["gpus"], what, r["tok_per_s"] or "-", r["tok_per_s_per_gpu"] or "-", r["efficiency"] or "-",
            r["efficiency_same_path"] or "-", r["status"]))
    if any(r["tok_per_s"] for r in rows):
        plot(rows, args.out + ".png")
    if any(r["status"] != "ok" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
