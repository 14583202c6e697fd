"""
Shared pieces of the data scripts: llm.c's shard and tokenizer file formats (DESIGN.md §4), the three
tokenizers (byte, gpt2, bpe), document -> shard writing, and downloads that fail clearly offline.

Shard:     256 int32 header [magic 20240520, version, n_tokens], then n_tokens tokens,
           version 1 = uint16 (vocab <= 65536), version 2 = uint32.
Tokenizer: 256 int32 header [magic 20240328, version 2, vocab size, eot id], then per token
           one uint8 length (1..255) and its bytes.
Documents are written as  <eot> doc0 <eot> doc1 ...  (the eot token starts each document, as llm.c does).
"""
import os
import sys
import socket
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from tqdm import tqdm

SHARD_MAGIC = 20240520
TOKENIZER_MAGIC = 20240328
HEADER_INTS = 256
EOT_STRING = "<|endoftext|>"

# ----------------------------------------------------------------------------
# file formats

def write_datafile(path, tokens, vocab_size):
    """tokens (sequence of ints, all < vocab_size) -> shard file; written to PATH.tmp then renamed"""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError("%s: token ids must be in [0, %d), found [%d, %d]" % (path, vocab_size, tokens.min(), tokens.max()))
    if tokens.size >= 2**31:
        raise ValueError("%s: %d tokens do not fit the int32 count of the header" % (path, tokens.size))
    version, dtype = (1, np.uint16) if vocab_size <= 2**16 else (2, np.uint32)
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[0], header[1], header[2] = SHARD_MAGIC, version, tokens.size
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.astype("<i4").tobytes())
        f.write(tokens.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
    os.replace(tmp, path)


def read_datafile(path):
    """shard file -> (version, np.ndarray of tokens); raises ValueError naming the problem"""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 * HEADER_INTS:
        raise ValueError("%s: %d bytes, shorter than the shard header" % (path, len(data)))
    header = np.frombuffer(data[:4 * HEADER_INTS], dtype="<i4")
    if header[0] != SHARD_MAGIC:
        raise ValueError("%s: bad magic %d" % (path, header[0]))
    if header[1] not in (1, 2):
        raise ValueError("%s: unknown shard version %d" % (path, header[1]))
    dtype = "<u2" if header[1] == 1 else "<u4"
    n = int(header[2])
    body = data[4 * HEADER_INTS:]
    if len(body) != n * np.dtype(dtype).itemsize:
        raise ValueError("%s: header says %d tokens, file holds %d bytes of tokens" % (path, n, len(body)))
    return int(header[1]), np.frombuffer(body, dtype=dtype)


def write_tokenizer(path, pieces, eot):
    """pieces: list of bytes, one per token id (1..255 bytes each); eot: end-of-text id"""
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[0], header[1], header[2], header[3] = TOKENIZER_MAGIC, 2, len(pieces), eot
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.astype("<i4").tobytes())
        for i, p in enumerate(pieces):
            if not 1 <= len(p) <= 255:
                raise ValueError("token %d is %d bytes long: the file format allows 1..255" % (i, len(p)))
            f.write(bytes([len(p)]))
            f.write(p)
    os.replace(tmp, path)


def read_tokenizer(path):
    """tokenizer file -> (pieces, eot)"""
    with open(path, "rb") as f:
        data = f.read()
    header = np.frombuffer(data[:4 * HEADER_INTS], dtype="<i4")
    if len(data) < 4 * HEADER_INTS or header[0] != TOKENIZER_MAGIC or header[1] != 2:
        raise ValueError("%s: not a version 2 tokenizer file" % path)
    pos, pieces = 4 * HEADER_INTS, []
    for _ in range(int(header[2])):
        n = data[pos]
        pieces.append(data[pos + 1:pos + 1 + n])
        pos += 1 + n
    if pos != len(data):
        raise ValueError("%s: %d trailing bytes" % (path, len(data) - pos))
    return pieces, int(header[3])

# ----------------------------------------------------------------------------
# tokenizers: .name, .vocab_size, .eot, .encode(text) -> list of ids, .pieces() -> list of bytes

class ByteTokenizer:
    """UTF-8 bytes, V = 256. The end-of-text token is byte 0 (NUL), which never occurs in text:
    NUL characters are dropped from the input. Its piece in tokenizer.bin is "<|endoftext|>"."""
    name, vocab_size, eot = "byte", 256, 0

    def encode(self, text):
        return list(text.encode("utf-8").replace(b"\x00", b""))

    def pieces(self):
        return [EOT_STRING.encode()] + [bytes([i]) for i in range(1, 256)]


