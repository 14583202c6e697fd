#!/usr/bin/env bash
# Sessa d24 (24 layers, width 1536, 24 heads, GPT-2 vocabulary) on FineWeb-10B, on all GPUs of this node:
# llm.c's GPT-2 (350M) recipe scaled to d24: 0.5M tokens per step, lr 3e-4, 700 warmup steps, 60000 steps
# (~31B tokens: 3 epochs of FineWeb-10B, or prepare more shards).
# Data: python data/fineweb.py (writes data/fineweb10B/). Build: make train_sessacu.
#   usage: scripts/run_d24.sh [more trainer flags, which override these]
#   env:   NGPU (default: every GPU nvidia-smi lists), DATA (default data/fineweb10B), OUT (default log_d24),
#          ZERO (ZeRO stage, default 1), B (micro-batch per GPU, default 8),
#          SESSA_ID_METHOD (NCCL id exchange: tcp by default here, or fs:DIR; llmc/distributed.h)
# -d must be a multiple of B*T*NGPU (the rest is gradient accumulation). -y 1 (passed when OUT holds a
# complete checkpoint) resumes from the latest one. Checkpoints hold the full, unsharded model and
# optimizer state, whatever the number of GPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}
DATA=${DATA:-data/fineweb10B}
OUT=${OUT:-log_d24}
RESUME=0; if ls "$OUT"/DONE_* > /dev/null 2>&1; then RESUME=1; fi   # -y 1 only when a checkpoint exists
[ -x ./train_sessacu ] || { echo "error: ./train_sessacu not built (make train_sessacu)" >&2; exit 1; }
[ -f "$DATA/tokenizer.bin" ] || { echo "error: no $DATA/tokenizer.bin (python data/fineweb.py)" >&2; exit 1; }
exec scripts/launch_local.sh "$NGPU" ./train_sessacu \
    -i "$DATA/fineweb_train_*.bin" -j "$DATA/fineweb_val_*.bin" -k "$DATA/tokenizer.bin" -o "$OUT" \
    -e d24 -b "${B:-8}" -t 1024 -d 524288 -x 60000 -l 3e-4 -u 700 -q 0.0 -c 0.1 -G 1.0 \
    -v 250 -m 20 -s 5000 -g 128 -n 2000 -y "$RESUME" -z "${ZERO:-1}" "$@"
