#!/usr/bin/env python3
"""scripts/compare_runs.py (the loss-curve comparator of scripts/multi_gpu_check.sh) on synthetic step lines whose
verdict is known: both output forms (stdout, main.log) read alike; equal curves pass, also --exact; a difference
beyond the tolerance fails and names its step, inside it passes; missing steps, another lr schedule, a doubled
gradient norm, a val step in one run only, too few steps fail (exit 1); bad input (no file, no step lines, a
malformed step line, a step printed twice with other values, a bad --steps) is an error (exit 2) naming the cause.
Prints one line per case and "N passed, M failed"; exit 0 only when all pass. CPU only, about a second."""
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TOOL = os.path.join(ROOT, "scripts", "compare_runs.py")
tmp = tempfile.mkdtemp(prefix="test_compare_runs_")


def curve(n=30, scale=1.0, bump=None, norm_scale=1.0, lr_scale=1.0):
    """n steps: (step, loss, lr, norm); bump = (step, relative change of its loss)"""
    rows = []
    for s in range(1, n + 1):
        loss = 5.5 * math.exp(-s / 20) + 1.5
        if bump and bump[0] == s:
            loss *= 1 + bump[1]
        lr = 1e-3 * min(1.0, s / 10) * lr_scale
        rows.append((s, loss * scale, lr, (0.8 + 0.01 * s) * norm_scale))
    return rows


def write_stdout(name, rows, n=30, val=None, extra=""):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("device NVIDIA H200 (2 processes, ZeRO stage 0), peak 989 TFLOPS\n")
        for s, loss, lr, norm in rows:
            if val and s - 1 in val:
                f.write("step %d | val loss %.6f\n" % (s - 1, val[s - 1]))
            f.write("step %d/%d | loss %.6f | lr %.2e | norm %.4f | 1.2 ms | 3.4%% MFU | 123456 tok/s\n" % (s, n, loss, lr, norm))
        if val and rows[-1][0] in val:   # the val of the last step printed
            f.write("step %d | val loss %.6f\n" % (rows[-1][0], val[rows[-1][0]]))
        f.write(extra)
    return path


def write_log(name, rows, val=None):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        for s, loss, lr, norm in rows:
            if val and s - 1 in val:
                f.write("step %d val_loss %.6f\n" % (s - 1, val[s - 1]))
            f.write("step %d train_loss %.6f lr %.6e norm %.6f tok_s 123456.0\n" % (s, loss, lr, norm))
        if val and rows[-1][0] in val:
            f.write("step %d val_loss %.6f\n" % (rows[-1][0], val[rows[-1][0]]))
    return path


def run(*args):
    p = subprocess.run([sys.executable, TOOL] + [str(a) for a in args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


passed = failed = 0


def case(what, args, want_rc, want_text=()):
    global passed, failed
    rc, out = run(*args)
    ok = rc == want_rc and all(t in out for t in want_text)
    passed += ok
    failed += not ok
    print("%s %s (exit %d, expected %d)" % ("PASS" if ok else "FAIL", what, rc, want_rc))
    if not ok:
        print("    " + out.replace("\n", "\n    "))


VAL = {0: 5.55, 10: 3.9, 20: 3.1, 30: 2.6}
ref = write_stdout("ref.out", curve(), val=VAL)
ref_log = write_log("ref.log", curve(), val=VAL)
same_log = write_log("same.log", curve(), val=VAL)
near = write_stdout("near.out", curve(scale=1 + 1e-4), val={k: v * (1 + 1e-4) for k, v in VAL.items()})
far = write_stdout("far.out", curve(bump=(17, 2e-2)), val=VAL)
drift = write_stdout("drift.out", curve(scale=1 + 2e-3), val=VAL)
missing = write_stdout("missing.out", [r for r in curve() if r[0] != 12], val=VAL)
short = write_stdout("short.out", curve(n=20), n=30, val={k: v for k, v in VAL.items() if k <= 20})
lr = write_stdout("lr.out", curve(lr_scale=1.5), val=VAL)
norm2 = write_stdout("norm2.out", curve(norm_scale=2.0), val=VAL)
valmiss = write_stdout("valmiss.out", curve(), val={k: v for k, v in VAL.items() if k != 20})
valfar = write_stdout("valfar.out", curve(), val={k: v * (1.03 if k == 30 else 1) for k, v in VAL.items()})

# equal and near curves
case("stdout and main.log of the same run: exact", [ref, ref_log, "--exact", "--min-steps", 30], 0, ["30 of 30 steps equal"])
case("two main.logs of the same run: exact", [ref_log, same_log, "--exact"], 0)
case("1e-4 relative everywhere: within the tolerances", [ref, near], 0, ["the same curve"])
case("1e-4 relative: not --exact", [ref, near, "--exact"], 1, ["first unequal: step 1"])
# differences that must fail
case("2e-2 at step 17: fails naming step 17", [ref, far], 1, ["at step 17", "FAIL train loss: max rel diff"])
case("2e-2 at step 17, but only steps 18:30 compared: passes", [ref, far, "--steps", "18:"], 0)
case("2e-3 at every step: the per-step bound passes, the mean fails", [ref, drift], 1, ["FAIL train loss: mean rel diff"])
case("step 12 missing: fails naming it", [ref, missing], 1, ["only in REF: 12"])
case("steps 21-30 missing: fails", [ref, short], 1, ["only in REF: 21, 22"])
case("only steps 1:20 compared, 20 required: passes", [ref, short, "--steps", ":20", "--min-steps", 20], 0)
case("fewer steps than --min-steps: fails", [ref, short, "--steps", ":20", "--min-steps", 25], 1, ["at least 25 needed"])
case("another lr schedule: fails", [ref, lr], 1, ["FAIL lr"])
case("a doubled gradient norm (a sum where the mean belongs): fails", [ref, norm2], 1, ["FAIL norm"])
case("a val step in one run only: fails", [ref, valmiss], 1, ["steps in one run only: 20"])
case("val loss 3% off at step 30: fails", [ref, valfar], 1, ["FAIL val loss: max rel diff", "at step 30"])
# bad input: exit 2 with the cause
case("missing file: error naming it", [ref, os.path.join(tmp, "nope.out")], 2, ["cannot read", "nope.out"])
empty = os.path.join(tmp, "empty.out")
open(empty, "w").write("device NVIDIA H200\nparameters: 123\n")
case("no step lines: error", [ref, empty], 2, ["no step lines"])
bad = write_stdout("bad.out", curve(), extra="step 31/30 | loss 3.1x4 | lr 1.00e-03 | norm 0.1 | 1.0 ms | 1 tok/s\n")
case("a malformed step line: error naming the line", [ref, bad], 2, ["malformed step line", "bad.out:"])
twice = os.path.join(tmp, "twice.out")
open(twice, "w").write(open(ref).read() + "step 5/30 | loss 1.000000 | lr 5.00e-04 | norm 0.8500 | 1.0 ms | 1 tok/s\n")
case("a step printed twice with other values: error", [ref, twice], 2, ["step 5 is printed twice"])
case("--steps not A:B: error", [ref, ref, "--steps", "16-30"], 2, ["is not A:B"])
case("negative tolerance: error", [ref, ref, "--rtol", "-1"], 2, ["--rtol must be >= 0"])

print("%d passed, %d failed" % (passed, failed))
sys.exit(0 if failed == 0 else 1)
