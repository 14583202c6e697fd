#!/bin/bash
# The feedback calls in parts (train_sessa.cu feedback_split, llmc/feedback.cuh "Parts": the first side work issued
# before RoPE and the attention / Linear_out's backward, the backward's last tail joined after the attention's
# backward) against the whole calls (SESSA_FB_SPLIT=0): the same model, data and flags trained 3 steps each way with
# superblocks of 128 rows (SESSA_FB_S=128; T = 320: 3 superblocks, the last partial; T = 640: 5) for several head
# layouts (H = 2 with Linear_o, H = 1 without it, GQA), and with one superblock (T = 100: the call in parts keeps
# its side streams). The same kernels with the same arguments on the same
# streams, so the loss and norm lines must be equal to the last printed digit, here under the CPU emulator and on a
# GPU alike (TRAIN_SESSACU=./train_sessacu: there the side streams really run beside the main one, so a missing
# wait shows as another result). Usage: dev/test/test_fb_split.sh (repo root). Prints "N passed, M failed".
set -u
source "$(dirname "$0")/cuda_trainer.sh"; BIN=$CUDA_TRAINER
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
losses() { grep "^step" "$1" | sed 's/ | [0-9.]* ms .*//'; }   # step, loss, lr, norm (not the times)
python3 - "$TMP/tr.bin" <<'PY'
import sys, numpy as np
h = np.zeros(256, np.int32); h[0] = 20240520; h[1] = 1; h[2] = 20000
open(sys.argv[1], "wb").write(h.tobytes() + np.random.default_rng(1).integers(0, 256, 20000).astype(np.uint16).tobytes())
PY
for cfg in "d2w128h2 2 320 1" "d2w64h1 2 320 1" "d2w128h2k1 1 320 1" "d1w128h2 1 640 1" "d2w128h2 2 100 1"; do
    set -- $cfg; e=$1; B=$2; T=$3; on=$4
    for p in 0 $on; do
        SESSA_FB_S=128 SESSA_FB_SPLIT=$p "$BIN" -e $e -b $B -t $T -V 256 -k /nonexistent -x 3 -v 0 -s 0 -n 0 \
            -i "$TMP/tr.bin" -o "$TMP/run_${e}_${T}_$p" > "$TMP/$e.$p.out" 2>&1 || { echo "FAIL: $e SESSA_FB_SPLIT=$p: $(tail -3 "$TMP/$e.$p.out")"; fail=$((fail + 1)); continue 2; }
    done
    if [ "$(losses "$TMP/$e.0.out" | wc -l)" = 3 ] && cmp -s <(losses "$TMP/$e.0.out") <(losses "$TMP/$e.$on.out"); then
        echo "PASS: $e B=$B T=$T: SESSA_FB_SPLIT=$on = 0 (3 equal step lines; last: $(losses "$TMP/$e.$on.out" | tail -1))"; pass=$((pass + 1))
    else echo "FAIL: $e B=$B T=$T: SESSA_FB_SPLIT=$on and 0 differ"; diff <(losses "$TMP/$e.0.out") <(losses "$TMP/$e.$on.out") | head -6; fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
