#!/bin/bash
# CPU speed: ./train_sessa (fp32, OpenMP) vs python train_sessa.py (PyTorch, the official layer's dense
# triangular solve) on the same cores and the same config and data, in alternating rounds so both see the
# same machine load. Prints per round the median tok/s of each side (steps after the first two) and their
# ratio, and the peak resident memory of each run, then the median ratio over the rounds.
# Usage: scripts/bench_cpu.sh [THREADS=2] [STEPS=8] [ROUNDS=2]     (run from the repo root; needs data/default)
# Extra flags for both trainers can be given in BENCH_FLAGS (default: the issue's config).
set -eu
THREADS=${1:-2}; STEPS=${2:-8}; ROUNDS=${3:-2}
FLAGS=${BENCH_FLAGS:--e d4w256h4 -V 256 -b 4 -t 256}
DATA=${BENCH_DATA:-data/default/*_train_*.bin}
[ -x ./train_sessa ] || { echo "error: ./train_sessa not built (make train_sessa)"; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (GNU time, Debian package time) is needed to measure peak memory"; exit 1; }
ls $DATA >/dev/null 2>&1 || { echo "error: no training shards match '$DATA' (make train prepares data/default)"; exit 1; }
PY=${PYTHON:-python3}
# threads that sleep at barriers instead of spinning: on a shared machine a spinning OpenMP thread waits a
# whole time slice for a preempted sibling (measured: 2 threads + 1 busy process, 1.8-2.6k tok/s spinning vs
# 3.5k passive); on an idle machine passive costs ~5%. Applies to both sides (PyTorch's OpenMP reads it too).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
COMMON="$FLAGS -x $STEPS -v 0 -s 0 -n 0 -i $DATA"

# median tok/s of the step lines after the first two (warm-up, allocation)
median_toks() { grep -E "tok/s" | tail -n +3 | sed -E 's/.* ([0-9.]+) tok\/s.*/\1/' | sort -n |
                awk '{a[NR]=$1} END {if (NR == 0) exit 1; print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# run CMD...: its median tok/s into $toks and its peak resident memory (MiB, GNU time) into $rss
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
run() {
    OMP_NUM_THREADS=$THREADS taskset -c 0-$((THREADS - 1)) /usr/bin/time -f "%M" -o "$TMP/rss" "$@" > "$TMP/out" 2>&1 ||
        { tail -5 "$TMP/out"; echo "error: '$*' failed"; exit 1; }
    toks=$(median_toks < "$TMP/out"); rss=$(awk '{ printf "%d", $1 / 1024 }' "$TMP/rss")
}
ratios=()
for r in $(seq "$ROUNDS"); do
    run ./train_sessa $COMMON; c=$toks; c_rss=$rss
    run $PY train_sessa.py $COMMON --threads "$THREADS"; py=$toks; py_rss=$rss
    ratio=$(awk -v c="$c" -v p="$py" 'BEGIN { printf "%.2f", c / p }')
    echo "round $r: train_sessa $c tok/s, peak RSS $c_rss MiB | train_sessa.py $py tok/s, peak RSS $py_rss MiB | ratio ${ratio}x"
    ratios+=("$ratio")
done
# the machine may be shared: each round's two runs are back to back, so the per-round ratio is the measure
echo "config: $FLAGS | threads $THREADS | OMP_WAIT_POLICY=$OMP_WAIT_POLICY | $ROUNDS rounds"
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END { printf "median ratio C / PyTorch: %.2fx (rounds: min %.2fx, max %.2fx)\n", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2, a[1], a[NR] }'
