"""
pytest for the data scripts in data/: file formats, tokenizer round trips, the long-context generators'
invariants, and clear failures offline.   Run: python -m pytest -q dev/test/test_data.py
"""
import argparse
import os
import struct
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data")
sys.path.insert(0, DATA)

import austen  # noqa: E402
import data_common as dc  # noqa: E402
import long_context as lc  # noqa: E402
import prepare  # noqa: E402

# two small documents of real prose with non-ASCII characters and a NUL (which the byte tokenizer drops)
DOC_A = ("It is a truth universally acknowledged, that a single man in possession\n"
         "of a good fortune, must be in want of a wife.\n") * 20 + "Caf\u00e9 \u00a3 10.\n"
DOC_B = ("Emma Woodhouse, handsome, clever, and rich, with a comfortable home\n"
         "and happy disposition, seemed to unite some of the best blessings\x00 of existence.\n") * 20


def write_docs(tmp_path):
    paths = []
    for name, text in (("a.txt", DOC_A), ("b.txt", DOC_B)):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        paths.append(str(p))
    return paths


def decode(tokens, pieces, eot):
    """token ids -> list of documents' bytes (the eot token starts each document)"""
    docs = []
    for t in tokens:
        if t == eot:
            docs.append(b"")
        else:
            docs[-1] += pieces[t]
    return docs

# ----------------------------------------------------------------------------
# formats


def test_shard_header_and_version(tmp_path):
    for vocab, version, width in ((256, 1, 2), (65536, 1, 2), (65537, 2, 4)):
        path = str(tmp_path / ("s%d.bin" % vocab))
        toks = np.arange(100) * (vocab // 100)
        dc.write_datafile(path, toks, vocab)
        with open(path, "rb") as f:
            raw = f.read()
        header = struct.unpack("<256i", raw[:1024])
        assert header[:3] == (20240520, version, 100) and not any(header[3:])
        assert len(raw) == 1024 + 100 * width
        v, got = dc.read_datafile(path)
        assert v == version and np.array_equal(got, toks)


def test_shard_rejects_out_of_range_tokens(tmp_path):
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 256\)"):
        dc.write_datafile(str(tmp_path / "bad.bin"), [1, 2, 256], 256)


def test_read_datafile_detects_truncation(tmp_path):
    path = str(tmp_path / "t.bin")
    dc.write_datafile(path, np.arange(10), 256)
    with open(path, "r+b") as f:
        f.truncate(1024 + 15)
    with pytest.raises(ValueError, match="header says 10 tokens"):
        dc.read_datafile(path)


def test_tokenizer_file_layout(tmp_path):
    path = str(tmp_path / "tok.bin")
    dc.write_tokenizer(path, [b"<|endoftext|>", b"a", b"\xc3\xa9"], 0)
    with open(path, "rb") as f:
        raw = f.read()
    assert struct.unpack("<4i", raw[:16]) == (20240328, 2, 3, 0)
    assert raw[1024:] == b"\x0d<|endoftext|>\x01a\x02\xc3\xa9"
    assert dc.read_tokenizer(path) == ([b"<|endoftext|>", b"a", b"\xc3\xa9"], 0)
    with pytest.raises(ValueError, match="1..255"):
        dc.write_tokenizer(path, [b""], 0)

# ----------------------------------------------------------------------------
# prepare.py round trips


def check_round_trip(out, name, docs, val_fraction, drop_nul):
    pieces, eot = dc.read_tokenizer(os.path.join(out, "tokenizer.bin"))
    parts = {}
    for split in ("train", "val"):
        _, toks = dc.read_datafile(os.path.join(out, "%s_%s_000000.bin" % (name, split)))
        assert toks[0] == eot and toks.max() < len(pieces)
        parts[split] = decode(toks, pieces, eot)
    # every document = its train part + its val part, exactly (the byte tokenizer drops NUL bytes by design)
    for i, doc in enumerate(docs):
        want = doc.encode("utf-8").replace(b"\x00", b"") if drop_nul else doc.encode("utf-8")
        assert parts["train"][i] + parts["val"][i] == want
        assert abs(len(parts["val"][i]) - val_fraction * len(want)) < 200   # cut at a line break near the fraction
    return pieces, eot


