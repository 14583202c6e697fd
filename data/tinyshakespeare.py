"""
Tiny Shakespeare (Karpathy's char-rnn data set, ~1.1 MB), downloaded and tokenized as llm.c does.
Needs network access to raw.githubusercontent.com; offline it stops with a message and exit code 1
(the default corpus, data/prepare_default.sh, needs no network beyond apt).

    python data/tinyshakespeare.py                      # byte tokenizer -> data/tinyshakespeare/
    python data/tinyshakespeare.py --tokenizer gpt2     # GPT-2 tokens (needs tiktoken), as llm.c

Writes tiny_shakespeare_train_000000.bin, tiny_shakespeare_val_000000.bin (the last 10% of the text)
and tokenizer.bin. Idempotent: the download and the shards are skipped when already there.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import download  # noqa: E402
from prepare import prepare  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tinyshakespeare"))
    ap.add_argument("--tokenizer", choices=["byte", "gpt2", "bpe"], default="byte")
    ap.add_argument("--vocab-size", type=int, default=4096, help="for --tokenizer bpe")
    ap.add_argument("--url", default=URL)
    ap.add_argument("--timeout", type=float, default=15, help="network timeout in seconds")
    args = ap.parse_args()
    if os.path.exists(os.path.join(args.out, "tokenizer.bin")):
        print("%s is already prepared" % args.out)
        return
    text = download(args.url, os.path.join(args.out, "input.txt"), timeout=args.timeout)
    prepare([text], args.out, "tiny_shakespeare", args.tokenizer, args.vocab_size, val_fraction=0.1)


if __name__ == "__main__":
    main()
