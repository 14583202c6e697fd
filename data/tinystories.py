"""
TinyStories (Eldan & Li 2023: ~2.1M short stories written by GPT-3.5/4 in simple English, CDLA-Sharing),
downloaded from Hugging Face and tokenized as llm.c does: data00.json is the validation split,
the other files train; each story is one document, preceded by the end-of-text token.
Needs network access to huggingface.co (the archive is ~1.5 GB); offline it stops with a message and
exit code 1.

    python data/tinystories.py                          # GPT-2 tokens (needs tiktoken) -> data/tinystories/
    python data/tinystories.py --tokenizer byte --max-files 3
"""
import argparse
import glob
import json
import os
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import ShardWriter, download, make_tokenizer, write_tokenizer  # noqa: E402

URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStories_all_data.tar.gz"


def stories(path):
    with open(path, "r", encoding="utf-8") as f:
        return [d["story"].strip() for d in json.load(f)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tinystories"))
    ap.add_argument("--tokenizer", choices=["byte", "gpt2", "bpe"], default="gpt2")
    ap.add_argument("--vocab-size", type=int, default=4096, help="for --tokenizer bpe (trained on data01.json)")
    ap.add_argument("--max-files", type=int, default=0, help="use only the first N json files (0 = all 50)")
    ap.add_argument("--shard-size", type=int, default=100_000_000)
    ap.add_argument("--url", default=URL)
    ap.add_argument("--timeout", type=float, default=15, help="network timeout in seconds")
    args = ap.parse_args()
    if os.path.exists(os.path.join(args.out, "tokenizer.bin")):
        print("%s is already prepared" % args.out)
        return
    archive = download(args.url, os.path.join(args.out, "TinyStories_all_data.tar.gz"), timeout=args.timeout)
    raw = os.path.join(args.out, "raw")
    if not glob.glob(os.path.join(raw, "data*.json")):
        print("unpacking %s" % archive)
        with tarfile.open(archive) as t:
            t.extractall(raw, filter="data")
    files = sorted(glob.glob(os.path.join(raw, "data*.json")))
    if args.max_files:
        files = files[:args.max_files]
    if len(files) < 2:
        sys.exit("error: need at least 2 json files (data00 = val, the rest train), found %d in %s" % (len(files), raw))
    tok = make_tokenizer(args.tokenizer, stories(files[1]) if args.tokenizer == "bpe" else None, args.vocab_size)
    for split, split_files in (("val", files[:1]), ("train", files[1:])):
        w = ShardWriter(args.out, "tinystories", split, tok.vocab_size, args.shard_size)
        for path in split_files:
            for story in stories(path):
                w.add([tok.eot] + tok.encode(story))
            print("%s: %s done" % (split, os.path.basename(path)))
        print("%s: %d shard(s)" % (split, len(w.close())))
    write_tokenizer(os.path.join(args.out, "tokenizer.bin"), tok.pieces(), tok.eot)


if __name__ == "__main__":
    main()
