"""
Plot the training logs (main.log) of one or more runs: train and val loss against step, and the long-context
eval accuracy per distance when the log has it.

    python scripts/plot_log.py out/run1 [out/run2 ...] -o loss.png [--labels a,b] [--logy] [--smooth 20]

Each LOGDIR is a run's output dir (-o of a trainer; its main.log is read) or a log file itself.
Lines understood (anything else is skipped and counted):
    step N train_loss L lr X norm G tok_s S      C trainer (train_sessa.c) and train_sessa.py
    step N val_loss L
    step N eval_acc d=D ACC [C/N]                -E / --eval_tasks (llmc/eval_tasks.h)
    s:N trl:L    s:N tel:L                       llm.c's own logs
A step logged more than once (a main.log of a resumed run written before the trainers truncated it to the
checkpoint, or logs appended together) counts once: its last line wins, with a note of how many were dropped.
The train loss is drawn thin, with its moving average over --smooth steps on top (0: none); val loss with
markers; eval accuracy in a second panel, one line per (run, distance). Uses matplotlib's Agg backend.
"""
import argparse
import os
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PATTERNS = [
    (re.compile(r"^step (\d+) train_loss (\S+)"), "train"),
    (re.compile(r"^step (\d+) val_loss (\S+)"), "val"),
    (re.compile(r"^step (\d+) eval_acc d=(\d+) (\S+)"), "eval"),
    (re.compile(r"^s:(\d+) trl:(\S+)"), "train"),
    (re.compile(r"^s:(\d+) tel:(\S+)"), "val"),
]


def read_log(path):
    """-> {"train": [(step, loss)], "val": [(step, loss)], "eval": {distance: [(step, acc)]}}, skipped lines"""
    run = {"train": [], "val": [], "eval": defaultdict(list)}
    skipped = 0
    with open(path) as f:
        for line in f:
            for pat, kind in PATTERNS:
                m = pat.match(line.strip())
                if m:
                    try:
                        if kind == "eval":
                            run["eval"][int(m[2])].append((int(m[1]), float(m[3])))
                        else:
                            run[kind].append((int(m[1]), float(m[2])))
                    except ValueError:
                        skipped += 1
                    break
            else:
                skipped += bool(line.strip())
    dropped = 0
    for key in ("train", "val"):
        run[key], d = dedup(run[key])
        dropped += d
    for dist in list(run["eval"]):
        run["eval"][dist], d = dedup(run["eval"][dist])
        dropped += d
    if dropped:
        print(f"note: {path}: {dropped} repeated step lines dropped (the last one of each step kept)", file=sys.stderr)
    return run, skipped


def dedup(points):
    """[(step, value)] -> sorted by step with one point per step (the last logged one), number dropped"""
    last = {}
    for step, value in points:
        last[step] = value
    return sorted(last.items()), len(points) - len(last)


def smooth(y, n):
    """trailing moving average over up to n points (the first points average what there is)"""
    c = np.cumsum(np.insert(np.asarray(y, dtype=float), 0, 0.0))
    i = np.arange(1, len(y) + 1)
    return (c[i] - c[np.maximum(i - n, 0)]) / np.minimum(i, n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdirs", nargs="+", metavar="LOGDIR", help="run output dir (with main.log) or a log file")
    ap.add_argument("-o", "--out", default="plot.png", help="output image (default %(default)s)")
    ap.add_argument("--labels", default=None, help="comma-separated run names (default: the dir names)")
    ap.add_argument("--logy", action="store_true", help="log scale for the losses")
    ap.add_argument("--smooth", type=int, default=20, help="moving average of the train loss (default 20, 0 off)")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()

    labels = args.labels.split(",") if args.labels else []
    if labels and len(labels) != len(args.logdirs):
        sys.exit(f"error: {len(labels)} labels for {len(args.logdirs)} runs")
    runs = []
    for i, d in enumerate(args.logdirs):
        path = os.path.join(d, "main.log") if os.path.isdir(d) else d
        if not os.path.isfile(path):
            sys.exit(f"error: no log file '{path}' (give a run's output dir or its main.log)")
        run, skipped = read_log(path)
        if not run["train"] and not run["val"] and not run["eval"]:
            sys.exit(f"error: '{path}' has no train_loss, val_loss or eval_acc lines: not a training log")
        base = os.path.basename(os.path.normpath(d))
        if labels:
            name = labels[i]
        elif base == "main.log":                 # a run's log file: name it after its dir
            name = os.path.basename(os.path.dirname(os.path.abspath(path)))
        else:
            name = base
        print(f"{name}: {len(run['train'])} train, {len(run['val'])} val, "
              f"{sum(map(len, run['eval'].values()))} eval lines ({skipped} other lines skipped) from {path}")
        runs.append((name, run))

    has_eval = any(run["eval"] for _, run in runs)
    fig, axes = plt.subplots(1, 2 if has_eval else 1, figsize=(13 if has_eval else 7.5, 4.8), squeeze=False)
    ax = axes[0, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, run) in enumerate(runs):
        c = colors[i % len(colors)]
        if run["train"]:
            s, y = zip(*run["train"])
            if args.smooth > 1 and len(y) > args.smooth:
                ax.plot(s, y, color=c, alpha=0.25, lw=0.8)
                ax.plot(s, smooth(y, args.smooth), color=c, lw=1.6, label=f"{name} train (avg {args.smooth})")
            else:
                ax.plot(s, y, color=c, lw=1.2, label=f"{name} train")
        if run["val"]:
            s, y = zip(*run["val"])
            ax.plot(s, y, color=c, ls="--", marker="o", ms=4, lw=1.2, label=f"{name} val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    if args.logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(args.title or "loss")

    if has_eval:
        ax = axes[0, 1]
        markers = "osD^v<>p*h"
        for i, (name, run) in enumerate(runs):
            for j, d in enumerate(sorted(run["eval"])):
                s, acc = zip(*run["eval"][d])
                ax.plot(s, acc, marker=markers[j % len(markers)], ms=4, lw=1.2,
                        color=colors[(i * 3 + j) % len(colors)] if len(runs) > 1 else colors[j % len(colors)],
                        ls="-" if i == 0 else "--", label=f"{name} d={d}")
        ax.set_xlabel("step")
        ax.set_ylabel("eval accuracy (argmax = answer)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("long-context eval accuracy per distance")

    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
