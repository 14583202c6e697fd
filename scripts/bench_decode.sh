#!/usr/bin/env bash
# Generation speed of a d12 model (V 50257; MODEL, VOCAB change it) on one GPU (issue 16): the time per new token, greedy (-st 0, so the
# host sampler is an argmax), for prompts of 128, 1024, 8192, 32768 tokens at batch 1 and 16:
#   recurrent  train_sessacu -sm 1: prefill by the parallel forward, then one decoder step per token (llmc/decode.cuh)
#   parallel   train_sessacu -sm 0: the parallel forward over the whole growing prefix per token (O(T^2) per token)
#   pytorch    train_sessa.py --sample --device cuda --dtype bfloat16: its recurrent step() (batch 1; prompts 128
#              and 1024 only: it feeds the prompt one step at a time and its caches grow by torch.cat, so longer
#              prompts take minutes)
# and the memory of the decode caches. The same random-init d12 checkpoint for all three. Prints one table.
#   usage: scripts/bench_decode.sh            (from the repo root, after make train_sessacu; PROMPTS="128 1024"
#                                              and BATCHES="1" narrow it; G / GP = new tokens recurrent / parallel)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BIN=${BIN:-./train_sessacu}
PROMPTS=${PROMPTS:-128 1024 8192 32768}
BATCHES=${BATCHES:-1 16}
G=${G:-64}     # new tokens per recurrent run
GP=${GP:-8}    # new tokens per parallel-prefix run (each costs a forward over the whole prefix)
MODEL=${MODEL:-d12}; VOCAB=${VOCAB:-50257}   # a smaller MODEL/VOCAB and BIN=dev/cuda_emu/build/bin/train_sessacu
PYDEVICE=${PYDEVICE:-cuda}                  # PYDEVICE=cpu try the script out without a GPU
TMP=${TMPDIR:-/tmp}/sessa_decode_${MODEL}_$VOCAB; mkdir -p "$TMP"
[ -x "$BIN" ] || { echo "no $BIN: run make train_sessacu first" >&2; exit 1; }

CKPT=$TMP/model.bin
[ -f "$CKPT" ] || $PY - "$CKPT" "$MODEL" "$VOCAB" <<'PYEOF'
import sys, torch
sys.path.insert(0, ".")
import train_sessa as ts
torch.manual_seed(0)
ts.write_checkpoint(ts.SessaLM(ts.config_from_descriptor(sys.argv[2], int(sys.argv[3]), 1024)), sys.argv[1], 1)
PYEOF
for P in $PROMPTS; do
    [ -f "$TMP/prompt_$P.txt" ] || $PY -c "import numpy as np; print(' '.join(map(str, np.random.default_rng($P).integers(0, $VOCAB, $P))))" > "$TMP/prompt_$P.txt"
done

# ms per new token of all sequences, from the trainer's "sampled ..." line
ms_of() { sed -n 's/.*, \([0-9.]*\) ms per new token.*/\1/p' "$1" | tail -n 1; }
printf "%-7s %-3s | %-13s %-13s %-9s | %-13s %-13s | %-13s | %s\n" prompt B "recurrent ms" "recur. tok/s" "prefill" \
    "parallel ms" "par. tok/s" "pytorch ms" "speedup rec/par, caches"
for P in $PROMPTS; do
    for B in $BATCHES; do
        common=(-e "$CKPT" -x 0 -s 1 -v 0 -st 0 -sf "$TMP/prompt_$P.txt" -k "$TMP/none.bin" -sb "$B")
        log=$TMP/rec_${P}_$B.log
        "$BIN" "${common[@]}" -b 1 -t "$P" -g "$G" -sm 1 > "$log" 2>&1 || { echo "recurrent P=$P B=$B failed:"; tail -5 "$log"; }
        rec=$(ms_of "$log"); pre=$(sed -n 's/.*prefill \([0-9.]*\) ms.*/\1/p' "$log" | tail -n 1)
        caches=$(sed -n 's/decode caches: \([0-9.]*\) GiB.*/\1 GiB/p' "$log" | tail -n 1)
        par=""
        # the parallel form keeps activations for B x (P + GP) tokens (~0.4 MB each at d12): skip what does not fit
        if [ $((B * (P + GP))) -le 140000 ]; then
            plog=$TMP/par_${P}_$B.log
            "$BIN" "${common[@]}" -b "$B" -t $((P + GP)) -g "$GP" -sm 0 > "$plog" 2>&1 || { echo "parallel P=$P B=$B failed:"; tail -5 "$plog"; }
            par=$(ms_of "$plog")
        fi
        pyt=""
        if [ "$B" = 1 ] && [ "$P" -le 1024 ]; then
            ylog=$TMP/py_${P}.log
            $PY train_sessa.py --sample "$CKPT" --device "$PYDEVICE" --dtype bfloat16 --temperature 0 \
                --prompt_file "$TMP/prompt_$P.txt" -g "$G" > "$ylog" 2>&1 || { echo "pytorch P=$P failed:"; tail -5 "$ylog"; }
            pyt=$(sed -n 's/.*, \([0-9.]*\) ms per new token.*/\1/p' "$ylog" | tail -n 1)
        fi
        tok() { [ -n "$1" ] && awk -v ms="$1" -v b="$B" 'BEGIN { printf "%.0f", b * 1000 / ms }'; }
        sp=$([ -n "$rec" ] && [ -n "$par" ] && awk -v a="$par" -v b="$rec" 'BEGIN { printf "%.1fx", a / b }' || echo "-")
        printf "%-7s %-3s | %-13s %-13s %-9s | %-13s %-13s | %-13s | %s, %s\n" "$P" "$B" "${rec:--}" "$(tok "$rec")" \
            "${pre:--}" "${par:--}" "$(tok "$par")" "${pyt:--}" "$sp" "${caches:--}"
    done
done
echo "(ms = wall time per new token of all B sequences, host argmax and logits copy included; prefill in ms;"
echo " caches = k, v, kb bf16 + s fp32 for B x (prompt + $G) positions; logs in $TMP)"
