"""
FineWeb (HuggingFaceFW/fineweb, ODC-By; web text filtered for quality), sample-10BT, read straight from
its parquet files on Hugging Face and tokenized as llm.c's fineweb.py does: every document preceded by
the end-of-text token, shards of 100M tokens, the first shard is the validation split.
Needs network access to huggingface.co and pyarrow (pip install pyarrow); offline it stops with a
message and exit code 1.

    python data/fineweb.py --files 1                  # GPT-2 tokens (needs tiktoken) -> data/fineweb10B/
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import ShardWriter, download, make_tokenizer, write_tokenizer  # noqa: E402

BASE_URL = "https://huggingface.co/datasets/HuggingFaceFW/fineweb/resolve/main/sample/10BT"
NUM_FILES = 14   # sample/10BT/000_00000.parquet .. 013_00000.parquet


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fineweb10B"))
    ap.add_argument("--tokenizer", choices=["byte", "gpt2"], default="gpt2")
    ap.add_argument("--files", type=int, default=NUM_FILES, help="how many of the %d parquet files to use" % NUM_FILES)
    ap.add_argument("--shard-size", type=int, default=100_000_000)
    ap.add_argument("--base-url", default=BASE_URL)
    ap.add_argument("--timeout", type=float, default=15, help="network timeout in seconds")
    args = ap.parse_args()
    if os.path.exists(os.path.join(args.out, "tokenizer.bin")):
        print("%s is already prepared" % args.out)
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("error: fineweb.py reads parquet files with pyarrow: pip install pyarrow (needs network access to PyPI)")
    tok = make_tokenizer(args.tokenizer)
    w = ShardWriter(args.out, "fineweb", "train", tok.vocab_size, args.shard_size, first_split="val")
    for k in range(min(args.files, NUM_FILES)):
        name = "%03d_00000.parquet" % k
        path = download("%s/%s" % (args.base_url, name), os.path.join(args.out, "raw", name), timeout=args.timeout)
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"], batch_size=1024):
            for text in batch.column(0).to_pylist():
                w.add([tok.eot] + tok.encode(text))
        print("%s done, %d shard(s) so far" % (name, w.count))
    print("%d shard(s) written to %s" % (len(w.close()), args.out))
    write_tokenizer(os.path.join(args.out, "tokenizer.bin"), tok.pieces(), tok.eot)


if __name__ == "__main__":
    main()