class GPT2Tokenizer:
    """GPT-2's BPE through tiktoken (V = 50257, eot 50256), as llm.c uses: needs tiktoken and,
    the first time, its download of the GPT-2 vocabulary."""
    name = "gpt2"

    def __init__(self):
        try:
            import tiktoken
        except ImportError:
            sys.exit("error: the gpt2 tokenizer needs tiktoken: pip install tiktoken (needs network access to PyPI)")
        try:
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as e:   # tiktoken fetches the vocabulary from openaipublic.blob.core.windows.net
            sys.exit("error: tiktoken could not load the gpt2 vocabulary (it downloads it from "
                     "openaipublic.blob.core.windows.net on first use; offline?): %s" % e)
        self.vocab_size, self.eot = self.enc.n_vocab, self.enc._special_tokens[EOT_STRING]

    def encode(self, text):
        return self.enc.encode_ordinary(text)

    def pieces(self):
        return [self.enc.decode_single_token_bytes(i) for i in range(self.vocab_size)]


def bytes_to_unicode():
    """GPT-2's map from bytes to printable characters, which byte-level BPE vocabularies are written in"""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class BPETokenizer:
    """Byte-level BPE trained on the corpus itself with Hugging Face tokenizers (offline).
    Id 0 is the end-of-text token; tokens are at most 64 bytes long."""
    name = "bpe"

    def __init__(self, texts, vocab_size):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        if vocab_size < 257 + 1:
            raise ValueError("bpe vocab size must be at least 258 (256 bytes + eot + 1 merge), got %d" % vocab_size)
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_STRING], max_token_length=64,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True)
        tk.train_from_iterator(texts, trainer)
        self.tk = tk
        self.vocab_size, self.eot = tk.get_vocab_size(), tk.token_to_id(EOT_STRING)
        self.byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def encode(self, text):
        return self.tk.encode(text, add_special_tokens=False).ids

    def pieces(self):
        out = []
        for i in range(self.vocab_size):
            s = self.tk.id_to_token(i)
            out.append(s.encode() if i == self.eot else bytes(self.byte_of[c] for c in s))
        return out


def make_tokenizer(kind, train_texts=None, vocab_size=None):
    if kind == "byte":
        return ByteTokenizer()
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind == "bpe":
        return BPETokenizer(train_texts, vocab_size)
    raise ValueError("unknown tokenizer '%s' (byte, gpt2 or bpe)" % kind)

# ----------------------------------------------------------------------------
# documents -> shards

def tokenize_documents(docs, tok, desc="tokenizing"):
    """list of texts -> one int array, each document preceded by the eot token"""
    parts = []
    for doc in tqdm(docs, desc=desc, unit="doc"):
        parts.append(np.array([tok.eot] + tok.encode(doc), dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class ShardWriter:
    """Token arrays in, shards of shard_size tokens out: OUT_DIR/NAME_SPLIT_000000.bin, ...
    first_split names shard 0 (llm.c's fineweb puts its first shard in "val"), split all later ones."""

    def __init__(self, out_dir, name, split, vocab_size, shard_size, first_split=None):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.name, self.split, self.first_split = out_dir, name, split, first_split or split
        self.vocab_size, self.shard_size = vocab_size, shard_size
        self.parts, self.fill, self.count, self.paths = [], 0, 0, []   # the pending shard: arrays, total length

    def add(self, tokens):
        tokens = np.asarray(tokens, dtype=np.int64)
        while len(tokens):
            n = min(len(tokens), self.shard_size - self.fill)
            self.parts.append(tokens[:n])
            self.fill += n
            tokens = tokens[n:]
            if self.fill == self.shard_size:
                self.flush()

    def flush(self):
        split = self.first_split if self.count == 0 else self.split
        path = os.path.join(self.out_dir, "%s_%s_%06d.bin" % (self.name, split, self.count))
        write_datafile(path, np.concatenate(self.parts), self.vocab_size)
        self.paths.append(path)
        self.count += 1
        self.parts, self.fill = [], 0

    def close(self):
        """writes the partly filled last shard; returns the paths of all shards written"""
        if self.fill:
            self.flush()
        return self.paths


def write_shards(tokens, out_dir, name, split, vocab_size, shard_size):
    """tokens -> OUT_DIR/NAME_SPLIT_000000.bin, ... of at most shard_size tokens each; returns the paths"""
    w = ShardWriter(out_dir, name, split, vocab_size, shard_size)
    w.add(tokens)
    return w.close()

# ----------------------------------------------------------------------------
# downloads

def download(url, path, timeout=15):
    """url -> path with a progress bar; offline or unreachable: a message naming the URL and exit 1"""
    if os.path.exists(path):
        print("%s already exists, skipping download" % path)
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(path)) as bar:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason = getattr(e, "reason", e)
        sys.exit("error: cannot download %s (%s). This needs network access to %s; offline machines can use "
                 "the default corpus instead: data/prepare_default.sh" % (url, reason, urllib.parse.urlparse(url).netloc))
    os.replace(tmp, path)
    return path
