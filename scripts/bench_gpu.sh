#!/bin/bash
# THE GPU benchmark: side by side, one after the other on the same GPU, the same config, the same batch and the
# same (synthetic, GPT-2-vocabulary) data:
#   cu            ./train_sessacu (bf16, own kernels, CUDA graph of each micro-step)
#   py_eager      python train_sessa.py --device cuda --dtype bfloat16 (PyTorch, the official layer's dense solve)
#   py_compile    the same with --compile
#   gpt2_eager    scripts/bench_gpt2.py: a PyTorch GPT-2 of the same depth and width (SDPA attention, fused
#   gpt2_compile  AdamW, bf16 autocast), eager and torch.compile
# Part 1, at DESC B T: median tok/s (steps after the first 3), ms per step, MFU, peak GPU memory of the process
# (sampled from nvidia-smi, CUDA context included, the same way for every run), and the ratios to train_sessacu.
# Part 2, at batch 1, T = 4096, 8192, 16384, ... up to MAX_T: the same figures per T; a system stops at its first
# failure (out of memory, or over TIMEOUT seconds), so its last T is the longest it trains at batch 1.
# MFU: train_sessacu and bench_gpt2.py print it (llmc/flops.h convention, 989 TFLOPS on H100/H200); for
# train_sessa.py it is train_sessacu's MFU at the same T scaled by the tok/s ratio (same model, same FLOPs).
# Writes $OUT/bench.csv (system,part,B,T,ok,tok_s,ms_step,mfu_pct,peak_mib), $OUT/longest.csv (system,longest_T,
# ms_step,peak_mib: part 2's longest T per system and its time per step) and, with matplotlib, $OUT/bench.png
# (the time-per-step panel labels each system's longest T).
# Usage: scripts/bench_gpu.sh [DESC=d12] [B=8] [T=1024] [STEPS=20]   (from the repo root, on a GPU machine)
#   SYSTEMS="cu py_eager py_compile gpt2_eager gpt2_compile"  which systems (default all)
#   PART="1 2"       which parts (default both)
#   REPEAT=3         part 1: runs per system, one after the other; the figures are the medians over the runs (a
#                    compiled PyTorch step measured 69.9 and 76.5 ms in two calls: one run is not a steady baseline)
#   MAX_T=131072     caps part 2; TIMEOUT=600 bounds each run (seconds); OUT=dir keeps the logs, CSV, plot
#   CU_FLAGS="..."   extra train_sessacu flags for part 2 (default none)
#   R1_T=32768       from this T on, part 2 runs train_sessacu with -r 1 (the memory-saving recompute: LayerNorm and
#                    GELU rebuilt in the backward, ~0.4 ms more a step at T=8192); below it the trainer's default
#   START_T=4096     first T of part 2 (to continue a sweep in another call)
#   P2_STEPS=3       steps per part-2 run (the figures are those of the last step; the first ones warm up)
#   P2_LONG_T=65536  from this T on, part 2 runs P2_LONG_STEPS=2 steps (seconds each): the second, a replay of the
#                    CUDA graph, is the figure; the first also captures the graph (~10^5 launches at T=131072, the
#                    GPU idle meanwhile) and makes the feedback's cuBLASLt plans
#   PY_MAX_T=MAX_T   caps part 2 for the PyTorch systems (their dense T x T solve runs out of memory long before ours)
#   PY_TIMEOUT=TIMEOUT  bounds each part-2 run of the PyTorch systems
# One call can take long (part 2 up to T=131072 runs minutes per T): split it over calls with PART, SYSTEMS,
# MAX_T and separate OUT folders.
# Memory of train_sessacu at d12, B=1 (model_layout's sizing pass, exact: it gives the measured 3.43 GiB at B=8
# T=1024): activations and scratch 405 KiB per token with -r 1 (438 without): 25.3 GiB at T=65536, 50.6 GiB at
# 131072, 101 GiB at 262144, plus ~2.2 GB of weights, gradients and moments and the CUDA context; an H200 holds
# T=262144. Time: llmc/flops.h counts 5.2e14 FLOPs per step at T=65536 and 2.0e15 at 131072 (the T^2 terms of
# attention and the feedback, 4 T D per token and layer forward, dominate): ~2.6 s and ~10 s per step at 20% MFU.
set -eu
DESC=${1:-d12}; B=${2:-8}; T=${3:-1024}; STEPS=${4:-20}
MAX_T=${MAX_T:-131072}; TIMEOUT=${TIMEOUT:-600}; V=50257
SYSTEMS=${SYSTEMS:-cu py_eager py_compile gpt2_eager gpt2_compile}; PART=${PART:-1 2}; CU_FLAGS=${CU_FLAGS:-}; R1_T=${R1_T:-32768}
REPEAT=${REPEAT:-1}
P2_STEPS=${P2_STEPS:-3}; START_T=${START_T:-4096}; P2_LONG_T=${P2_LONG_T:-65536}; P2_LONG_STEPS=${P2_LONG_STEPS:-2}; PY_MAX_T=${PY_MAX_T:-$MAX_T}
PY=${PYTHON:-python3}
command -v nvidia-smi >/dev/null || { echo "error: no nvidia-smi: this benchmark needs a GPU"; exit 1; }
[ -x ./train_sessacu ] || { echo "error: ./train_sessacu not built (make train_sessacu)"; exit 1; }
LOGS=${OUT:-$(mktemp -d)}; mkdir -p "$LOGS"
SHARD="$LOGS/bench_tokens.bin"; CSV="$LOGS/bench.csv"; LONGEST="$LOGS/longest.csv"
echo "system,part,B,T,ok,tok_s,ms_step,mfu_pct,peak_mib" > "$CSV"
echo "system,longest_T,ms_step,peak_mib" > "$LONGEST"

