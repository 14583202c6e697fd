#!/bin/bash
# The CUDA trainer's run directory (issue 13), its main run on the CPU by dev/cuda_emu (one process, ~0.5 s
# per step of a d1w64h2 model): the same llmc/ code as the CPU trainer's (dev/test/test_run_dir.sh), checked
# here through train_sessa.cu's own loop (the same schedule: validation and sample of a step, then its checkpoint).
#  - -y 1 -o OUT alone resumes with the run's flags; main.log equals the uninterrupted run's line for line,
#    the final checkpoint is bit-identical; resuming a finished run changes nothing
#  - SIGINT: a checkpoint of the step, exit 130; a second trainer on the live folder is refused
#  - -nk 1 keeps only the newest checkpoint
# Usage: dev/test/test_run_dir_cuda_emu.sh (from the repo root). Prints "N passed, M failed"; ~30 s.
#        TRAIN_SESSACU=./train_sessacu dev/test/test_run_dir_cuda_emu.sh   (on a GPU machine: the real build)
set -u
# TRAIN_SESSACU=./train_sessacu runs the same checks on a GPU with the real build instead of the emulator
source "$(dirname "$0")/cuda_trainer.sh"; BIN=$CUDA_TRAINER
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
pass=0; fail=0
ok()  { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
nolog_time() { sed 's/ tok_s .*//' "$1"; }
python3 - "$TMP" <<'PY'
import sys, numpy as np
def shard(path, toks):
    h = np.zeros(256, np.int32); h[0] = 20240520; h[1] = 1; h[2] = len(toks)
    open(path, "wb").write(h.tobytes() + np.asarray(toks, np.uint16).tobytes())
g = np.random.default_rng(0).integers(0, 256, 20000)
shard(f"{sys.argv[1]}/tr.bin", g); shard(f"{sys.argv[1]}/va.bin", g[:5000])
PY
RUN=(-e d1w64h2 -b 1 -t 16 -V 256 -k /nonexistent -x 6 -v 2 -m 1 -s 0 -n 2 -i "$TMP/tr.bin" -j "$TMP/va.bin")
"$BIN" "${RUN[@]}" -o "$TMP/full" >"$TMP/full.out" 2>&1 || bad "uninterrupted run: $(tail -3 "$TMP/full.out")"
cp -r "$TMP/full" "$TMP/cut"   # "killed during step 6": checkpoints up to 4, main.log up to step 5
rm -f "$TMP/cut/lock" "$TMP/cut"/*_00000006*
sed -i '/^step 5 train_loss/q' "$TMP/cut/main.log"
"$BIN" -y 1 -o "$TMP/cut" >"$TMP/cut.out" 2>&1
rc=$?
check "-y 1 -o OUT alone resumes from step 4 (exit $rc)" grep -q "resumed from step 4 " "$TMP/cut.out"
if [ $rc -eq 0 ] && [ "$(nolog_time "$TMP/full/main.log")" == "$(nolog_time "$TMP/cut/main.log")" ]; then
    ok "resumed main.log equals the uninterrupted one ($(wc -l <"$TMP/full/main.log") lines)"
else bad "resumed main.log differs:"; diff <(nolog_time "$TMP/full/main.log") <(nolog_time "$TMP/cut/main.log") | head; fi
check "resumed final checkpoint is bit-identical" cmp -s "$TMP/full/model_00000006.bin" "$TMP/cut/model_00000006.bin"
cp "$TMP/full/main.log" "$TMP/before.log"
"$BIN" -y 1 -o "$TMP/full" >"$TMP/again.out" 2>&1
check "resuming a finished run leaves main.log as it was (exit $?)" cmp -s "$TMP/full/main.log" "$TMP/before.log"

"$BIN" -e d1w64h2 -b 1 -t 16 -V 256 -k /nonexistent -x 1000 -v 0 -s 0 -nk 1 -n 1 -i "$TMP/tr.bin" -o "$TMP/int" \
    >"$TMP/int.out" 2>&1 &
pid=$!; PIDS+=($pid)
for _ in $(seq 300); do [ -e "$TMP/int/DONE_00000003" ] && break; sleep 0.1; done
timeout 30 "$BIN" -y 1 -o "$TMP/int" >/dev/null 2>"$TMP/lock.err"
check "a second trainer on the live folder is refused naming the first" grep -q "in use by another run (pid and host: $pid " "$TMP/lock.err"
kill -INT $pid; wait $pid; rc=$?
check "SIGINT: exit 130 (got $rc)" [ $rc -eq 130 ]
n=$(ls "$TMP/int" | sed -n 's/^DONE_0*\([0-9][0-9]*\)$/\1/p')
check "SIGINT: the checkpoint of the last step, and -nk 1 kept only it (DONE steps: $(echo $n))" \
    [ "$(echo $n | wc -w)" -eq 1 -a "$(tail -1 "$TMP/int/main.log" | cut -d' ' -f2)" == "$n" ]
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
