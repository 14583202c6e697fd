#!/usr/bin/env bash
# CPU training throughput of the C trainer (./train_sessa) against the PyTorch reference (train_sessa.py):
# same descriptor, batch, sequence length, synthetic data and thread count. Prints each median tok/s
# (first 3 steps skipped as warmup) and their ratio.
#   usage: scripts/bench_cpu_py.sh [descriptor=d4w256h4] [B=4] [T=256] [steps=13] [threads=nproc]
set -euo pipefail
cd "$(dirname "$0")/.."
DESC=${1:-d4w256h4}; B=${2:-4}; T=${3:-256}; STEPS=${4:-13}; THREADS=${5:-$(nproc)}; V=4096
PYTHON=${PYTHON:-python3}
[ -x ./train_sessa ] || { echo "error: ./train_sessa not built (make train_sessa)" >&2; exit 1; }
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# one llm.c shard (uint16 tokens) of random tokens in [0, V), enough for every step
$PYTHON - "$TMP/bench.bin" $((B * T * (STEPS + 1) + 1)) $V <<'PY'
import sys, numpy as np
path, n, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = np.zeros(256, dtype="<i4"); h[:3] = [20240520, 1, n]
with open(path, "wb") as fp:
    fp.write(h.tobytes()); fp.write(np.random.default_rng(0).integers(0, V, n).astype("<u2").tobytes())
PY

FLAGS="-i $TMP/bench.bin -e $DESC -V $V -b $B -t $T -x $STEPS -v 0 -s 0 -n 0"
echo "bench: $DESC B=$B T=$T steps=$STEPS threads=$THREADS"
OMP_NUM_THREADS=$THREADS ./train_sessa $FLAGS > "$TMP/c.log"
$PYTHON train_sessa.py $FLAGS --threads "$THREADS" > "$TMP/py.log"

# median tok/s of the step lines after warmup, and the ratio C / PyTorch
$PYTHON - "$TMP/c.log" "$TMP/py.log" <<'PY'
import re, sys, statistics
def median_toks(path):
    v = [float(m[1]) for l in open(path) if (m := re.search(r"([0-9.]+) tok/s\s*$", l))][3:]
    if not v:
        sys.exit(f"error: no step lines ending in tok/s after warmup in {path}")
    return statistics.median(v)
c, py = median_toks(sys.argv[1]), median_toks(sys.argv[2])
print(f"C trainer       {c:10.0f} tok/s\nPyTorch (fp32)  {py:10.0f} tok/s\nratio C/PyTorch {c / py:10.2f}x")
PY
