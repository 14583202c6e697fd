"""
Seed corpora for the fuzzers: a few valid files of each format (and near misses), so libFuzzer starts
from inputs that pass the magic checks.   python3 dev/fuzz/make_seeds.py OUT_DIR
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data"))
import data_common as dc  # noqa: E402


def checkpoint(version, V, L, H, Hkv, D, rope=1):
    Vp = (V + 127) // 128 * 128
    hd = D // H
    n = Vp * D + L * (D + D + 2 * D * D + 2 * D + H * hd * D + H * hd + 2 * (Hkv * hd * D + Hkv * hd)
                      + 2 * D * D + 2 * D + (D * D if H > 1 else 0) + D + 1 + D * D + D) + 2 * D
    h = [20261122, version, 16, V, L, H, Hkv, D, Vp, rope,
         struct.unpack("<i", struct.pack("<f", 0.999))[0], struct.unpack("<i", struct.pack("<f", 1e-5))[0]]
    return struct.pack("<256i", *(h + [0] * 244)) + bytes(n * (4 if version == 1 else 2))


def eval_file(T, n_seq, task, V, records):
    """a long-context eval file (llmc/eval_tasks.h): records of (sequence, t, distance, answer, nominal)"""
    h = [20261125, 1, T, n_seq, len(records), task, V, 5]
    return struct.pack("<256i", *(h + [0] * 248)) + b"".join(struct.pack("<5i", *r) for r in records)


def main(out):
    for sub in ("shard", "tokenizer", "checkpoint", "eval_tasks"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    dc.write_datafile(os.path.join(out, "shard", "v1.bin"), rng.integers(0, 256, 40), 256)
    dc.write_datafile(os.path.join(out, "shard", "v2.bin"), rng.integers(0, 70000, 25), 70000)
    dc.write_datafile(os.path.join(out, "shard", "short.bin"), [1, 2, 3], 256)
    dc.write_tokenizer(os.path.join(out, "tokenizer", "byte.bin"), dc.ByteTokenizer().pieces(), 0)
    dc.write_tokenizer(os.path.join(out, "tokenizer", "small.bin"), [b"<|endoftext|>", b"ab", b"\xc3\xa9"], 0)
    with open(os.path.join(out, "checkpoint", "v1.bin"), "wb") as f:
        f.write(checkpoint(1, 5, 1, 1, 1, 2))
    with open(os.path.join(out, "checkpoint", "v2.bin"), "wb") as f:
        f.write(checkpoint(2, 3, 2, 2, 1, 4))
    with open(os.path.join(out, "eval_tasks", "needle.bin"), "wb") as f:
        f.write(eval_file(T=16, n_seq=3, task=2, V=256, records=[(0, 9, 8, 65, 8), (1, 12, 4, 66, 4), (2, 5, 3, 67, 4)]))


if __name__ == "__main__":
    main(sys.argv[1])
