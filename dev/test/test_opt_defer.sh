#!/bin/bash
# The optimizer beside the next forward (train_sessa.cu "The optimizer beside the next forward", SESSA_OPT_DEFER=1,
# the default with one GPU: AdamW by layer groups on its own stream inside the next micro-step's forward, the
# encoder reading wte as updated, the gradients zeroed there) against the update at the end of each step
# (SESSA_OPT_DEFER=0): the same model, data and flags, 5 steps with validation (every 2), sampling (every 3) and
# checkpoints (every 2) in between, which must apply a pending update first, once with 2 micro-steps a step
# (the second accumulates; no update pending there). The same arithmetic on the same values, so the step lines
# (loss, lr, norm), the val lines, the sampled tokens and the checkpoint files must be equal bit for bit, here under
# the CPU emulator and on a GPU alike (TRAIN_SESSACU=./train_sessacu: there the update really runs beside the
# forward, and -cg 0 / 1 both run; a missing wait shows as another result). Usage: dev/test/test_opt_defer.sh
# (repo root). Prints "N passed, M failed".
set -u
source "$(dirname "$0")/cuda_trainer.sh"; BIN=$CUDA_TRAINER
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
python3 - "$TMP" <<'PY'
import sys, numpy as np
for name, n, seed in (("tr", 20000, 1), ("va", 4000, 2)):
    h = np.zeros(256, np.int32); h[0] = 20240520; h[1] = 1; h[2] = n
    open(f"{sys.argv[1]}/{name}.bin", "wb").write(h.tobytes() + np.random.default_rng(seed).integers(0, 256, n).astype(np.uint16).tobytes())
PY
variants="0:1 1:1"   # SESSA_OPT_DEFER:-cg (the first is the reference)
[ -n "${TRAIN_SESSACU:-}" ] && variants="0:1 1:1 1:0"
for cfg in "d2w128h2 2 128 512" "d1w64h2k1 1 64 128"; do
    set -- $cfg; e=$1; B=$2; T=$3; d=$4
    for var in $variants; do
        o=${var%:*}; cg=${var#*:}
        SESSA_OPT_DEFER=$o "$BIN" -e $e -b $B -t $T -d $d -V 256 -k /nonexistent -x 5 -v 2 -m 1 -s 3 -g 4 -n 2 -cg $cg \
            -i "$TMP/tr.bin" -j "$TMP/va.bin" -o "$TMP/run_${e}_$var" > "$TMP/$e.$var.out" 2>&1 ||
            { echo "FAIL: $e SESSA_OPT_DEFER=$o -cg $cg: $(tail -3 "$TMP/$e.$var.out")"; fail=$((fail + 1)); continue 2; }
    done
    ref=${variants%% *}
    for var in ${variants#* }; do
        what="$e B=$B T=$T -d $d: SESSA_OPT_DEFER=${var%:*} -cg ${var#*:} vs ${ref%:*} -cg ${ref#*:}"
        nstep=$(grep -c "^step [0-9]*/" "$TMP/$e.$var.out"); nval=$(grep -c "^val" "$TMP/$e.$var.out" || true)
        ckpts=$(cd "$TMP/run_${e}_$ref" && ls model_*.bin 2>/dev/null)
        same=1
        cmp -s <(grep -E "^(step|val)" "$TMP/$e.$ref.out" | sed 's/ | [0-9.]* ms .*//') \
               <(grep -E "^(step|val)" "$TMP/$e.$var.out" | sed 's/ | [0-9.]* ms .*//') || same=0
        cmp -s <(sed -n '/^---$/,/^---$/p' "$TMP/$e.$ref.out") <(sed -n '/^---$/,/^---$/p' "$TMP/$e.$var.out") || same=0
        for f in $ckpts; do cmp -s "$TMP/run_${e}_$ref/$f" "$TMP/run_${e}_$var/$f" || same=0; done
        if [ $same = 1 ] && [ "$nstep" -ge 5 ] && [ -n "$ckpts" ] && grep -q "^---$" "$TMP/$e.$var.out"; then
            echo "PASS: $what: $nstep step lines, the val lines, samples, $(echo $ckpts | wc -w) checkpoints equal (last: $(grep "^step [0-9]*/" "$TMP/$e.$var.out" | tail -1 | sed 's/ | [0-9.]* ms .*//'))"
            pass=$((pass + 1))
        else
            echo "FAIL: $what differ (or too little output: $nstep step lines, checkpoints: $ckpts)"
            diff <(grep -E "^(step|val)" "$TMP/$e.$ref.out" | sed 's/ | [0-9.]* ms .*//') \
                 <(grep -E "^(step|val)" "$TMP/$e.$var.out" | sed 's/ | [0-9.]* ms .*//') | head -6
            fail=$((fail + 1))
        fi
    done
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
