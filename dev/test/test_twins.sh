#!/bin/bash
# The two trainers are twins (issue 15): for the same checkpoint and flags, train_sessa (CPU, fp32) and
# train_sessacu (CUDA, bf16; here under dev/cuda_emu, or the real build with TRAIN_SESSACU=./train_sessacu)
#  1. -x 0 prints the same validation loss ("step 0 | val loss X"),
#  2. 20 training steps follow the same loss curve: same data order (same -S: llmc/dataloader.h's shuffle),
#     same schedule, same AdamW with the same decay mask (llmc/sessa.h's sessa_param_decays),
#  3. and the comparison of 2 can fail: the CPU trainer with another seed (another data order) is rejected by it.
# Data: a noisy cycle over 64 of 256 ids (next = 7 id + 3 mod 64 with probability 0.9), so the loss falls from
# ~5.4 to ~2 in 20 steps at -l 1e-2 and a wrong step shows. The checkpoint: 2 CPU steps from d1w64h2 (so it is
# a trained checkpoint, not the init, with w_gamma != 0).
# Tolerances (relative to the CPU trainer's value; measured values in the comments, d1w64h2, B=2, T=32):
#  - val loss: 5e-3. The CUDA model runs the same fp32 checkpoint rounded to bf16 (2^-9 ~ 2e-3 relative per
#    weight and activation, accumulation in fp32); the loss, a mean over 8 x 64 tokens, moves by a few such
#    roundings at most. Measured: 5.462199 vs 5.462371 (3e-5).
#  - training: every step within 3e-2 and the mean over 20 steps within 1e-2. test_sessacu holds one bf16
#    forward's loss to 2e-2 of the float64 reference; in training the bf16 rounding of each update also feeds
#    the next steps, so single steps are allowed a little more, the average less. Measured: max 2.5e-3, mean
#    6e-4 (with shuffling); without shuffling (-w 0) max 1.7e-2 (one step), mean 2.6e-3.
#    Another data order (the control, -S 7): step 1 differs by 1.7%, later steps by up to 25%, mean ~7%.
# Usage: dev/test/test_twins.sh (from the repo root). Prints "N passed, M failed"; ~30 s on 2 cores.
set -u
make --no-print-directory -s train_sessa || { echo "error: CPU build failed"; exit 1; }
CPU=$(realpath train_sessa)
source "$(dirname "$0")/cuda_trainer.sh"; CUDA=$CUDA_TRAINER
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok()  { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
cd "$TMP"
python3 - <<'PY'
import numpy as np
def shard(path, toks):
    h = np.zeros(256, np.int32); h[0] = 20240520; h[1] = 1; h[2] = len(toks)
    open(path, "wb").write(h.tobytes() + np.asarray(toks, np.uint16).tobytes())
r = np.random.default_rng(0)
n = 30000; t = np.zeros(n, np.int64)
for i in range(1, n):
    t[i] = (7 * t[i - 1] + 3) % 64 if r.random() < 0.9 else r.integers(0, 64)
shard("tr.bin", t[:25000]); shard("va.bin", t[25000:])
PY
# the CPU trainer on one thread: at this size the threads would only wait on each other
export OMP_NUM_THREADS=1
"$CPU" -e d1w64h2 -V 256 -k /nonexistent -b 2 -t 32 -x 2 -v 0 -s 0 -i tr.bin -j va.bin -o ck >ck.out 2>&1 \
    || { bad "making the checkpoint: $(tail -2 ck.out)"; echo "$pass passed, $fail failed"; exit 1; }
FLAGS=(-e ck/model_00000002.bin -k /nonexistent -b 2 -t 32 -l 1e-2 -s 0 -i tr.bin -j va.bin)

# 1. -x 0: the validation loss of the checkpoint
"$CPU" "${FLAGS[@]}" -x 0 -v 1 -m 8 >val_cpu.out 2>&1
"$CUDA" "${FLAGS[@]}" -x 0 -v 1 -m 8 >val_cuda.out 2>&1
vc=$(awk '/^step 0 \| val loss/ { print $6 }' val_cpu.out); vg=$(awk '/^step 0 \| val loss/ { print $6 }' val_cuda.out)
if [ -n "$vc" ] && [ -n "$vg" ] && awk -v a="$vc" -v b="$vg" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 5e-3 * a) }'; then
    ok "-x 0: the same val loss (CPU $vc, CUDA $vg, |diff| <= 5e-3 x CPU)"
else bad "-x 0: val loss CPU '$vc' vs CUDA '$vg' (tolerance 5e-3 relative)"; tail -3 val_cpu.out val_cuda.out; fi
grep -q '^step 1' val_cuda.out && bad "-x 0: the CUDA trainer trained" || ok "-x 0: the CUDA trainer trains nothing"

# 2. 20 steps: "step N/20 | loss X" lines
losses() { awk '/^step [0-9]+\/[0-9]+ \| loss/ { print $5 }' "$1"; }
"$CPU" "${FLAGS[@]}" -x 20 -v 0 >tr_cpu.out 2>&1
"$CUDA" "${FLAGS[@]}" -x 20 -v 0 >tr_cuda.out 2>&1
"$CPU" "${FLAGS[@]}" -x 20 -v 0 -S 7 >tr_ctl.out 2>&1
losses tr_cpu.out >cpu.txt; losses tr_cuda.out >cuda.txt; losses tr_ctl.out >ctl.txt
# curve A B: 20 losses each; every step within 3e-2 and the mean within 1e-2 (relative to A)
curve() {
    paste "$1" "$2" | awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > mx) mx = r; s += r; n++ }
        END { if (n != 20) { printf "%d steps, not 20", n; exit 1 }
              printf "max %.2e, mean %.2e", mx, s / n; exit !(mx <= 3e-2 && s / n <= 1e-2) }'
}
if res=$(curve cpu.txt cuda.txt); then ok "20 steps: the same loss curve ($res relative; CPU $(head -1 cpu.txt) -> $(tail -1 cpu.txt), CUDA $(head -1 cuda.txt) -> $(tail -1 cuda.txt))"
else bad "20 steps: the curves differ ($res)"; paste cpu.txt cuda.txt | head -20; tail -3 tr_cpu.out tr_cuda.out; fi
# 3. the control: another data order must not pass the same comparison
if res=$(curve cpu.txt ctl.txt); then bad "control: another seed (-S 7) passes the comparison ($res): it cannot tell"
else ok "control: another data order (-S 7) fails the comparison ($res)"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
