#!/usr/bin/env bash
# Sessa d12 (12 layers, width 768, 12 heads, GPT-2 vocabulary) on FineWeb-10B, on all GPUs of this node:
# llm.c's GPT-2 (124M) recipe: 0.5M tokens per step, lr 6e-4, 700 warmup steps, 18865 steps (~10B tokens).
# Data: python data/fineweb.py (writes data/fineweb10B/). Build: make train_sessacu.
#   usage: scripts/run_d12.sh [more trainer flags, which override these]
#   env:   NGPU, DATA, OUT (default log_d12), ZERO, B (micro-batch per GPU, default 16): scripts/run_fineweb.sh
exec "$(dirname "$0")/run_fineweb.sh" d12 16 18865 6e-4 "$@"