# one llm.c shard (version 1, uint16) of random GPT-2-sized token ids, long enough for every run below
$PY - "$SHARD" $((MAX_T * 8 + B * T * (STEPS + 2) + 1)) $V <<'PY'
import sys, numpy as np
path, n, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = np.zeros(256, dtype="<i4"); h[:3] = [20240520, 1, n]
with open(path, "wb") as fp:
    fp.write(h.tobytes()); fp.write(np.random.default_rng(0).integers(0, V, n).astype("<u2").tobytes())
PY

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) exit 1; print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# run NAME CMD...: runs CMD under $limit (TIMEOUT unless set) while sampling its GPU memory; sets ok (0/1), toks, ms,
# mfu, mem_mib
run() {
    local name=$1; shift
    local limit=${limit:-$TIMEOUT}
    local log="$LOGS/$name.log" memlog="$LOGS/$name.mem"
    : > "$memlog"
    timeout "$limit" "$@" > "$log" 2>&1 &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do   # every process of ours on the GPU (the trainer is the only one)
        nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits 2>/dev/null |
            awk '{s += $1} END {print s + 0}' >> "$memlog"
        sleep 0.2
    done
    if wait $pid; then ok=1; else ok=0; fi
    # steps after the first 3 (warm-up, compilation, graph capture); with fewer steps, the last one
    local nsteps skip=4
    nsteps=$(grep -cE 'tok/s *$' "$log" || true)
    [ "${nsteps:-0}" -gt 3 ] || skip=${nsteps:-1}
    [ "$skip" -ge 1 ] || skip=1
    toks=$(grep -E "tok/s *$" "$log" | tail -n +$skip | sed -E 's/.* ([0-9.]+) tok\/s *$/\1/' | median || echo 0)
    ms=$(grep -E "tok/s *$" "$log" | tail -n +$skip | sed -E 's/.* ([0-9.]+) ms \|.*/\1/' | median || echo 0)
    mfu=$(grep -E "% MFU" "$log" | tail -n +$skip | sed -E 's/.* ([0-9.]+)% MFU.*/\1/' | median || echo "")
    mem_mib=$(sort -n "$memlog" | tail -1); mem_mib=${mem_mib:-0}
    [ "$toks" != 0 ] || ok=0
}

