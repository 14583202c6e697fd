#!/bin/bash
# GPU speed and memory: ./train_sessacu (bf16, own kernels) vs python train_sessa.py --device cuda
# (PyTorch, the official layer's dense triangular solve) in eager mode and with torch.compile, both with
# bf16 autocast, on the same GPU, the same config and the same (synthetic) data, one after the other.
# Prints per run the median tok/s (steps after the first 3), the MFU and the peak GPU memory of the process
# (sampled from nvidia-smi, CUDA context included, the same way for every run), then the ratios; then the
# longest T each can train at batch 1 (T doubled from 1024 until a run fails, e.g. out of memory).
# The MFU of a PyTorch run is train_sessacu's MFU scaled by the tok/s ratio (same model, same FLOPs per
# token: llmc/flops.h, DESIGN.md section 3).
# Usage: scripts/bench_gpu.sh [DESC=d12] [B=8] [T=1024] [STEPS=20]   (from the repo root, on a GPU machine)
#   MAX_T=131072 caps the batch-1 search; TIMEOUT=600 bounds each run (seconds); OUT=dir keeps the logs.
set -eu
DESC=${1:-d12}; B=${2:-8}; T=${3:-1024}; STEPS=${4:-20}
MAX_T=${MAX_T:-131072}; TIMEOUT=${TIMEOUT:-600}; V=50257
PY=${PYTHON:-python3}
command -v nvidia-smi >/dev/null || { echo "error: no nvidia-smi: this benchmark needs a GPU"; exit 1; }
[ -x ./train_sessacu ] || { echo "error: ./train_sessacu not built (make train_sessacu)"; exit 1; }
LOGS=${OUT:-$(mktemp -d)}; mkdir -p "$LOGS"
SHARD="$LOGS/bench_tokens.bin"

# one llm.c shard (version 1, uint16) of random GPT-2-sized token ids, long enough for every run below
$PY - "$SHARD" $((MAX_T * 4 + B * T * (STEPS + 2) + 1)) $V <<'PY'
import sys, numpy as np
path, n, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = np.zeros(256, dtype="<i4"); h[:3] = [20240520, 1, n]
with open(path, "wb") as fp:
    fp.write(h.tobytes()); fp.write(np.random.default_rng(0).integers(0, V, n).astype("<u2").tobytes())
PY

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) exit 1; print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# run NAME CMD...: runs CMD under TIMEOUT while sampling its GPU memory; sets ok (0/1), toks, mfu, mem_mib
run() {
    local name=$1; shift
    local log="$LOGS/$name.log" memlog="$LOGS/$name.mem"
    : > "$memlog"
    timeout "$TIMEOUT" "$@" > "$log" 2>&1 &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do   # every process of ours on the GPU (the trainer is the only one)
        nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits 2>/dev/null |
            awk '{s += $1} END {print s + 0}' >> "$memlog"
        sleep 0.2
    done
    if wait $pid; then ok=1; else ok=0; fi
    toks=$(grep -E "tok/s *$" "$log" | tail -n +4 | sed -E 's/.* ([0-9.]+) tok\/s *$/\1/' | median || echo 0)
    mfu=$(grep -E "% MFU" "$log" | tail -n +4 | sed -E 's/.* ([0-9.]+)% MFU.*/\1/' | median || echo "")
    mem_mib=$(sort -n "$memlog" | tail -1); mem_mib=${mem_mib:-0}
}

COMMON="-e $DESC -V $V -i $SHARD -x $STEPS -v 0 -s 0 -n 0"
echo "bench: $DESC B=$B T=$T steps=$STEPS | $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
run cu ./train_sessacu $COMMON -b "$B" -t "$T"
[ $ok = 1 ] || { tail -5 "$LOGS/cu.log"; echo "error: train_sessacu failed"; exit 1; }
cu_toks=$toks; cu_mfu=$mfu; cu_mem=$mem_mib
printf "%-26s %10.0f tok/s  MFU %5s%%  peak GPU memory %7d MiB\n" train_sessacu "$cu_toks" "$cu_mfu" "$cu_mem"
for mode in eager compile; do
    flags="--device cuda --dtype bfloat16"; [ $mode = compile ] && flags="$flags --compile"
    run "py_$mode" $PY train_sessa.py $COMMON -b "$B" -t "$T" $flags
    if [ $ok = 1 ]; then
        py_mfu=$(awk -v c="$cu_mfu" -v a="$toks" -v b="$cu_toks" 'BEGIN { if (c == "") print "-"; else printf "%.1f", c * a / b }')
        printf "%-26s %10.0f tok/s  MFU %5s%%  peak GPU memory %7d MiB  | train_sessacu: %.2fx tok/s, %.2fx less memory\n" \
            "train_sessa.py ($mode)" "$toks" "$py_mfu" "$mem_mib" \
            "$(awk -v a="$cu_toks" -v b="$toks" 'BEGIN { print a / b }')" "$(awk -v a="$mem_mib" -v b="$cu_mem" 'BEGIN { print a / b }')"
    else
        echo "train_sessa.py ($mode): failed (see $LOGS/py_$mode.log): $(grep -m1 -i -E 'error|memory' "$LOGS/py_$mode.log" || true)"
    fi
done

# longest T at batch 1: double T until a run fails
longest() {
    local name=$1; shift
    local t=1024 best=0
    while [ $t -le "$MAX_T" ]; do
        run "${name}_T$t" "$@" -e "$DESC" -V $V -i "$SHARD" -b 1 -t $t -x 3 -v 0 -s 0 -n 0
        [ $ok = 1 ] || break
        best=$t; t=$((t * 2))
    done
    echo "$best"
}
cu_T=$(longest cu ./train_sessacu)
py_T=$(longest py $PY train_sessa.py --device cuda --dtype bfloat16)
echo "longest T at batch 1 (doubling from 1024, cap $MAX_T): train_sessacu $cu_T | train_sessa.py (eager) $py_T" \
     "| ratio $(awk -v a="$cu_T" -v b="$py_T" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else print "-" }')"
echo "logs: $LOGS"
