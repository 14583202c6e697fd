#!/bin/bash
# Runs that survive people (issue 13): what a user does to a run of the CPU trainer, and what must happen.
# The CUDA trainer shares every piece checked here (llmc/args.h, llmc/train_state.h, llmc/dataloader.h).
#  - a resumed run (-y 1 -o OUT alone) takes the run's flags from OUT/args.txt, and its main.log equals
#    the uninterrupted run's line for line (tok_s aside: a timing); resuming a finished run changes nothing
#  - flags given again: -x overrides with a note; a different -e / -b is an error naming both values
#  - SIGINT finishes the step, saves a complete checkpoint, exits 130; a second signal exits at once
#  - stdout is line-buffered into a file; -h prints to stdout
#  - a second trainer on a live run's folder is refused naming the first; a killed run's lock is not stale
#  - a save that failed (disk full: here a file-size limit) leaves nothing that blocks the next run
#  - every shard is checked before step 1: an id >= vocab deep inside fails at startup, with the -k/-V hint
#  - -d 0, and a descriptor without tokenizer or -V, are errors naming the flag
#  - the tokenizer defaults to the one next to the -i shards (a run from outside the repo finds it)
#  - -nk N keeps the newest N checkpoints; -x 0 -s 1 samples from a checkpoint
# Usage: dev/test/test_run_dir.sh (from the repo root after `make train_sessa`). Prints "N passed, M failed";
# exit 0 only if all passed. ~20 s on 2 cores.
set -u
BIN=$(realpath "${TRAIN_SESSA:-./train_sessa}")   # TRAIN_SESSA=path: test another build
[ -x "$BIN" ] || { echo "error: ./train_sessa not built (make train_sessa)"; exit 1; }
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
pass=0; fail=0
ok()  { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
# check NAME CONDITION...: CONDITION (a command) must succeed
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# expect_error NAME PATTERN CMD...: CMD exits non-zero and its stderr matches PATTERN (grep -E -i)
expect_error() {
    local name=$1 pat=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -ne 0 ] && grep -E -i -q -- "$pat" "$TMP/err"; then ok "$name (exit $rc: $(grep -m1 -i error "$TMP/err" | cut -c1-160))"
    else bad "$name: exit $rc, stderr: $(head -c 400 "$TMP/err")"; fi
}
# wait_lines FILE PATTERN N: wait (up to 60 s) until FILE has N lines matching PATTERN
wait_lines() {
    for _ in $(seq 600); do
        local c; c=$(grep -c -E -- "$2" "$1" 2>/dev/null); [ "${c:-0}" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
nolog_time() { sed 's/ tok_s .*//' "$1"; }   # main.log without the timing column

# byte-level shards (V=256), a tokenizer next to them, and bad shards with one id >= 256 deep inside
mkdir -p "$TMP/ds"
python3 - "$TMP" <<'EOF'
import sys, numpy as np
sys.path.insert(0, "data")
from data_common import write_tokenizer
d = sys.argv[1]
def shard(path, toks):
    h = np.zeros(256, np.int32); h[0] = 20240520; h[1] = 1; h[2] = len(toks)
    with open(path, "wb") as f: f.write(h.tobytes()); f.write(np.asarray(toks, np.uint16).tobytes())
rng = np.random.default_rng(0)
good = rng.integers(0, 256, 40000)
shard(f"{d}/ds/x_train_000000.bin", good)
shard(f"{d}/ds/x_val_000000.bin", good[:5000])
write_tokenizer(f"{d}/ds/tokenizer.bin", [bytes([i]) for i in range(256)], 0)
bad = good.copy(); bad[31234] = 258    # far past the first steps of a short run
shard(f"{d}/bad_train.bin", bad)
badv = good[:5000].copy(); badv[4321] = 300
shard(f"{d}/bad_val.bin", badv)
EOF
D="$TMP/ds"
RUN=(-e d2w64h4 -b 2 -t 32 -x 16 -v 4 -m 2 -s 4 -g 8 -n 4 -u 2 -i "$D/x_train_*.bin" -j "$D/x_val_*.bin")

# ---- resume: flags kept, main.log equal to the uninterrupted run's, a finished run untouched
"$BIN" "${RUN[@]}" -o "$TMP/full" >"$TMP/full.out" 2>&1 || bad "uninterrupted run failed: $(tail -3 "$TMP/full.out")"
# "killed during step 15": the run's folder with its checkpoints up to step 8 and main.log up to step 14
cp -r "$TMP/full" "$TMP/cut"
rm -f "$TMP/cut/lock" "$TMP/cut"/*_0000001[26]* "$TMP/cut"/DONE_0000001[26]
sed -i '/^step 14 train_loss/q' "$TMP/cut/main.log"
check "the run's flags are kept in OUT/args.txt" grep -q -- "^-b 2$" "$TMP/cut/args.txt"
"$BIN" -y 1 -o "$TMP/cut" >"$TMP/cut.out" 2>&1
rc=$?
check "-y 1 -o OUT alone resumes the run (exit $rc)" [ $rc -eq 0 ]
check "  and says it reuses the run's flags" grep -q "the run's flags from" "$TMP/cut.out"
if [ $rc -eq 0 ] && [ "$(nolog_time "$TMP/full/main.log")" == "$(nolog_time "$TMP/cut/main.log")" ]; then
    ok "resumed main.log equals the uninterrupted one line for line ($(wc -l <"$TMP/full/main.log") lines)"
else bad "resumed main.log differs:"; diff <(nolog_time "$TMP/full/main.log") <(nolog_time "$TMP/cut/main.log") | head; fi
check "resumed final checkpoint is bit-identical" cmp -s "$TMP/full/model_00000016.bin" "$TMP/cut/model_00000016.bin"
cp "$TMP/full/main.log" "$TMP/full.log.before"
"$BIN" -y 1 -o "$TMP/full" >"$TMP/again.out" 2>&1
check "resuming a finished run succeeds (exit $?)" grep -q "resumed from step 16 " "$TMP/again.out"
check "  and leaves main.log as it was" cmp -s "$TMP/full/main.log" "$TMP/full.log.before"
check "  and prints no new val loss or sample" bash -c "! grep -q -E 'val loss|generating' '$TMP/again.out'"

# ---- flags given again on resume
"$BIN" -y 1 -o "$TMP/full" -x 18 >"$TMP/x.out" 2>&1
check "-y 1 -x 18 overrides the run's -x 16 with a note" grep -q -- "-x 18 overrides the run's -x 16" "$TMP/x.out"
check "  and trains on to step 18" grep -q "^step 18 train_loss" "$TMP/full/main.log"
check "  and keeps -x 18 in args.txt" grep -q -- "^-x 18$" "$TMP/full/args.txt"
expect_error "-y 1 with another -e names both values" "-e d1w32h2 conflicts with -e d2w64h4" "$BIN" -y 1 -o "$TMP/full" -e d1w32h2
expect_error "-y 1 with another -b names both values" "-b 4 conflicts with -b 2" "$BIN" -y 1 -o "$TMP/full" -b 4

# ---- Ctrl-C: the step ends, a checkpoint is saved, exit 130; stdout arrives line by line
SLOW=(-e d2w128h4 -b 4 -t 64 -x 100000 -v 0 -s 0 -n 0 -i "$D/x_train_*.bin")
"$BIN" "${SLOW[@]}" -o "$TMP/int" >"$TMP/int.out" 2>"$TMP/int.err" &
pid=$!; PIDS+=($pid)
if wait_lines "$TMP/int/main.log" "train_loss" 3; then
    check "stdout into a file is line-buffered (step lines there while the run goes on)" grep -q "^step 2/" "$TMP/int.out"
    # ---- a second trainer on the same folder is refused, naming the first
    expect_error "a second run on a live run's folder is refused naming its pid" "in use by another run \(pid and host: $pid " \
        timeout 30 "$BIN" "${SLOW[@]}" -o "$TMP/int"   # (timeout: a trainer without the lock would run on)
    expect_error "  and so is a -y 1 on it" "in use by another run" timeout 30 "$BIN" -y 1 -o "$TMP/int"
    kill -INT $pid; wait $pid; rc=$?
    check "SIGINT: exit 130 (got $rc)" [ $rc -eq 130 ]
    n=$(ls "$TMP/int" | sed -n 's/^DONE_0*\([0-9][0-9]*\)$/\1/p' | tail -1)
    check "SIGINT saved a complete checkpoint (step ${n:-none})" [ -n "$n" -a -e "$TMP/int/model_$(printf %08d "${n:-0}").bin" \
        -a -e "$TMP/int/state_$(printf %08d "${n:-0}").bin" ]
    check "  at the step main.log ends with" [ "$(tail -1 "$TMP/int/main.log" | cut -d' ' -f2)" == "${n:-x}" ]
    "$BIN" -y 1 -o "$TMP/int" -x $((n + 2)) >"$TMP/int2.out" 2>&1
    check "  and -y 1 resumes from it (exit $?)" grep -q "resumed from step $n " "$TMP/int2.out"
else bad "SIGINT run did not start: $(tail -3 "$TMP/int.err")"; kill -9 $pid; fi

# ---- a second SIGTERM exits at once; a killed run's lock does not block the folder
"$BIN" "${SLOW[@]}" -n 1 -o "$TMP/term" >/dev/null 2>&1 &
pid=$!; PIDS+=($pid)
if wait_lines "$TMP/term/main.log" "train_loss" 2; then
    kill -TERM $pid; kill -TERM $pid; wait $pid; rc=$?   # a launcher forwarding the terminal's signal
    check "two SIGTERMs at once are one request: exit 143 (got $rc)" [ $rc -eq 143 ]
    n=$(ls "$TMP/term" | sed -n 's/^DONE_0*\([0-9][0-9]*\)$/\1/p' | tail -1)
    "$BIN" -y 1 -o "$TMP/term" -x $((${n:-0} + 2)) -n 0 >"$TMP/term2.out" 2>&1
    check "  the checkpoints left behind are intact: -y 1 resumes from step ${n:-none} and finishes (exit $?)" \
        grep -q "^step $((${n:-0} + 2))/$((${n:-0} + 2)) " "$TMP/term2.out"
else bad "SIGTERM run did not start"; fi
# a second signal 1.5 s after the first exits at once: steps of 1000 micro-batches (seconds each), so the
# run is still in its first step; nothing is saved, the exit is immediate
"$BIN" "${SLOW[@]}" -d $((4 * 64 * 1000)) -o "$TMP/twice" >"$TMP/twice.out" 2>&1 &
pid=$!; PIDS+=($pid)
if wait_lines "$TMP/twice.out" "^\| parameters" 1; then
    kill -INT $pid; sleep 1.5; kill -INT $pid
    t0=$SECONDS; wait $pid; rc=$?
    stepped=$(grep -c "^step 1/" "$TMP/twice.out")
    check "a second Ctrl-C 1.5 s later exits at once (exit $rc, $((SECONDS - t0)) s, no step finished)" \
        [ $rc -eq 130 -a ! -e "$TMP/twice/DONE_00000001" -a "$stepped" -eq 0 ]
else bad "second-signal run did not start: $(tail -2 "$TMP/twice.out")"; kill -9 $pid; fi
"$BIN" "${SLOW[@]}" -o "$TMP/kill9" >/dev/null 2>&1 &
pid=$!; PIDS+=($pid)
wait_lines "$TMP/kill9/main.log" "train_loss" 2
kill -9 $pid; wait $pid 2>/dev/null
"$BIN" "${SLOW[@]}" -x 1 -o "$TMP/kill9" >"$TMP/k9.out" 2>&1
check "a kill -9'd run's lock does not block the next run (exit $?)" grep -q "saved checkpoint" "$TMP/k9.out"

# ---- Ctrl-C in a terminal running scripts/launch_local.sh (2 ranks, here 2 CPU runs in their own folders):
# the ranks get the terminal's SIGINT and the launcher's SIGTERM at once: each saves, the launcher waits
RANK_LOG_DIR="$TMP/ranks" setsid scripts/launch_local.sh 2 bash -c 'd=$1; shift; exec "$0" "$@" -o "$d.$RANK"' "$BIN" "$TMP/ll" "${SLOW[@]}" \
    >"$TMP/ll.out" 2>&1 &
lpid=$!; PIDS+=($lpid)
if wait_lines "$TMP/ll.1/main.log" "train_loss" 2 && wait_lines "$TMP/ll.0/main.log" "train_loss" 2; then
    kill -INT -- -$lpid; wait $lpid; rc=$?
    check "launch_local.sh + Ctrl-C: every rank saved a checkpoint, the launcher exits $rc (130 or 143)" \
        [ \( $rc -eq 130 -o $rc -eq 143 \) -a -n "$(ls "$TMP/ll.0" | grep DONE_)" -a -n "$(ls "$TMP/ll.1" | grep DONE_)" ]
else bad "launch_local run did not start: $(tail -3 "$TMP/ll.out")"; kill -9 -- -$lpid; fi

# ---- a failed save (file-size limit: the state file does not fit) leaves nothing that blocks the next run
SMALL=(-e d2w64h4 -b 2 -t 32 -v 0 -s 0 -n 2 -i "$D/x_train_*.bin")
"$BIN" "${SMALL[@]}" -x 2 -o "$TMP/full_disk" >/dev/null 2>&1
# model_*.bin is ~367 kB, state_*.bin ~734 kB: a 500 kB limit (bash counts 1024-byte blocks) lets the
# model through, the state write fails (SIGXFSZ ignored: the write returns EFBIG, as ENOSPC on a full disk)
{ ( trap '' XFSZ; ulimit -f 500; exec "$BIN" -y 1 -o "$TMP/full_disk" -x 4 ) >/dev/null 2>"$TMP/fd.err"; } 2>/dev/null
rc=$?
check "the save that hits the limit fails with a clear error (exit $rc)" grep -q -i "write error" "$TMP/fd.err"
check "  leaving an orphan model_00000004.bin and a partial state .tmp behind" \
    [ -e "$TMP/full_disk/model_00000004.bin" -a ! -e "$TMP/full_disk/DONE_00000004" -a -e "$TMP/full_disk/state_00000004.bin.tmp" ]
"$BIN" -y 1 -o "$TMP/full_disk" -x 3 >"$TMP/fd2.out" 2>&1
check "the next run removes them (exit $?)" [ ! -e "$TMP/full_disk/model_00000004.bin" -a ! -e "$TMP/full_disk/state_00000004.bin.tmp" ]
check "  saying so" grep -q "removed .*state_00000004.bin.tmp" "$TMP/fd2.out"
check "  and resumes from the intact step 2" grep -q "resumed from step 2 " "$TMP/fd2.out"

# ---- data checked before step 1
expect_error "train shard: id 258 at token 31234 fails before step 1, with the -k/-V hint" \
    "bad_train.bin': token 31234 has id 258, out of range for vocab_size 256.*-k PATH.*-V N" \
    "$BIN" "${SMALL[@]}" -x 2 -i "$TMP/bad_train.bin" -k "$D/tokenizer.bin"
check "  no step was trained" bash -c "! grep -q '^step 1/' '$TMP/out'"
expect_error "val shard: id 300 at token 4321 fails before step 1" "bad_val.bin': token 4321 has id 300" \
    "$BIN" "${SMALL[@]}" -x 2 -v 1 -j "$TMP/bad_val.bin" -k "$D/tokenizer.bin"

# ---- flags
expect_error "-d 0 is refused" "flag -d: 0 tokens per step" "$BIN" "${SMALL[@]}" -x 1 -d 0
expect_error "no tokenizer and no -V: an error with the hint" "no vocabulary size.*-k PATH.*-V N" \
    "$BIN" "${SMALL[@]}" -x 1 -k /nonexistent
(cd / && "$BIN" "${SMALL[@]}" -x 1 >"$TMP/outside.out" 2>&1)
check "run from outside the repo: the tokenizer next to the -i shards gives V 256" grep -q "| V 256 " "$TMP/outside.out"
"$BIN" -h 2>/dev/null >"$TMP/help.out"
check "-h prints the usage to stdout" grep -q -- "-nk N" "$TMP/help.out"

# ---- keep the newest N checkpoints; sample from a checkpoint
"$BIN" "${SMALL[@]}" -x 5 -n 1 -nk 2 -o "$TMP/keep" >/dev/null 2>&1
check "-n 1 -nk 2 keeps the checkpoints of steps 4 and 5 only" \
    [ "$(cd "$TMP/keep" && ls | grep -E '^(DONE|model|state)_' | tr '\n' ' ')" == \
      "DONE_00000004 DONE_00000005 model_00000004.bin model_00000005.bin state_00000004.bin state_00000005.bin " ]
"$BIN" -e "$TMP/keep/model_00000005.bin" -x 0 -s 1 -g 8 -v 0 -i "$D/x_train_*.bin" >"$TMP/sample.out" 2>&1
check "-x 0 -s 1 samples from a checkpoint" grep -q "generating" "$TMP/sample.out"

# ---- train_sessa.py --eval of a run's checkpoint uses the run's -b -t -m -j: the val loss of its main.log
if python3 -c "import torch" 2>/dev/null; then
    "$BIN" "${SMALL[@]}" -x 4 -v 4 -m 3 -j "$D/x_val_*.bin" -o "$TMP/pyeval" >/dev/null 2>&1
    want=$(awk '$3 == "val_loss" && $2 == 4 { print $4 }' "$TMP/pyeval/main.log")
    got=$(python3 train_sessa.py --eval "$TMP/pyeval/model_00000004.bin" 2>&1 | awk '/^val loss/ { print $3 }')
    # the same batches in fp32: PyTorch and the C model agree to ~1e-6 relative (dev/test/test_reference.py)
    check "train_sessa.py --eval gives main.log's val loss ($want vs $got, |diff| < 1e-4)" \
        python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(not abs(a - b) < 1e-4)" "${want:-nan}" "${got:-inf}"
else echo "SKIP: train_sessa.py --eval (no torch)"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
