#!/usr/bin/env python3
"""
Do two training runs follow the same curve? Compares, step by step, the train loss, the learning rate, the
gradient norm and the validation loss of two runs of train_sessacu / train_sessa, read from either of the
trainers' two outputs (any mix of them; lines that are neither are ignored):

  stdout    step 12/30 | loss 3.141593 | lr 1.00e-03 | norm 0.4321 | 1.2 ms | 1.0% MFU | 123456 tok/s   (MFU optional)
            step 10 | val loss 3.000000
  main.log  step 12 train_loss 3.141593 lr 1.000000e-03 norm 0.432100 tok_s 123456.0
            step 10 val_loss 3.000000

    python scripts/compare_runs.py REF.log OTHER.log                     relative tolerances below
    python scripts/compare_runs.py REF.log OTHER.log --exact             losses equal to the printed digit
    python scripts/compare_runs.py a/main.log b/main.log --steps 16:30   only steps 16..30 (a resumed run)

Checks (every one printed, with the largest difference seen and the step where it is):
  - the same steps in both (within --steps), at least --min-steps of them: a missing step is a failure naming it;
  - lr: the same schedule, |d| <= 1e-6 relative (printed with 3 digits on stdout: 1e-2 relative there);
  - train loss: |d| <= --rtol x |REF| at every step, and the mean of |d| / |REF| <= --mean-rtol;
    with --exact the printed values must be equal (the same float rounds to the same digits);
  - val loss: |d| <= --val-rtol x |REF| (--exact: equal), at the val steps both runs have; a val step in one
    run only is a failure (same schedule, same flags);
  - norm: |d| <= --norm-rtol x |REF| (also with --exact: ZeRO-1 sums the squared norm shard by shard).
A step printed twice with different values (two runs in one file) is an error. Exit status: 0 all checks
pass, 1 some check fails, 2 bad input (missing or unreadable file, no step lines, malformed number).
"""
import argparse
import re
import sys

NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)"
STDOUT_TRAIN = re.compile(r"^step (\d+)/\d+ \| loss " + NUM + r" \| lr " + NUM + r" \| norm " + NUM + r" \|")
STDOUT_VAL = re.compile(r"^step (\d+) \| val loss " + NUM + r"\s*$")
LOG_TRAIN = re.compile(r"^step (\d+) train_loss " + NUM + r" lr " + NUM + r" norm " + NUM + r"(?: |$)")
LOG_VAL = re.compile(r"^step (\d+) val_loss " + NUM + r"\s*$")


class BadInput(Exception):
    pass


def parse(path):
    """-> (train, val, lr_digits): train {step: (loss_str, lr_str, norm_str)}, val {step: loss_str}, and the
    relative resolution of the printed lr (stdout prints it with 3 significant digits)"""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BadInput("cannot read %s: %s" % (path, e.strerror or e))
    train, val, coarse_lr = {}, {}, False
    for i, line in enumerate(lines, 1):
        line = line.strip()
        m = STDOUT_TRAIN.match(line) or LOG_TRAIN.match(line)
        if m:
            step, rec = int(m.group(1)), (m.group(2), m.group(3), m.group(4))
            coarse_lr |= bool(STDOUT_TRAIN.match(line))
            if step in train and train[step] != rec:
                raise BadInput("%s:%d: step %d is printed twice with different values (%s, then %s): two runs in "
                               "one file?" % (path, i, step, "/".join(train[step]), "/".join(rec)))
            train[step] = rec
            continue
        m = STDOUT_VAL.match(line) or LOG_VAL.match(line)
        if m:
            step = int(m.group(1))
            if step in val and val[step] != m.group(2):
                raise BadInput("%s:%d: val loss of step %d is printed twice with different values (%s, then %s)"
                               % (path, i, step, val[step], m.group(2)))
            val[step] = m.group(2)
            continue
        if line.startswith("step ") and ("loss" in line):
            # looks like a step line but did not parse: a format change must not pass silently
            if re.match(r"^step \d+(/\d+)? \| (loss|val loss) ", line) or re.match(r"^step \d+ (train_loss|val_loss) ", line):
                raise BadInput("%s:%d: malformed step line: %r" % (path, i, line))
    if not train and not val:
        raise BadInput("%s: no step lines (neither the trainer's stdout 'step S/N | loss ...' nor main.log's "
                       "'step S train_loss ...')" % path)
    return train, val, coarse_lr


