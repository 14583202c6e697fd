#!/bin/bash
# Behaviour tests of the CPU trainer (run from the repo root after `make train_sessa test_sessa`):
#  - bad inputs: each run must exit non-zero with a message naming the cause
#  - an interrupted checkpoint write leaves the previous checkpoint intact
#  - a resumed run reproduces the uninterrupted run's losses exactly
#  - test_sessa catches a deliberately wrong feedback gradient (-DBREAK_FEEDBACK build)
# Usage: dev/test/test_cpu_errors.sh [REFS_DIR]   (REFS_DIR: reference dumps of train_sessa.py, default dev/refs)
# Prints "N passed, M failed"; exit code 0 only if all passed. Small models only: ~30 s on 2 cores.
set -u
REFS=${1:-dev/refs}
BIN=./train_sessa
[ -x "$BIN" ] || { echo "error: $BIN not built (make train_sessa)"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
pass=0; fail=0
ok()  { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }

# expect_error NAME PATTERN CMD...: CMD exits non-zero and its stderr matches PATTERN (grep -E -i)
expect_error() {
    local name=$1 pat=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -ne 0 ] && grep -E -i -q "$pat" "$TMP/err"; then ok "$name (exit $rc: $(grep -m1 -i error "$TMP/err"))"
    else bad "$name: exit $rc, stderr: $(head -c 300 "$TMP/err")"; fi
}

# small shards (byte-level, V=256) written with the llm.c header
python3 - "$TMP" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
def shard(path, toks, magic=20240520, version=1, count=None, dtype=np.uint16):
    h = np.zeros(256, np.int32); h[0] = magic; h[1] = version; h[2] = len(toks) if count is None else count
    with open(path, "wb") as f: f.write(h.tobytes()); f.write(np.asarray(toks, dtype).tobytes())
rng = np.random.default_rng(0)
good = rng.integers(0, 256, 20000)
shard(f"{d}/good_train.bin", good)
shard(f"{d}/good_val.bin", good[:5000])
shard(f"{d}/magic.bin", good, magic=12345)
shard(f"{d}/trunc.bin", good, count=len(good) + 100)
bad = good.copy(); bad[::40] = 300     # in every batch: the loader checks each batch it reads
shard(f"{d}/vocab.bin", bad)
EOF
COMMON=(-b 2 -t 32 -v 0 -s 0 -V 256 -k /nonexistent)
T="$TMP/good_train.bin"

expect_error "wrong shard magic"      "magic"                 $BIN -e d1w32h2 "${COMMON[@]}" -x 1 -i "$TMP/magic.bin"
expect_error "truncated shard"        "truncated"             $BIN -e d1w32h2 "${COMMON[@]}" -x 1 -i "$TMP/trunc.bin"
expect_error "token >= vocab"         "out of range"          $BIN -e d1w32h2 "${COMMON[@]}" -x 1 -i "$TMP/vocab.bin"
expect_error "no file matches glob"   "no file matches"       $BIN -e d1w32h2 "${COMMON[@]}" -x 1 -i "$TMP/nothing_*.bin"
expect_error "D not divisible by H"   "not divisible by n_head" $BIN -e d2w64h3 "${COMMON[@]}" -x 1 -i "$T"
expect_error "odd head width + RoPE"  "odd"                   $BIN -e d2w30h2 "${COMMON[@]}" -x 1 -i "$T"
expect_error "garbage descriptor"     "bad model descriptor"  $BIN -e d2x "${COMMON[@]}" -x 1 -i "$T"
expect_error "bad flag value"         "flag -b"               $BIN -b 4x -i "$T"

# checkpoints: a good one, then corrupted copies
$BIN -e d1w32h2 "${COMMON[@]}" -x 2 -n 2 -i "$T" -o "$TMP/run0" >/dev/null 2>&1 || bad "training run for the checkpoint tests"
CK="$TMP/run0/model_00000002.bin"
head -c 2000 "$CK" > "$TMP/ck_trunc.bin"
cp "$CK" "$TMP/ck_long.bin"; echo "x" >> "$TMP/ck_long.bin"
python3 - "$CK" "$TMP" <<'EOF'
import sys, struct
ck, d = sys.argv[1], sys.argv[2]
b = bytearray(open(ck, "rb").read())
def put(name, off, val, fmt="<i"):
    c = bytearray(b); c[off:off + 4] = struct.pack(fmt, val); open(f"{d}/{name}", "wb").write(c)
