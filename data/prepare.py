"""
Text files -> train/val token shards + tokenizer.bin, in llm.c's formats (see data/README.md).

Each input file is one document. The last --val-fraction of every document (cut at a line break)
goes to the validation split, the rest to train, so both splits see every document's style and
no text is in both. Each document piece is preceded by the end-of-text token.

    python data/prepare.py --input book1.txt book2.txt --out data/mybooks --name books --tokenizer byte
    python data/prepare.py --input corpus.txt --out data/bpe --name corpus --tokenizer bpe --vocab-size 4096
    python data/prepare.py --input corpus.txt --out data/gpt2 --name corpus --tokenizer gpt2   # needs tiktoken

Writes OUT/NAME_train_000000.bin ..., OUT/NAME_val_000000.bin ..., and OUT/tokenizer.bin (last).
Shards are version 1 (uint16) when the vocabulary has at most 65536 tokens, else version 2 (uint32).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import make_tokenizer, tokenize_documents, write_shards, write_tokenizer  # noqa: E402


MIN_VAL_TOKENS = 4 * 256 + 1   # one batch of the trainers' default -b 4 -t 256


def split_document(text, val_fraction):
    """text -> (train part, val part): val is the last val_fraction of the text, starting at a line start"""
    if val_fraction <= 0:
        return text, ""
    cut = int(len(text) * (1 - val_fraction))
    nl = text.rfind("\n", 0, cut)
    cut = nl + 1 if nl > 0 else cut
    return text[:cut], text[cut:]


def prepare_docs(train_docs, val_docs, out_dir, name, tokenizer, vocab_size=None, shard_size=100_000_000):
    """documents -> shards and tokenizer.bin; returns (train shard paths, val shard paths, tokenizer)"""
    val_docs = [d for d in val_docs if d]
    tok = make_tokenizer(tokenizer, list(train_docs), vocab_size)
    train = tokenize_documents(train_docs, tok, "tokenizing train")
    val = tokenize_documents(val_docs, tok, "tokenizing val")
    train_paths = write_shards(train, out_dir, name, "train", tok.vocab_size, shard_size)
    val_paths = write_shards(val, out_dir, name, "val", tok.vocab_size, shard_size) if len(val) else []
    write_tokenizer(os.path.join(out_dir, "tokenizer.bin"), tok.pieces(), tok.eot)   # last: marks completion
    print("%s tokenizer: vocab %d, eot %d; %d train tokens in %d shard(s), %d val tokens in %d shard(s) -> %s"
          % (tok.name, tok.vocab_size, tok.eot, len(train), len(train_paths), len(val), len(val_paths), out_dir))
    return train_paths, val_paths, tok


def prepare(inputs, out_dir, name, tokenizer, vocab_size=None, val_fraction=0.1, shard_size=100_000_000):
    """text files (one document each) -> shards and tokenizer.bin, val = the end of every document"""
    docs = []
    for path in inputs:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            docs.append(f.read())
    if not any(docs):
        raise ValueError("no text in %s: the input files are empty" % ", ".join(inputs))
    train_docs, val_docs = zip(*(split_document(d, val_fraction) for d in docs))
    return prepare_docs(train_docs, val_docs, out_dir, name, tokenizer, vocab_size, shard_size)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", nargs="+", required=True, help="text files (UTF-8), one document each")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--name", default="data", help="shard name prefix (default: data)")
    ap.add_argument("--tokenizer", choices=["byte", "gpt2", "bpe"], default="byte")
    ap.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size for --tokenizer bpe")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="fraction of each document held out (default 0.1)")
    ap.add_argument("--shard-size", type=int, default=100_000_000, help="tokens per shard (default 1e8)")
    args = ap.parse_args()
    if not 0 <= args.val_fraction < 1:
        sys.exit("error: --val-fraction must be in [0, 1), got %g" % args.val_fraction)
    if args.shard_size < 1:
        sys.exit("error: --shard-size must be positive")
    inputs, seen = [], {}
    for path in args.input:
        if not os.path.isfile(path):
            sys.exit("error: input file '%s' not found" % path)
        real = os.path.realpath(path)   # the same file twice (a symlink, or named twice) is read once
        if real in seen:
            print("warning: '%s' is the same file as '%s': read once" % (path, seen[real]), file=sys.stderr)
            continue
        seen[real] = path
        inputs.append(path)
    try:
        _, val_paths, _ = prepare(inputs, args.out, args.name, args.tokenizer, args.vocab_size, args.val_fraction,
                                  args.shard_size)
    except ValueError as e:
        sys.exit("error: %s" % e)
    # a validation split shorter than one batch of the trainers' defaults (-b 4 -t 256) cannot be validated on
    val_tokens = sum(int(np.fromfile(p, dtype="<i4", count=3)[2]) for p in val_paths)   # header[2]: token count
    if args.val_fraction > 0 and val_tokens < MIN_VAL_TOKENS:
        print("warning: the validation split has only %d tokens, fewer than one batch of -b 4 -t 256 (%d): the "
              "trainers will refuse it; give more text, a larger --val-fraction, or train with -v 0"
              % (val_tokens, MIN_VAL_TOKENS), file=sys.stderr)


if __name__ == "__main__":
    main()