def num(s, path, step, what):
    try:
        return float(s)
    except ValueError:
        raise BadInput("%s: step %d: %s '%s' is not a number" % (path, step, what, s))


def rel(a, b):
    """|a - b| / |a| (|a - b| when a is 0); NaN anywhere is infinitely far unless both are NaN"""
    if a != a or b != b:
        return 0.0 if (a != a and b != b) else float("inf")
    d = abs(a - b)
    return d / abs(a) if a != 0 else d


def in_range(step, lo, hi):
    return (lo is None or step >= lo) and (hi is None or step <= hi)


def compare(ref_path, other_path, rtol, mean_rtol, val_rtol, norm_rtol, exact, lo, hi, min_steps, out=print):
    """prints one line per check; returns the number of failed checks"""
    (rt, rv, rc), (ot, ov, oc) = parse(ref_path), parse(other_path)
    rt = {s: v for s, v in rt.items() if in_range(s, lo, hi)}
    ot = {s: v for s, v in ot.items() if in_range(s, lo, hi)}
    rv = {s: v for s, v in rv.items() if in_range(s, lo, hi)}
    ov = {s: v for s, v in ov.items() if in_range(s, lo, hi)}
    fails = 0

    def verdict(ok, text):
        nonlocal fails
        fails += not ok
        out("%s %s" % ("PASS" if ok else "FAIL", text))

    only_ref, only_other = sorted(set(rt) - set(ot)), sorted(set(ot) - set(rt))
    both = sorted(set(rt) & set(ot))
    short = lambda xs: ", ".join(map(str, xs[:10])) + (" ..." if len(xs) > 10 else "")
    verdict(not only_ref and not only_other and len(both) >= min_steps,
            "train steps: %d in both (at least %d needed)%s%s" % (
                len(both), min_steps, "; only in REF: " + short(only_ref) if only_ref else "",
                "; only in OTHER: " + short(only_other) if only_other else ""))
    if both:
        # lr: the same schedule (stdout prints 3 significant digits)
        lr_tol = 1e-2 if (rc or oc) else 1e-6
        worst = max(both, key=lambda s: rel(num(rt[s][1], ref_path, s, "lr"), num(ot[s][1], other_path, s, "lr")))
        d = rel(num(rt[worst][1], ref_path, worst, "lr"), num(ot[worst][1], other_path, worst, "lr"))
        verdict(d <= lr_tol, "lr: max rel diff %.2e at step %d (tolerance %.0e: the same schedule)" % (d, worst, lr_tol))
        # train loss
        diffs = {s: rel(num(rt[s][0], ref_path, s, "loss"), num(ot[s][0], other_path, s, "loss")) for s in both}
        worst = max(both, key=lambda s: diffs[s])
        mean = sum(diffs.values()) / len(diffs)
        if exact:
            unequal = [s for s in both if rt[s][0] != ot[s][0]]
            verdict(not unequal, "train loss: %d of %d steps equal to the printed digit (exact); max rel diff %.2e at "
                    "step %d%s" % (len(both) - len(unequal), len(both), diffs[worst], worst,
                                   "; first unequal: step %d (%s vs %s)" % (unequal[0], rt[unequal[0]][0], ot[unequal[0]][0])
                                   if unequal else ""))
        else:
            verdict(diffs[worst] <= rtol, "train loss: max rel diff %.2e at step %d (%s vs %s), tolerance %.1e" % (
                diffs[worst], worst, rt[worst][0], ot[worst][0], rtol))
            verdict(mean <= mean_rtol, "train loss: mean rel diff %.2e over %d steps, tolerance %.1e" % (
                mean, len(both), mean_rtol))
        # gradient norm
        nd = {s: rel(num(rt[s][2], ref_path, s, "norm"), num(ot[s][2], other_path, s, "norm")) for s in both}
        worst = max(both, key=lambda s: nd[s])
        verdict(nd[worst] <= norm_rtol, "norm: max rel diff %.2e at step %d (%s vs %s), tolerance %.1e" % (
            nd[worst], worst, rt[worst][2], ot[worst][2], norm_rtol))
    # validation loss
    vboth = sorted(set(rv) & set(ov))
    vonly = sorted(set(rv) ^ set(ov))
    if rv or ov:
        if vonly:
            verdict(False, "val loss: steps in one run only: %s" % short(vonly))
        if vboth:
            vd = {s: rel(num(rv[s], ref_path, s, "val loss"), num(ov[s], other_path, s, "val loss")) for s in vboth}
            worst = max(vboth, key=lambda s: vd[s])
            if exact:
                unequal = [s for s in vboth if rv[s] != ov[s]]
                verdict(not unequal, "val loss: %d of %d equal (exact); max rel diff %.2e at step %d (%s vs %s)" % (
                    len(vboth) - len(unequal), len(vboth), vd[worst], worst, rv[worst], ov[worst]))
            else:
                verdict(vd[worst] <= val_rtol, "val loss: max rel diff %.2e at step %d (%s vs %s) over steps %s, "
                        "tolerance %.1e" % (vd[worst], worst, rv[worst], ov[worst], short(vboth), val_rtol))
    return fails


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", help="the reference run's stdout or main.log")
    ap.add_argument("other", help="the run to check, either form")
    ap.add_argument("--rtol", type=float, default=5e-3, help="train loss, per step, relative (default 5e-3)")
    ap.add_argument("--mean-rtol", type=float, default=1.5e-3, help="train loss, mean over steps (default 1.5e-3)")
    ap.add_argument("--val-rtol", type=float, default=5e-3, help="val loss, relative (default 5e-3)")
    ap.add_argument("--norm-rtol", type=float, default=3e-2, help="gradient norm, relative (default 3e-2)")
    ap.add_argument("--exact", action="store_true", help="train and val losses equal to the printed digit")
    ap.add_argument("--steps", default=None, metavar="A:B", help="only steps A..B (either side may be empty)")
    ap.add_argument("--min-steps", type=int, default=1, help="at least this many train steps in both (default 1)")
    ap.add_argument("--label", default="", help="a name printed with the verdict")
    a = ap.parse_args(argv)
    lo = hi = None
    if a.steps is not None:
        m = re.match(r"^(\d*):(\d*)$", a.steps)
        if not m:
            print("error: --steps '%s' is not A:B (e.g. 16:30, 16:, :10)" % a.steps, file=sys.stderr)
            return 2
        lo = int(m.group(1)) if m.group(1) else None
        hi = int(m.group(2)) if m.group(2) else None
    for name in ("rtol", "mean_rtol", "val_rtol", "norm_rtol"):
        if not getattr(a, name) >= 0:
            print("error: --%s must be >= 0" % name.replace("_", "-"), file=sys.stderr)
            return 2
    label = (a.label + ": ") if a.label else ""
    print("%scompare %s (REF) with %s%s%s" % (label, a.ref, a.other, " (exact)" if a.exact else "",
                                              " steps %s" % a.steps if a.steps else ""))
    try:
        fails = compare(a.ref, a.other, a.rtol, a.mean_rtol, a.val_rtol, a.norm_rtol, a.exact, lo, hi, a.min_steps)
    except BadInput as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("%s%s" % (label, "the same curve: all checks pass" if fails == 0 else "%d check(s) FAILED" % fails))
    return 0 if fails == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