def test_prepare_byte_round_trip(tmp_path):
    out = str(tmp_path / "out")
    r = subprocess.run([sys.executable, os.path.join(DATA, "prepare.py"), "--input", *write_docs(tmp_path),
                        "--out", out, "--name", "t", "--tokenizer", "byte", "--val-fraction", "0.2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pieces, eot = check_round_trip(out, "t", [DOC_A, DOC_B], 0.2, drop_nul=True)
    assert len(pieces) == 256 and eot == 0 and pieces[0] == b"<|endoftext|>" and pieces[65] == b"A"
    assert dc.read_datafile(os.path.join(out, "t_train_000000.bin"))[0] == 1   # uint16 shards


def test_prepare_bpe_round_trip(tmp_path):
    out = str(tmp_path / "out")
    _, _, tok = prepare.prepare(write_docs(tmp_path), out, "b", "bpe", vocab_size=300, val_fraction=0.1)
    pieces, eot = check_round_trip(out, "b", [DOC_A, DOC_B], 0.1, drop_nul=False)
    assert eot == 0 and len(pieces) == tok.vocab_size and 257 < tok.vocab_size <= 300
    # merges happened: the text takes fewer tokens than bytes
    _, toks = dc.read_datafile(os.path.join(out, "b_train_000000.bin"))
    assert len(toks) < 0.7 * len((DOC_A + DOC_B).encode())


def test_prepare_shard_size_splits(tmp_path):
    out = str(tmp_path / "out")
    train, val, _ = prepare.prepare(write_docs(tmp_path), out, "s", "byte", val_fraction=0.1, shard_size=1000)
    sizes = [len(dc.read_datafile(p)[1]) for p in train]
    assert len(train) > 2 and all(s == 1000 for s in sizes[:-1]) and 0 < sizes[-1] <= 1000
    assert [os.path.basename(p) for p in train[:2]] == ["s_train_000000.bin", "s_train_000001.bin"]


def test_prepare_missing_input(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(DATA, "prepare.py"), "--input", str(tmp_path / "nope.txt"),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "input file" in r.stderr and "nope.txt" in r.stderr

def test_prepare_empty_input_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    r = subprocess.run([sys.executable, os.path.join(DATA, "prepare.py"), "--input", str(tmp_path / "empty.txt"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 1 and "error: no text in" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_prepare_warns_on_a_tiny_val_split(tmp_path):
    (tmp_path / "tiny.txt").write_text("0123456789")
    r = subprocess.run([sys.executable, os.path.join(DATA, "prepare.py"), "--input", str(tmp_path / "tiny.txt"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 0 and "warning: the validation split has only 2 tokens" in r.stderr, r.stderr


def test_prepare_reads_a_symlinked_duplicate_once(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n" * 200)
    os.symlink(tmp_path / "a.txt", tmp_path / "b.txt")
    outs = []
    for inputs in (["a.txt"], ["a.txt", "b.txt"]):
        out = tmp_path / ("out%d" % len(inputs))
        r = subprocess.run([sys.executable, os.path.join(DATA, "prepare.py"), "--input",
                            *[str(tmp_path / i) for i in inputs], "--out", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append(sorted((f, (out / f).read_bytes()) for f in os.listdir(out)))
    assert "is the same file as" in r.stderr and outs[0] == outs[1]

# ----------------------------------------------------------------------------
# offline behaviour


def test_download_script_fails_clearly_offline(tmp_path):
    url = "http://127.0.0.1:9/input.txt"   # discard port: connection refused at once
    r = subprocess.run([sys.executable, os.path.join(DATA, "tinyshakespeare.py"), "--out", str(tmp_path / "ts"),
                        "--url", url, "--timeout", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cannot download " + url in r.stderr and "127.0.0.1:9" in r.stderr
    assert not os.path.exists(tmp_path / "ts" / "input.txt.part")


def test_download_fails_clearly_on_dns_error(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(dc.urllib.request, "urlopen", no_network)
    with pytest.raises(SystemExit) as e:
        dc.download("https://huggingface.co/x.tar.gz", str(tmp_path / "x.tar.gz"))
    assert "cannot download https://huggingface.co/x.tar.gz" in str(e.value) and "huggingface.co" in str(e.value)


def test_gpt2_without_tiktoken_fails_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)   # import tiktoken -> ImportError
    with pytest.raises(SystemExit) as e:
        dc.make_tokenizer("gpt2")
    assert "pip install tiktoken" in str(e.value)

# ----------------------------------------------------------------------------
# the default corpus reader (R serialization)


def xdr_str(s):
    b = s.encode()
    return struct.pack(">ii", 0x00040009, len(b)) + b


def test_rreader_named_list():
    # list(a = c("x", NA), b = 3L), serialized by hand in R's XDR format version 2
    body = struct.pack(">i", 0x213) + struct.pack(">i", 2)                      # VECSXP with attributes, length 2
    body += struct.pack(">ii", 16, 2) + xdr_str("x") + struct.pack(">ii", 9, -1)   # STRSXP: "x", NA
    body += struct.pack(">iii", 13, 1, 3)                                     # INTSXP: 3
    body += struct.pack(">i", 0x402) + struct.pack(">i", 1) + xdr_str("names")   # pairlist (tag = symbol "names")
    body += struct.pack(">ii", 16, 2) + xdr_str("a") + xdr_str("b")
    body += struct.pack(">i", 254)                                            # end of pairlist
    blob = b"X\n" + struct.pack(">iii", 2, 0x40201, 0x20300) + body
    assert austen.RReader(blob).header() == {"a": ["x", None], "b": [3]}


def test_austen_novels_if_available():
    for d in (austen.INSTALLED_DIR, os.path.join(DATA, "default", ".cache", "deb", austen.INSTALLED_DIR.lstrip("/"))):
        if os.path.exists(os.path.join(d, "Rdata.rdb")):
            texts = austen.novels(d)
            assert list(texts) == austen.NOVELS
            assert texts["prideprejudice"].startswith("PRIDE AND PREJUDICE")
            assert "It is a truth universally acknowledged" in texts["prideprejudice"]
            assert 3_900_000 < sum(len(t) for t in texts.values()) < 4_200_000
            return
    pytest.skip("janeaustenr data not unpacked here (run data/prepare_default.sh)")

# ----------------------------------------------------------------------------
# long-context generators


def lc_args(**kw):
    a = dict(num_pairs=8, num_queries=4, num_classes=4, style_len=64, style_noise=0.5, seed=1)
    a.update(kw)
    return argparse.Namespace(**a)


def run_lc(tmp_path, task, T, distances, n_val=60):
    out = str(tmp_path / "lc")
    r = subprocess.run([sys.executable, os.path.join(DATA, "long_context.py"), "--task", task, "--out", out,
                        "--seq-len", str(T), "--distances", ",".join(map(str, distances)), "--num-train", "50",
                        "--num-val", str(n_val), "--num-pairs", "8", "--num-queries", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = os.path.join(out, task)
    _, toks = dc.read_datafile(os.path.join(d, "%s_val_000000.bin" % task))
    with open(os.path.join(d, "%s_eval.bin" % task), "rb") as f:
        raw = f.read()
    header = struct.unpack("<256i", raw[:1024])
    recs = np.frombuffer(raw[1024:], dtype="<i4").reshape(-1, 5)
    assert header[:8] == (20261125, 1, T, n_val, len(recs), lc.TASK_IDS[task], 256, 5)
    assert len(toks) == n_val * T + 1 and toks[-1] == lc.EOT
    seqs = toks[:-1].reshape(n_val, T)
    assert (seqs[:, 0] == lc.EOT).all() and (seqs[:, 1:] != lc.EOT).all()
    # val cycles evenly through the nominal distances
    assert sorted(set(recs[:, 4])) == sorted(distances)
    # every scored target is the answer: targets of row i are tokens i*T+1 .. i*T+T
    for s, t, dist, ans, nom in recs:
        assert toks[s * T + t + 1] == ans
    return seqs, recs


def test_needle_invariants(tmp_path):
    seqs, recs = run_lc(tmp_path, "needle", 128, [5, 40, 125])
    assert len(recs) == len(seqs)
    for s, t, dist, ans, nom in recs:
        seq = seqs[s]
        assert dist == nom and t == 126 and seq[t] == lc.QUERY
        assert seq[t + 1 - dist] == ans and seq[t - dist] == lc.NEEDLE
        assert (seq == lc.NEEDLE).sum() == 1 and (seq == lc.QUERY).sum() == 1


def test_mqar_invariants(tmp_path):
    seqs, recs = run_lc(tmp_path, "mqar", 128, [1, 30, 90])
    assert len(recs) == 4 * len(seqs)
    for s, t, dist, ans, nom in recs:
        seq = seqs[s]
        key, vpos = seq[t], t + 1 - dist
        assert lc.KEY0 <= key < lc.KEY0 + lc.NUM_KEYS and seq[vpos] == ans and seq[vpos - 1] == key
        # the key occurs exactly twice (pair and query) and the pairs end nom tokens before the first query
        assert (seq == key).sum() == 2
        assert dist >= nom + 2
    noms = {s: nom for s, t, dist, ans, nom in recs}
    for s, seq in enumerate(seqs):
        pair_keys = seq[(seq >= lc.KEY0) & (seq < lc.KEY0 + lc.NUM_KEYS)][:8]
        assert len(set(pair_keys)) == 8
        # exactly d noise tokens between the last pair's value and the first query (at T - 2*4)
        d, q0 = noms[s], 128 - 8
        assert lc.VAL0 <= seq[q0 - d - 1] < lc.VAL0 + lc.NUM_VALS and (seq[q0 - d:q0] >= lc.NOISE0).all()


def test_style_invariants_and_solvable(tmp_path):
    seqs, recs = run_lc(tmp_path, "style", 256, [10, 150], n_val=200)
    p = lc.style_distributions(4, 1337)
    correct = 0
    for s, t, dist, ans, nom in recs:
        seq = seqs[s]
        assert dist == nom + 1 and seq[t] == lc.QUERY and lc.VAL0 <= ans < lc.VAL0 + 4
        # the label is recoverable from the styled segment alone: naive Bayes with the true mixtures
        seg = seq[t - nom - 63:t - nom + 1] - lc.NOISE0   # the 64 styled tokens end at t - nom
        mix = 0.5 * p + 0.5 / lc.NUM_NOISE
        correct += int(np.argmax(np.log(mix[:, seg]).sum(axis=1)) == ans - lc.VAL0)
    # chance is 25%; with 64 tokens at 50% noise the segment identifies the class almost always
    assert correct / len(recs) > 0.9


def test_long_context_rejects_too_long_distance(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(DATA, "long_context.py"), "--task", "needle", "--out",
                        str(tmp_path), "--seq-len", "64", "--distances", "100"], capture_output=True, text=True)
    assert r.returncode == 1 and "distance 100 needs --seq-len >= 103" in r.stderr


def test_generators_deterministic():
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    a, ra = lc.gen_mqar(rng1, 100, 20, lc_args())
    b, rb = lc.gen_mqar(rng2, 100, 20, lc_args())
    assert np.array_equal(a, b) and ra == rb

# ----------------------------------------------------------------------------
# the C loader and tokenizer read what the Python side writes

C_READER = r"""
#include "llmc/dataloader.h"
#include "llmc/tokenizer.h"
int main(int argc, char **argv) {
    Tokenizer tok; tokenizer_init(&tok, argv[2]);
    DataLoader l; dataloader_init(&l, argv[1], 2, 16, 0, 1, 0, 0, (int)tok.vocab_size);
    printf("%zu %zu %u %d\n", l.num_tokens, l.steps_per_epoch, tok.vocab_size, tok.eot_token);
    for (size_t i = 0; i < l.steps_per_epoch; i++) {
        dataloader_next_batch(&l);
        for (int k = 0; k < 32; k++) printf("%d %d\n", l.inputs[k], l.targets[k]);
    }
    dataloader_free(&l); tokenizer_free(&tok);
    return 0;
}
"""


def test_c_loader_reads_prepared_shards(tmp_path):
    out = str(tmp_path / "out")
    prepare.prepare(write_docs(tmp_path), out, "c", "bpe", vocab_size=300, val_fraction=0.1)
    src, exe = tmp_path / "reader.c", str(tmp_path / "reader")
    src.write_text(C_READER)
    r = subprocess.run(["gcc", "-O1", "-I", ROOT, str(src), "-o", exe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shard = os.path.join(out, "c_train_000000.bin")
    r = subprocess.run([exe, shard, os.path.join(out, "tokenizer.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    _, toks = dc.read_datafile(shard)
    n, steps, vocab, eot = map(int, lines[0].split())
    pieces, want_eot = dc.read_tokenizer(os.path.join(out, "tokenizer.bin"))
    assert n == len(toks) and steps == (len(toks) - 1) // 32 and vocab == len(pieces) and eot == want_eot
    pairs = np.array([list(map(int, x.split())) for x in lines[1:] if x])
    # unshuffled, one rank: the batches are the shard itself, in order, targets shifted by one
    assert np.array_equal(pairs[:, 0], toks[:steps * 32]) and np.array_equal(pairs[:, 1], toks[1:steps * 32 + 1])
