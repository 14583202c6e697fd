"""
Synthetic long-context tasks that ask: does information from far back survive?

    python data/long_context.py --task needle --seq-len 1024 --distances 16,64,256,1000
    python data/long_context.py --task all --seq-len 512 --num-train 20000 --num-val 512

Each task writes OUT/TASK/: TASK_train_000000.bin, TASK_val_000000.bin (llm.c shards), tokenizer.bin,
and TASK_eval.bin + TASK_eval.json saying which val positions are scored, at which distance
(the exact distance, and the nominal one from --distances the sequence was made with: report per nominal).
Every sequence is exactly --seq-len (T) tokens and starts with the end-of-text token; a shard holds
N sequences back to back plus one final end-of-text token, so a loader with the same T reads sequence i
as row i (inputs = its T tokens, targets = the same shifted by one). Scored position t of sequence i
means: the prediction made at input t (target = token t+1) must be the answer.

The tasks share one vocabulary of 256 ids (tokenizer.bin spells them out):
    0 <|endoftext|>   1 " ?" (query)   2 " !" (needle marker)   3..98 keys " K00".." K95"
    99..194 values " V00".." V95"   195..255 noise words " n00".." n60"
Tasks (d = a distance from --distances, drawn uniformly per sequence; val cycles through them evenly):
  mqar    multi-query associative recall: --num-pairs (key, value) pairs with distinct keys, then noise,
          then --num-queries of those keys again, each followed by its value (scored). d noise tokens
          separate the pairs from the queries; distance = answer position - that key's value position >= d+2.
  needle  noise with one " !" v needle; the sequence ends with " ?" v. Scored: the prediction at " ?";
          distance = answer position - needle value position = d exactly.
  style   --num-classes classes, each a noise distribution (a seeded Dirichlet(0.3) draw: sharp); a segment
          of --style-len tokens from the class's distribution (mixed with uniform by --style-noise) ends at
          position T-2-d (the final " ?" is at T-2); everything else is uniform noise. Answer: the class's value token.
          distance = answer position - last token of the styled segment = d + 1.
"""
import argparse
import json
import os
import sys

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_common import HEADER_INTS, write_datafile, write_tokenizer  # noqa: E402

EOT, QUERY, NEEDLE = 0, 1, 2
KEY0, NUM_KEYS = 3, 96
VAL0, NUM_VALS = 99, 96
NOISE0, NUM_NOISE = 195, 61
VOCAB = 256
EVAL_MAGIC = 20261125
EVAL_FIELDS = 5   # sequence, t, distance, answer, nominal distance
TASK_IDS = {"mqar": 1, "needle": 2, "style": 3}


def vocab_pieces():
    p = ["<|endoftext|>", " ?", " !"] + [" K%02d" % i for i in range(NUM_KEYS)] + \
        [" V%02d" % i for i in range(NUM_VALS)] + [" n%02d" % i for i in range(NUM_NOISE)]
    assert len(p) == VOCAB
    return [s.encode() for s in p]


def noise(rng, n):
    return rng.integers(NOISE0, NOISE0 + NUM_NOISE, size=n)

# ----------------------------------------------------------------------------
# generators: (rng, T, d, args) -> (tokens[T], list of (t, distance, answer))


def gen_needle(rng, T, d, args):
    seq = noise(rng, T)
    seq[0] = EOT
    answer_pos = T - 1
    value_pos = answer_pos - d
    v = VAL0 + rng.integers(NUM_VALS)
    seq[value_pos - 1], seq[value_pos] = NEEDLE, v
    seq[T - 2], seq[T - 1] = QUERY, v
    return seq, [(T - 2, d, int(v))]


def gen_mqar(rng, T, d, args):
    n, q = args.num_pairs, args.num_queries
    seq = noise(rng, T)
    seq[0] = EOT
    keys = KEY0 + rng.choice(NUM_KEYS, size=n, replace=False)
    vals = VAL0 + rng.integers(NUM_VALS, size=n)
    start = T - 2 * q - d - 2 * n          # first pair's key position
    seq[start:start + 2 * n:2], seq[start + 1:start + 2 * n:2] = keys, vals
    scored = []
    qstart = T - 2 * q
    for j, i in enumerate(rng.choice(n, size=q, replace=False)):
        kpos = qstart + 2 * j
        seq[kpos], seq[kpos + 1] = keys[i], vals[i]
        scored.append((kpos, (kpos + 1) - (start + 2 * i + 1), int(vals[i])))
    return seq, scored


def style_distributions(num_classes, seed):
    """one distribution over the noise words per class, fixed by the seed (train and val share them)"""
    rng = np.random.default_rng(seed + 7919)
    p = rng.dirichlet(np.full(NUM_NOISE, 0.3), size=num_classes)
    return p / p.sum(axis=1, keepdims=True)


def gen_style(rng, T, d, args):
    c = int(rng.integers(args.num_classes))
    seq = noise(rng, T)
    seq[0] = EOT
    end = T - 2 - d                          # last styled token; the query is at T-2, the answer at T-1
    length = args.style_len
    styled = NOISE0 + rng.choice(NUM_NOISE, size=length, p=args.style_p[c])
    keep_uniform = rng.random(length) < args.style_noise
    seq[end - length + 1:end + 1] = np.where(keep_uniform, noise(rng, length), styled)
    v = VAL0 + c
    seq[T - 2], seq[T - 1] = QUERY, v
    return seq, [(T - 2, d + 1, v)]