# the Sessa model's shape, for the GPT-2 of the same depth and width (train_sessacu prints "| L 12 | D 768 | H 12 |")
shape=$(./train_sessacu -e "$DESC" -V $V -i "$SHARD" -b 1 -t 64 -x 1 -v 0 -s 0 -n 0 2>&1 | grep -m1 -E '\| L [0-9]+ \| D' || true)
GL=$(echo "$shape" | sed -E 's/.*\| L ([0-9]+) .*/\1/'); GD=$(echo "$shape" | sed -E 's/.*\| D ([0-9]+) .*/\1/')
GH=$(echo "$shape" | sed -E 's/.*\| H ([0-9]+) .*/\1/')
[ -n "$GL" ] && [ -n "$GD" ] && [ -n "$GH" ] || { echo "error: cannot read the shape of '$DESC' from train_sessacu"; exit 1; }

# cmd SYSTEM B T STEPS [extra cu flags]: the command line of one system
cmd() {
    local s=$1 b=$2 t=$3 x=$4 extra=${5:-}
    local common="-e $DESC -V $V -i $SHARD -b $b -t $t -x $x -v 0 -s 0 -n 0"
    case $s in
        cu)           echo "./train_sessacu $common $extra" ;;
        py_eager)     echo "$PY train_sessa.py $common --device cuda --dtype bfloat16" ;;
        py_compile)   echo "$PY train_sessa.py $common --device cuda --dtype bfloat16 --compile" ;;
        gpt2_eager)   echo "$PY scripts/bench_gpt2.py -L $GL -D $GD -H $GH -V $V -b $b -t $t -x $x" ;;
        gpt2_compile) echo "$PY scripts/bench_gpt2.py -L $GL -D $GD -H $GH -V $V -b $b -t $t -x $x --compile" ;;
    esac
}

declare -A CU_TOKS CU_MFU
# one SYSTEM PART B T STEPS [extra]: run (part 1: REPEAT times, the medians), print, append to the CSV
one() {
    local s=$1 part=$2 b=$3 t=$4 x=$5 extra=${6:-} n=1 r all=""
    [ $part = 1 ] && n=$REPEAT
    for r in $(seq 1 $n); do
        run "${s}_p${part}_B${b}_T${t}$([ $r = 1 ] || echo _r$r)" $(cmd "$s" "$b" "$t" "$x" "$extra")
        [ $ok = 1 ] || break
        all="$all$toks $ms ${mfu:--} $mem_mib\n"
    done
    if [ $ok = 1 ] && [ $n -gt 1 ]; then   # each figure's median over the runs (their tok/s listed)
        toks=$(printf "$all" | awk '{print $1}' | median); ms=$(printf "$all" | awk '{print $2}' | median)
        mfu=$(printf "$all" | awk '$3 != "-" {print $3}' | median || echo ""); mem_mib=$(printf "$all" | awk '{print $4}' | sort -n | tail -1)
        echo "   $s: $n runs, tok/s $(printf "$all" | awk '{printf "%s ", $1}')-> median"
    fi
    if [ $s = cu ] && [ $ok = 1 ]; then CU_TOKS[$part.$t]=$toks; CU_MFU[$part.$t]=$mfu; fi
    if [ $ok = 1 ] && [ -z "$mfu" ] && [ -n "${CU_MFU[$part.$t]:-}" ]; then
        mfu=$(awk -v c="${CU_MFU[$part.$t]}" -v a="$toks" -v b="${CU_TOKS[$part.$t]}" 'BEGIN { printf "%.1f", c * a / b }')
    fi
    echo "$s,$part,$b,$t,$ok,$toks,$ms,${mfu:-},$mem_mib" >> "$CSV"
    if [ $ok = 1 ]; then
        local ratio="" cu=${CU_TOKS[$part.$t]:-}
        [ -n "$cu" ] && [ $s != cu ] && ratio=$(awk -v a="$cu" -v b="$toks" 'BEGIN { printf "| train_sessacu %.2fx tok/s", a / b }')
        printf "%-13s B=%-2d T=%-7d %10.0f tok/s %10.1f ms/step  MFU %5s%%  peak %7d MiB %s\n" \
            "$s" "$b" "$t" "$toks" "$ms" "${mfu:--}" "$mem_mib" "$ratio"
    else
        printf "%-13s B=%-2d T=%-7d failed: %s\n" "$s" "$b" "$t" \
            "$(grep -m1 -i -E 'error|out of memory|killed' "$LOGS/${s}_p${part}_B${b}_T${t}.log" | cut -c1-120 || echo "timeout ${limit:-$TIMEOUT}s?")"
    fi
}