put("ck_magic.bin", 0, 1234)
put("ck_version.bin", 4, 7)
put("ck_gamma.bin", 40, 1.5, "<f")     # header[10] gamma_max
put("ck_heads.bin", 20, 3)             # header[5] n_head: 32 % 3 != 0
EOF
expect_error "truncated checkpoint"   "truncated"           $BIN -e "$TMP/ck_trunc.bin" "${COMMON[@]}" -x 1 -i "$T"
expect_error "checkpoint extra bytes" "trailing data"       $BIN -e "$TMP/ck_long.bin" "${COMMON[@]}" -x 1 -i "$T"
expect_error "checkpoint bad magic"   "bad magic"           $BIN -e "$TMP/ck_magic.bin" "${COMMON[@]}" -x 1 -i "$T"
expect_error "checkpoint bad version" "version"             $BIN -e "$TMP/ck_version.bin" "${COMMON[@]}" -x 1 -i "$T"
expect_error "gamma_max outside (0,1)" "gamma_max"          $BIN -e "$TMP/ck_gamma.bin" "${COMMON[@]}" -x 1 -i "$T"
expect_error "checkpoint D % H != 0"  "not divisible"       $BIN -e "$TMP/ck_heads.bin" "${COMMON[@]}" -x 1 -i "$T"
# a resume state that belongs to another model
mkdir -p "$TMP/mism"
$BIN -e d1w64h2 "${COMMON[@]}" -x 2 -n 2 -i "$T" -o "$TMP/other" >/dev/null 2>&1
cp "$CK" "$TMP/mism/model_00000002.bin"; cp "$TMP/other/state_00000002.bin" "$TMP/mism/"; touch "$TMP/mism/DONE_00000002"
expect_error "mismatched resume state" "parameters but the model has" $BIN "${COMMON[@]}" -x 3 -i "$T" -o "$TMP/mism" -y 1

# interrupted checkpoint write: a second run into the same dir is killed (file size limit) while it
# overwrites model_00000002.bin; the old file must be intact and still load
cp "$CK" "$TMP/ck_before.bin"
{ ( ulimit -f 64; exec $BIN -e d1w32h2 "${COMMON[@]}" -x 2 -n 2 -S 7 -i "$T" -o "$TMP/run0" ) >/dev/null 2>&1; } 2>/dev/null
rc=$?
if [ $rc -ne 0 ] && cmp -s "$CK" "$TMP/ck_before.bin" && [ -e "$CK.tmp" ]; then
    ok "interrupted checkpoint write (exit $rc) left the previous checkpoint byte-identical"
else bad "interrupted checkpoint write: exit $rc, previous checkpoint changed or no partial .tmp"; fi
if $BIN -e "$CK" "${COMMON[@]}" -x 1 -i "$T" >/dev/null 2>&1; then ok "previous checkpoint still loads"
else bad "previous checkpoint does not load after the interrupted write"; fi

# resume reproduces the uninterrupted run exactly (losses, val losses, lr, norm as logged)
RUN=(-e d2w64h4 -b 2 -t 32 -V 256 -k /nonexistent -x 8 -v 4 -m 2 -s 4 -g 8 -n 4 -i "$T" -j "$TMP/good_val.bin")
$BIN "${RUN[@]}" -o "$TMP/full" >/dev/null 2>&1
mkdir -p "$TMP/resumed"
cp "$TMP/full/model_00000004.bin" "$TMP/full/state_00000004.bin" "$TMP/full/DONE_00000004" "$TMP/resumed/"
$BIN "${RUN[@]}" -o "$TMP/resumed" -y 1 >/dev/null 2>&1
strip() { grep -E "^step ([5-8]) " "$1" | sed 's/ tok_s .*//'; }
if [ -s "$TMP/resumed/main.log" ] && [ "$(strip "$TMP/full/main.log")" == "$(strip "$TMP/resumed/main.log")" ] \
   && [ "$(strip "$TMP/full/main.log" | wc -l)" -ge 5 ]; then
    ok "resumed run reproduces steps 5-8 exactly"
else bad "resumed run differs:"; diff <(strip "$TMP/full/main.log") <(strip "$TMP/resumed/main.log"); fi
if cmp -s "$TMP/full/model_00000008.bin" "$TMP/resumed/model_00000008.bin"; then ok "resumed final checkpoint is bit-identical"
else bad "resumed final checkpoint differs"; fi

# test_sessa catches a wrong feedback gradient (Sessa dumps) and a wrong gradient in the f0 path (the feedback-off
# dumps, header slot 12 = 1, have no feedback branch to break)
if ls "$REFS"/*_debug.bin >/dev/null 2>&1; then
    ${CC:-gcc} -O3 -march=native -ffp-contract=fast -fno-math-errno -fopenmp -DBREAK_FEEDBACK test_sessa.c -lm -o "$TMP/test_broken"
    ${CC:-gcc} -O3 -march=native -ffp-contract=fast -fno-math-errno -fopenmp -DBREAK_F0 test_sessa.c -lm -o "$TMP/test_broken_f0"
    for d in "$REFS"/*_debug.bin; do
        for m in ${d%_debug.bin}_model.bin ${d%_debug.bin}_model_bf16.bin; do   # fp32 and bf16 tolerances
            if [ "$(od -An -t d4 -j 48 -N 4 "$m" | tr -d ' ')" = 1 ]; then brk=BREAK_F0; bin="$TMP/test_broken_f0"
            else brk=BREAK_FEEDBACK; bin="$TMP/test_broken"; fi
            if "$bin" -m "$m" -d "$d" >"$TMP/out" 2>&1; then bad "$brk not caught on $(basename "$m")"
            else ok "$brk caught on $(basename "$m"): $(grep -c FAIL "$TMP/out") failing lines"; fi
        done
    done
else bad "no reference dumps in $REFS (python train_sessa.py --write_refs $REFS)"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