GENERATORS = {"mqar": gen_mqar, "needle": gen_needle, "style": gen_style}


def min_len(task, d, args):
    """the shortest T that fits distance d"""
    if task == "needle":
        return d + 3                         # eot, marker, value ... query, answer
    if task == "mqar":
        return 1 + 2 * args.num_pairs + d + 2 * args.num_queries
    return 1 + args.style_len + d + 2

# ----------------------------------------------------------------------------


def write_eval(path, task, T, num_seqs, records):
    """records: (sequence, t, distance, answer, nominal distance) -> binary eval file (format in
    data/README.md) + a .json summary"""
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:8] = [EVAL_MAGIC, 1, T, num_seqs, len(records), TASK_IDS[task], VOCAB, EVAL_FIELDS]
    with open(path, "wb") as f:
        f.write(header.astype("<i4").tobytes())
        f.write(np.asarray(records, dtype="<i4").reshape(-1, EVAL_FIELDS).tobytes())
    nominal = np.asarray(records)[:, 4]
    summary = {"task": task, "seq_len": T, "num_sequences": num_seqs, "num_scored": len(records),
               "scored_per_nominal_distance": {str(k): int(v) for k, v in zip(*np.unique(nominal, return_counts=True))}}
    with open(path.replace(".bin", ".json"), "w") as f:
        json.dump(summary, f, indent=1)


def generate(task, args, out_dir):
    T, distances = args.seq_len, args.distances
    for d in distances:
        if min_len(task, d, args) > T:
            sys.exit("error: %s: distance %d needs --seq-len >= %d" % (task, d, min_len(task, d, args)))
    if task == "style":
        args.style_p = style_distributions(args.num_classes, args.seed)
    os.makedirs(out_dir, exist_ok=True)
    for split, n, seed in (("train", args.num_train, args.seed), ("val", args.num_val, args.seed + 1)):
        rng = np.random.default_rng([seed, TASK_IDS[task]])
        tokens = np.zeros(n * T + 1, dtype=np.int64)   # + the final eot: n full rows for a loader with this T
        records = []
        for i in tqdm(range(n), desc="%s %s" % (task, split), unit="seq"):
            d = distances[i % len(distances)] if split == "val" else distances[rng.integers(len(distances))]
            seq, scored = GENERATORS[task](rng, T, d, args)
            tokens[i * T:(i + 1) * T] = seq
            records += [(i, t, dist, ans, d) for t, dist, ans in scored]
        tokens[-1] = EOT
        write_datafile(os.path.join(out_dir, "%s_%s_000000.bin" % (task, split)), tokens, VOCAB)
        if split == "val":
            write_eval(os.path.join(out_dir, "%s_eval.bin" % task), task, T, n, records)
    write_tokenizer(os.path.join(out_dir, "tokenizer.bin"), vocab_pieces(), EOT)
    print("%s: %d train + %d val sequences of %d tokens, distances %s -> %s"
          % (task, args.num_train, args.num_val, T, distances, out_dir))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["mqar", "needle", "style", "all"], default="all")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_context"))
    ap.add_argument("--seq-len", type=int, default=1024, help="T: tokens per sequence (train with the same -t)")
    ap.add_argument("--distances", default="16,64,256,900", help="comma-separated distances")
    ap.add_argument("--num-train", type=int, default=10000, help="training sequences")
    ap.add_argument("--num-val", type=int, default=512, help="validation sequences (use a multiple of B*world_size)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--num-pairs", type=int, default=16, help="mqar: key-value pairs per sequence (<= 96)")
    ap.add_argument("--num-queries", type=int, default=8, help="mqar: queries per sequence (<= num-pairs)")
    ap.add_argument("--num-classes", type=int, default=4, help="style: classes (<= 96)")
    ap.add_argument("--style-len", type=int, default=64, help="style: length of the styled segment")
    ap.add_argument("--style-noise", type=float, default=0.5, help="style: fraction of uniform tokens in it")
    args = ap.parse_args()
    try:
        args.distances = sorted({int(x) for x in args.distances.split(",") if x.strip()})
    except ValueError:
        sys.exit("error: --distances must be comma-separated integers, got '%s'" % args.distances)
    if not args.distances or min(args.distances) < 1:
        sys.exit("error: distances must be positive")
    if not 1 <= args.num_queries <= args.num_pairs <= NUM_KEYS:
        sys.exit("error: need 1 <= --num-queries <= --num-pairs <= %d" % NUM_KEYS)
    if not 1 <= args.num_classes <= NUM_VALS or not 0 <= args.style_noise <= 1 or args.style_len < 1:
        sys.exit("error: need 1 <= --num-classes <= %d, 0 <= --style-noise <= 1, --style-len >= 1" % NUM_VALS)
    if args.num_train < 1 or args.num_val < 1:
        sys.exit("error: --num-train and --num-val must be positive")
    for task in (["mqar", "needle", "style"] if args.task == "all" else [args.task]):
        generate(task, args, os.path.join(args.out, task))


if __name__ == "__main__":
    main()
