#!/usr/bin/env bash
# Shared launcher of the FineWeb-10B runs (scripts/run_d12.sh, scripts/run_d24.sh): one process per GPU of
# this node through scripts/launch_local.sh, 0.5M tokens per step (-d 524288), T=1024, 700 warmup steps.
#   usage: scripts/run_fineweb.sh DESC B STEPS LR [more trainer flags, which override these]
#   env:   NGPU (default: every GPU nvidia-smi lists), DATA (default data/fineweb10B), OUT (default log_DESC),
#          ZERO (ZeRO stage, default 1), B (micro-batch per GPU, overrides the argument),
#          SESSA_ID_METHOD (NCCL id exchange: tcp by default here, or fs:DIR; llmc/distributed.h)
# -d must be a multiple of B*T*NGPU (the rest is gradient accumulation). -y 1 (passed when OUT holds a
# complete checkpoint) resumes from the latest one, so re-running a script continues its run. Checkpoints
# hold the full, unsharded model and optimizer state, whatever the number of GPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { echo "usage: $0 DESC B STEPS LR [trainer flags]" >&2; exit 1; }
DESC=$1; MB=${B:-$2}; STEPS=$3; LR=$4; shift 4
NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}
DATA=${DATA:-data/fineweb10B}
OUT=${OUT:-log_$DESC}
RESUME=0; if ls "$OUT"/DONE_* > /dev/null 2>&1; then RESUME=1; fi   # -y 1 only when a checkpoint exists
[ -x ./train_sessacu ] || { echo "error: ./train_sessacu not built (make train_sessacu)" >&2; exit 1; }
[ -f "$DATA/tokenizer.bin" ] || { echo "error: no $DATA/tokenizer.bin (python data/fineweb.py)" >&2; exit 1; }
exec scripts/launch_local.sh "$NGPU" ./train_sessacu \
    -i "$DATA/fineweb_train_*.bin" -j "$DATA/fineweb_val_*.bin" -k "$DATA/tokenizer.bin" -o "$OUT" \
    -e "$DESC" -b "$MB" -t 1024 -d 524288 -x "$STEPS" -l "$LR" -u 700 -q 0.0 -c 0.1 -G 1.0 \
    -v 250 -m 20 -s 5000 -g 128 -n 2000 -y "$RESUME" -z "${ZERO:-1}" "$@"