echo "bench: $DESC (L $GL D $GD H $GH) | $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1) | logs $LOGS"
if [[ " $PART " == *" 1 "* ]]; then
    echo "== part 1: B=$B T=$T, $STEPS steps"
    for s in $SYSTEMS; do one "$s" 1 "$B" "$T" "$STEPS"; done
fi
if [[ " $PART " == *" 2 "* ]]; then
    echo "== part 2: batch 1, T doubling from $START_T to $MAX_T (train_sessacu with '$CU_FLAGS', and -r 1 from T = $R1_T); a system stops at its first failure"
    for s in $SYSTEMS; do
        t=$START_T; longest=0; lms=""; lmem=""; smax=$MAX_T; limit=$TIMEOUT
        [ $s = cu ] || { smax=$PY_MAX_T; limit=${PY_TIMEOUT:-$TIMEOUT}; }
        while [ $t -le "$smax" ]; do
            extra=""
            if [ $s = cu ]; then extra=$CU_FLAGS; [ $t -lt "$R1_T" ] || extra="$extra -r 1"; fi
            steps=$P2_STEPS; [ $t -ge "$P2_LONG_T" ] && steps=$P2_LONG_STEPS
            one "$s" 2 1 "$t" "$steps" "$extra"
            [ $ok = 1 ] || break
            longest=$t; lms=$ms; lmem=$mem_mib; t=$((t * 2))
        done
        echo "   $s: longest T at batch 1 = $longest${lms:+ ($lms ms/step, peak $lmem MiB)}$([ $t -gt "$smax" ] && echo " (the cap, $smax)")"
        echo "$s,$longest,$lms,$lmem" >> "$LONGEST"
    done
    limit=$TIMEOUT
fi

# the plot: part 2 tok/s against T per system (log-log), part 1 as bars
$PY - "$CSV" "$LOGS/bench.png" "$DESC" <<'PY' || echo "(no plot: matplotlib missing or no data)"
import csv, sys
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["ok"] == "1"]
if not rows: sys.exit(1)
fig, ax = plt.subplots(1, 3, figsize=(18, 5))
p1 = [r for r in rows if r["part"] == "1"]
ax[0].bar([r["system"] for r in p1], [float(r["tok_s"]) for r in p1])
for i, r in enumerate(p1):
    ax[0].text(i, float(r["tok_s"]), f'{float(r["tok_s"]) / 1e3:.0f}k\n{r["mfu_pct"] or "-"}% MFU', ha="center", va="bottom", fontsize=8)
if p1: ax[0].set_title(f'{sys.argv[3]} B={p1[0]["B"]} T={p1[0]["T"]}: tok/s')
else: ax[0].set_title("part 1 not run"); ax[0].axis("off")
for s in dict.fromkeys(r["system"] for r in rows):
    p2 = [r for r in rows if r["part"] == "2" and r["system"] == s]
    if p2:
        ax[1].plot([int(r["T"]) for r in p2], [float(r["tok_s"]) for r in p2], "o-", label=s)
        ax[2].plot([int(r["T"]) for r in p2], [float(r["ms_step"]) / 1e3 for r in p2], "o-", label=s)
        ax[2].annotate(f'{s}: longest T={p2[-1]["T"]}\n{float(p2[-1]["ms_step"]) / 1e3:.1f} s/step', (int(p2[-1]["T"]),
                       float(p2[-1]["ms_step"]) / 1e3), textcoords="offset points", xytext=(-10, 8), ha="right", fontsize=8)
for a, yl in ((ax[1], "tok/s"), (ax[2], "seconds per step")):
    a.set_xscale("log", base=2); a.set_yscale("log"); a.set_xlabel("T (batch 1)"); a.set_ylabel(yl); a.legend()
ax[1].set_title("batch 1: tok/s (a line ends at the longest T that trains)"); ax[2].set_title("batch 1: time per step")
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110)
print("plot:", sys.argv[2])
PY
echo "csv: $CSV, $LONGEST"
