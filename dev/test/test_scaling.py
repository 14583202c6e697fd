#!/usr/bin/env python3
"""scripts/scaling.py end to end without a GPU: a stand-in trainer (a shell script that launch_local.sh starts as it
would start train_sessacu, one process per "GPU") prints step lines whose tok/s are set by its world size, -cg and
-z, so every number of the CSV is known: the medians, tok/s per GPU, the efficiency against the 1-GPU -cg 1 run and
the one against the 1-GPU -cg 0 run (efficiency_same_path), the flags each run got (-cg only on one GPU, -z per
run), a failed run marked and the exit status 1, and the PNG drawn. Prints one line per check and "N passed,
M failed"; CPU only, a few seconds."""
import csv
import os
import stat
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
tmp = tempfile.mkdtemp(prefix="test_scaling_")
fake = os.path.join(tmp, "fake_trainer.sh")
# tok/s of the whole step: 1 GPU -cg 1: 1000, -cg 0: 900; 2 GPUs ZeRO-0: 1710, ZeRO-1: 1620 (steps 1-5 slower:
# the warmup must be left out of the median). FAIL_Z1=1: the ZeRO-1 run exits 3.
with open(fake, "w") as f:
    f.write(r"""#!/usr/bin/env bash
echo "$*" > "$ARGS_DIR/args_w${WORLD_SIZE:-1}_r${RANK:-0}_$$"
cg=1; z=0; x=0; prev=
for a in "$@"; do case $prev in -cg) cg=$a ;; -z) z=$a ;; -x) x=$a ;; esac; prev=$a; done
w=${WORLD_SIZE:-1}
if [ "$w" = 1 ]; then tps=$([ "$cg" = 1 ] && echo 1000 || echo 900); else tps=$([ "$z" = 1 ] && echo 1620 || echo 1710); fi
[ "$w" != 1 ] && [ "$z" = 1 ] && [ -n "${FAIL_Z1:-}" ] && { echo "rank ${RANK:-0}: NCCL error" >&2; exit 3; }
for i in $(seq 1 "$x"); do
    t=$tps; [ "$i" -le 5 ] && t=$((tps / 2))
    echo "step $i/$x | loss 5.000000 | lr 1.00e-03 | norm 1.0000 | 10.0 ms | 12.5% MFU | $t tok/s"
done
""")
os.chmod(fake, os.stat(fake).st_mode | stat.S_IEXEC)

passed = failed = 0


def check(what, ok, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print("%s %s%s" % ("PASS" if ok else "FAIL", what, "" if ok else ": " + detail))


def sweep(name, extra_env=None):
    args_dir = os.path.join(tmp, name + "_args")
    os.makedirs(args_dir)
    env = dict(os.environ, ARGS_DIR=args_dir, **(extra_env or {}))
    out = os.path.join(tmp, name)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "scaling.py"), "--gpus", "1,2", "--mode", "weak",
                        "--zero", "0,1", "--desc", "d2w64h2", "-B", "2", "-T", "16", "-V", "256", "--steps", "12",
                        "--warmup", "5", "--trainer", fake, "--out", out], capture_output=True, text=True, env=env)
    rows = list(csv.DictReader(open(out + ".csv"))) if os.path.exists(out + ".csv") else []
    args = {fn: open(os.path.join(args_dir, fn)).read().split() for fn in os.listdir(args_dir)}
    return p, rows, args, out


p, rows, args, out = sweep("ok")
check("the sweep exits 0", p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:])
by = {(r["gpus"], r["cuda_graph"], r["zero"]): r for r in rows}
check("4 rows: 1 GPU -cg 1 and -cg 0, 2 GPUs ZeRO-0 and ZeRO-1", sorted(by) == [("1", "0", "0"), ("1", "1", "0"),
                                                                             ("2", "1", "0"), ("2", "1", "1")], str(sorted(by)))
want = {("1", "1", "0"): ("1000.0", "1000.0", "1.0000", "1.1111"), ("1", "0", "0"): ("900.0", "900.0", "0.9000", "1.0000"),
        ("2", "1", "0"): ("1710.0", "855.0", "0.8550", "0.9500"), ("2", "1", "1"): ("1620.0", "810.0", "0.8100", "0.9000")}
for k, (tps, per, eff, same) in want.items():
    r = by.get(k, {})
    got = (r.get("tok_per_s"), r.get("tok_per_s_per_gpu"), r.get("efficiency"), r.get("efficiency_same_path"))
    check("gpus=%s cg=%s zero=%s: tok/s %s, per GPU %s, efficiency %s, same path %s (median after the warmup)" % (
        k + (tps, per, eff, same)), got == (tps, per, eff, same), str(got))
check("steps_timed 7 (12 - warmup 5) and MFU 12.5 in every row",
      all(r["steps_timed"] == "7" and r["mfu_percent"] == "12.50" for r in rows), str([(r["steps_timed"], r["mfu_percent"]) for r in rows]))
one = [a for fn, a in args.items() if "_w1_" in fn]
two = [a for fn, a in args.items() if "_w2_" in fn]
check("1-GPU runs get -cg 1 and -cg 0", sorted(a[a.index("-cg") + 1] for a in one) == ["0", "1"], str(one))
check("2-GPU runs (2 processes each) get no -cg and -z 0 / -z 1, -d = 2 B T",
      len(two) == 4 and all("-cg" not in a and a[a.index("-d") + 1] == "64" for a in two) and
      sorted(a[a.index("-z") + 1] for a in two) == ["0", "0", "1", "1"], str(two))
check("the PNG is drawn", os.path.getsize(out + ".png") > 10000 if os.path.exists(out + ".png") else False)
p2 = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "scaling.py"), "--plot-only", out + ".csv"],
                    capture_output=True, text=True)
check("--plot-only redraws it from the CSV", p2.returncode == 0 and "wrote" in p2.stdout, p2.stderr[-1000:])

p, rows, args, out = sweep("fail", {"FAIL_Z1": "1"})
by = {(r["gpus"], r["cuda_graph"], r["zero"]): r for r in rows}
r = by.get(("2", "1", "1"), {})
check("a failing run: exit status 1, its row 'exit 3' with no tok/s, the others kept",
      p.returncode == 1 and r.get("status") == "exit 3" and r.get("tok_per_s") == "" and
      by.get(("2", "1", "0"), {}).get("efficiency") == "0.8550", str(rows) + p.stderr[-500:])

print("%d passed, %d failed" % (passed, failed))
sys.exit(0 if failed == 0 else 1)
