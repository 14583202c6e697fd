#!/usr/bin/env bash
# The default data set (what `make train` uses): Jane Austen's six novels from Debian's
# r-cran-janeaustenr, byte-level tokenizer, written to data/default/:
#   austen_train_000000.bin  austen_val_000000.bin  tokenizer.bin   (+ text/ and .cache/)
# Idempotent: does nothing when those files are already there. Needs only apt (see data/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=data/default
if [ -f "$OUT/tokenizer.bin" ] && [ -f "$OUT/austen_train_000000.bin" ] && [ -f "$OUT/austen_val_000000.bin" ]; then
    echo "data/prepare_default.sh: $OUT is already prepared"
    exit 0
fi
python3 data/austen.py --out "$OUT/text" --cache "$OUT/.cache"
python3 data/prepare.py --input "$OUT"/text/*.txt --out "$OUT" --name austen --tokenizer byte --val-fraction 0.1
