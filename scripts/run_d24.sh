#!/usr/bin/env bash
# Sessa d24 (24 layers, width 1536, 24 heads, GPT-2 vocabulary) on FineWeb-10B, on all GPUs of this node:
# llm.c's GPT-2 (350M) recipe scaled to d24: 0.5M tokens per step, lr 3e-4, 700 warmup steps, 60000 steps
# (~31B tokens: 3 epochs of FineWeb-10B, or prepare more shards). Data: python data/fineweb.py.
#   usage: scripts/run_d24.sh [more trainer flags, which override these]
#   env:   NGPU, DATA, OUT (default log_d24), ZERO, B (micro-batch per GPU, default 8): scripts/run_fineweb.sh
exec "$(dirname "$0")/run_fineweb.sh" d24 8 60000 3e-4 "$@"
