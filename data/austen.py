"""
The default corpus: Jane Austen's six completed novels (public domain, ~4.3 MB of English prose),
as shipped by Debian's package r-cran-janeaustenr (MIT-licensed packaging of the Project Gutenberg
texts by Julia Silge). Only Debian's apt is needed to get it, no other network.

The package stores the novels as R data (a lazy-load database of serialized character vectors, one
per novel, one element per line of text). This module reads that format directly: R itself is not
needed, and the .deb is unpacked with dpkg-deb instead of installed, so none of its R dependencies
are pulled in.

    python data/austen.py --out data/default/austen      # writes one .txt per novel into that folder
"""
import argparse
import glob
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

PACKAGE = "r-cran-janeaustenr"
INSTALLED_DIR = "/usr/lib/R/site-library/janeaustenr/data"   # present when the package is apt-installed
NOVELS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]

# ----------------------------------------------------------------------------
# a minimal reader of R's serialization format (XDR, versions 2 and 3): enough for
# lists, pairlists, symbols, strings and atomic vectors, which is what R data files hold

NILVALUE, REFSXP = 254, 255
SPECIAL_ENVS = {242, 241, 253, 252, 251, 247, 250}   # empty/base/global env, unbound, missing, base namespace, ...


class RReader:
    def __init__(self, buf):
        self.buf, self.pos, self.refs = buf, 0, []

    def ints(self, n):
        v = struct.unpack_from(">%di" % n, self.buf, self.pos)
        self.pos += 4 * n
        return v

    def int(self):
        return self.ints(1)[0]

    def length(self):
        n = self.int()
        if n == -1:   # long vector: two ints
            hi, lo = self.ints(2)
            n = (hi << 32) + lo
        return n

    def header(self):
        if self.buf[:2] != b"X\n":
            raise ValueError("not an XDR R serialization (header %r)" % self.buf[:2])
        self.pos = 2
        version, _writer, _min_reader = self.ints(3)
        if version == 3:
            nelen = self.int()
            self.pos += nelen   # native encoding name
        elif version != 2:
            raise ValueError("unsupported R serialization version %d" % version)
        return self.item()

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == NILVALUE or kind in SPECIAL_ENVS:
            return None
        if kind == REFSXP:
            idx = flags >> 8
            return self.refs[(idx if idx else self.int()) - 1]
        if kind == 1:   # SYMSXP
            sym = self.item()
            self.refs.append(sym)
            return sym
        if kind == 2:   # LISTSXP (pairlist) -> list of (tag, value)
            out = []
            while True:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out.append((tag, self.item()))
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
                if kind == NILVALUE:
                    return out
                if kind != 2:
                    raise ValueError("unsupported pairlist tail of type %d" % kind)
        if kind == 9:   # CHARSXP
            n = self.int()
            if n == -1:
                return None   # NA_character_
            s = self.buf[self.pos:self.pos + n].decode("utf-8", errors="replace")
            self.pos += n
            return s
        if kind in (10, 13):   # LGLSXP, INTSXP
            value = list(self.ints(self.length()))
        elif kind == 14:       # REALSXP
            n = self.length()
            value = list(struct.unpack_from(">%dd" % n, self.buf, self.pos))
            self.pos += 8 * n
        elif kind in (16, 19, 20):   # STRSXP, VECSXP, EXPRSXP
            value = [self.item() for _ in range(self.length())]
        else:
            raise ValueError("unsupported R object type %d" % kind)
        if has_attr:
            attrs = dict(self.item())
            if "names" in attrs and kind in (19, 20):
                value = dict(zip(attrs["names"], value))
        return value


def read_lazyload_db(data_dir):
    """R's lazy-load database (Rdata.rdx index + Rdata.rdb blobs) -> {name: object}"""
    with open(os.path.join(data_dir, "Rdata.rdx"), "rb") as f:
        index = RReader(gzip.decompress(f.read())).header()
    with open(os.path.join(data_dir, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    out = {}
    for name, (offset, length) in index["variables"].items():
        blob = rdb[int(offset):int(offset) + int(length)]
        # each blob: 4-byte big-endian uncompressed size, then a zlib stream
        out[name] = RReader(zlib.decompress(blob[4:])).header()
    return out


# ----------------------------------------------------------------------------
# locating the package

def fetch_package(cache_dir):
    """The janeaustenr data folder: the installed package, an unpacked .deb in cache_dir, or apt-get download."""
    if os.path.exists(os.path.join(INSTALLED_DIR, "Rdata.rdb")):
        return INSTALLED_DIR
    unpacked = os.path.join(cache_dir, "deb", INSTALLED_DIR.lstrip("/"))
    if os.path.exists(os.path.join(unpacked, "Rdata.rdb")):
        return unpacked
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            sys.exit("error: '%s' not found: the default corpus comes from Debian's package %s "
                     "(install it on a Debian/Ubuntu machine, or give prepare.py your own text)" % (tool, PACKAGE))
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["apt-get", "download", PACKAGE]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0 and os.geteuid() == 0:   # package lists may be missing on a fresh machine
            print("apt-get download failed; running apt-get update once and retrying", file=sys.stderr)
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        debs = glob.glob(os.path.join(tmp, PACKAGE + "_*.deb"))
        if r.returncode != 0 or not debs:
            sys.exit("error: 'apt-get download %s' failed (is Debian's package index reachable? "
                     "run 'apt-get update' as root first):\n%s" % (PACKAGE, r.stderr.strip()))
        subprocess.run(["dpkg-deb", "-x", debs[0], os.path.join(cache_dir, "deb")], check=True)
    return unpacked


def novels(data_dir):
    """{novel name: text}, lines joined with newlines, in publication order"""
    db = read_lazyload_db(data_dir)
    missing = [n for n in NOVELS if n not in db]
    if missing:
        raise ValueError("janeaustenr data lacks %s (has %s)" % (missing, sorted(db)))
    return {n: "\n".join(line if line is not None else "" for line in db[n]).strip() + "\n" for n in NOVELS}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the six .txt files")
    ap.add_argument("--cache", default=None, help="where the .deb is unpacked (default: OUT/.cache)")
    args = ap.parse_args()
    texts = novels(fetch_package(args.cache or os.path.join(args.out, ".cache")))
    os.makedirs(args.out, exist_ok=True)
    for i, (name, text) in enumerate(texts.items()):
        path = os.path.join(args.out, "%d_%s.txt" % (i, name))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote %s (%d characters)" % (path, len(text)))


if __name__ == "__main__":
    main()
