"""Tests of the corpus builder on tiny hand-made packages (fast) and one full build (slow)."""
import gzip
import io
import json
import logging
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from data import corpus as c

# --------------------------------------------------------------------------- fixtures


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = [b"!<arch>\n"]
    for name, body in members.items():
        header = (f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n").encode()
        out += [header, body, b"\n" if len(body) % 2 else b""]
    return b"".join(out)


def make_deb(path: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal .deb: ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    control = f"Package: {package}\nVersion: {version}\nArchitecture: all\n".encode()
    path.write_bytes(_ar({"debian-binary": b"2.0\n",
                          "control.tar.xz": _tar_xz({"control": control}),
                          "data.tar.xz": _tar_xz(files)}))
    return path


def _dictd_num(n: int) -> str:
    digits = ""
    while True:
        digits = c._B64[n % 64] + digits
        n //= 64
        if not n:
            return digits


def make_dictd(entries: dict[str, str]) -> tuple[bytes, bytes]:
    """(.index, .dict.dz) for headword -> definition, with one alias sharing an entry."""
    body, index = b"", ["00-database-short\tA\tB"]
    for word, text in entries.items():
        raw = text.encode()
        index.append(f"{word}\t{_dictd_num(len(body))}\t{_dictd_num(len(raw))}")
        index.append(f"{word} alias\t{_dictd_num(len(body))}\t{_dictd_num(len(raw))}")
        body += raw
    return "\n".join(index).encode() + b"\n", gzip.compress(body)


# --------------------------------------------------------------------------- formats


def test_ar_and_deb_roundtrip(tmp_path):
    deb = make_deb(tmp_path / "x.deb", "fake-pkg", "1.0-1",
                   {"usr/share/a.txt": b"hello\n", "usr/share/b.bin": b"odd"})
    assert c.deb_control(deb) == {"Package": "fake-pkg", "Version": "1.0-1", "Architecture": "all"}
    assert dict(c.deb_files(deb, lambda p: p.endswith(".txt"))) == {"usr/share/a.txt": b"hello\n"}
    with pytest.raises(ValueError, match="not an ar archive"):
        c.ar_members(b"PK\x03\x04")


def test_dictd_entries_dedupes_aliases_and_skips_metadata():
    index, dz = make_dictd({"apple": "apple\n  A fruit.\n", "pear": "pear\n  Another.\n"})
    assert list(c.dictd_entries(index, dz)) == [("apple", b"apple\n  A fruit.\n"),
                                                ("pear", b"pear\n  Another.\n")]


def test_split_fortunes():
    data = b"First one.\n%\nSecond\n  -- someone\n%\n%\nThird\n"
    assert c.split_fortunes(data) == [b"First one.\n", b"Second\n  -- someone\n", b"Third\n"]


def test_gutenberg_strip():
    text = ("The Project Gutenberg EBook of X\nlicense...\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\nChapter 1\nBody.\n\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nMore license.\n")
    assert c.gutenberg_strip(text) == "Chapter 1\nBody.\n"
    assert c.gutenberg_strip("Already clean.\n") == "Already clean.\n"


def test_metamath_strip_proofs_keeps_comments():
    text = "$( A comment $= not a proof $. $)\nax $a |- ph $.\nth $p |- ps $= ( a b ) AB $.\n"
    assert c.metamath_strip_proofs(text) == (
        "$( A comment $= not a proof $. $)\nax $a |- ph $.\nth $p |- ps $.\n")


def test_yaml_conversations():
    text = ("categories:\n- greetings\nconversations:\n- - Hello\n  - 'Hi, it''s me'\n"
            "- - \"How are you?\"\n  - Fine.\n")
    assert c.yaml_conversations(text) == [["Hello", "Hi, it's me"], ["How are you?", "Fine."]]


def test_sword_ztext_and_zcom4_blocks():
    verses = ["<div sID='p1' type=\"x-p\"/>In the beginning <note>x</note>God", "created.",
              "<title>Psalm 1</title>Blessed &amp; happy."]
    raw = "".join(verses).encode()
    blob = zlib.compress(raw)
    index = struct.pack("<III", 0, len(blob), len(raw))
    offsets = [0, len(verses[0].encode()), len((verses[0] + verses[1]).encode())]
    entries = [(0, o, len(v.encode())) for o, v in zip(offsets, verses)]
    ztext = b"".join(struct.pack("<IIH", *e) for e in [(0, 0, 0)] + entries)
    docs = list(c.sword_blocks({"ot.bzs": index, "ot.bzv": ztext, "ot.bzz": blob}, " "))
    assert docs == [("ot/0", b"In the beginning God created.\n\nPsalm 1\n\nBlessed & happy.\n")]
    zcom4 = b"".join(struct.pack("<III", *e) for e in entries)
    docs = list(c.sword_blocks({"nt.czs": index, "nt.czv": zcom4, "nt.czz": blob}, "\n\n"))
    assert docs == [("nt/0", b"In the beginning God\n\ncreated.\n\nPsalm 1\n\nBlessed & happy.\n")]


def _r_int(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def _r_str(s: str) -> bytes:
    raw = s.encode()
    return _r_int(9 | (64 << 12), len(raw)) + raw


def _r_strvec(items: list[str]) -> bytes:
    return _r_int(16, len(items)) + b"".join(_r_str(s) for s in items)


def _r_names(names: list[str]) -> bytes:
    """A pairlist `names = <names>` (an attribute list), then R_NilValue."""
    return _r_int(2 | 1024) + _r_int(1) + _r_str("names") + _r_strvec(names) + _r_int(254)


def _r_named_list(items: dict[str, bytes]) -> bytes:
    return (_r_int(19 | 512, len(items)) + b"".join(items.values()) + _r_names(list(items)))


def test_r_lazyload_db():
    header = b"X\n" + _r_int(3, 0x040201, 0x030500, 5) + b"UTF-8"
    book = header + _r_strvec(["EMMA", "", "Emma Woodhouse, handsome."])
    block = struct.pack(">I", len(book)) + zlib.compress(book)
    variables = _r_named_list({"emma": _r_int(13, 2, 0, len(block))})
    rdx = header + _r_named_list({"variables": variables, "references": _r_int(19, 0),
                                  "compressed": _r_int(10, 1, 1)})
    objects = c.r_lazyload(gzip.compress(rdx), block)
    assert objects == {"emma": [b"EMMA", b"", b"Emma Woodhouse, handsome."]}


# --------------------------------------------------------------------------- pieces, split


def test_cut_document_bounds_and_paragraphs():
    paragraphs = [f"Paragraph {i} " + "word " * (i * 37 % 300) for i in range(200)]
    text = "\n\n".join(paragraphs) + "\n" + "x" * 20000 + "\né" * 9000
    pieces = c.cut_document(text, max_doc_bytes=16384, piece_bytes=8192)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 8192 for p in pieces)
    assert len(pieces) > 10
    # Cuts fall at paragraph ends, except inside the last, oversized paragraph.
    oversized = text.index("Paragraph 199")
    offset = 0
    for piece in pieces[:-1]:
        offset += len(piece)
        assert text[:offset].endswith("\n\n") or offset > oversized, text[offset - 40:offset]
    assert c.cut_document("short\n\ntext") == ["short\n\ntext"]


def test_split_is_deterministic_and_near_fraction():
    ids = [f"doc{i}#{k}" for i in range(2000) for k in range(5)]
    first = [c.split_of("src", i, 0.05) for i in ids]
    assert first == [c.split_of("src", i, 0.05) for i in ids]
    assert 0.03 < first.count("validation") / len(ids) < 0.07
    assert c.split_of("src", "doc1", 0.0) == "train"


# --------------------------------------------------------------------------- end to end


def _fake_sources():
    def fortunes(paths):
        for path, body in c.deb_files(paths["fake-fortunes"], lambda p: "/fortunes/" in p):
            for i, entry in enumerate(c.split_fortunes(body)):
                yield f"{path}/{i}", entry

    sources = (c.Source("fdict", "reference", ("fake-dict",), c._dictd("fake-dict")),
               c.Source("ffort", "dialogue", ("fake-fortunes",), fortunes))
    heldout = (c.Source("hdict", "hdict", ("fake-dict",), c._dictd("fake-dict")),)
    return sources, heldout


@pytest.fixture
def fake_data_dir(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    words = {f"word{i}": f"word{i}\n   " + "meaning " * (i % 40) + "\n" for i in range(400)}
    index, dz = make_dictd(words)
    make_deb(downloads / "fake-dict_1_all.deb", "fake-dict", "1",
             {"usr/share/dictd/x.index": index, "usr/share/dictd/x.dict.dz": dz})
    fortunes = "\n%\n".join(f"Fortune number {i}.\n" + "Long story. " * (i * 7 % 3000)
                            for i in range(300)).encode() + b"\n%\n\xff\xfe broken\n"
    make_deb(downloads / "fake-fortunes_2_all.deb", "fake-fortunes", "2",
             {"usr/share/games/fortunes/misc": fortunes})
    return tmp_path


def _build(data_dir, **kw):
    sources, heldout = _fake_sources()
    return c.build_corpus(str(data_dir), validation_fraction=0.1, sources=sources,
                          heldout_sources=heldout, shard_bytes=20000, **kw)


def _rows(data_dir: Path, pattern: str) -> list[dict]:
    return [json.loads(line) for path in sorted(data_dir.glob(pattern))
            for line in path.read_text().splitlines()]


def test_build_layout_split_and_manifest(fake_data_dir):
    manifest = _build(fake_data_dir)
    train = _rows(fake_data_dir, "corpus/*/train-*.jsonl")
    val = _rows(fake_data_dir, "corpus/*/validation-*.jsonl")
    key = lambda r: (r["source"], r["id"])
    assert train and val and not {key(r) for r in train} & {key(r) for r in val}
    assert all(len(r["text"].encode()) <= 16384 for r in train + val)
    assert manifest["sources"]["ffort"]["undecodable"] == 1
    assert manifest["packages"]["fake-dict"]["version"] == "1"
    assert set(manifest["domains"]) == {"reference", "dialogue"}
    assert len(list(fake_data_dir.glob("corpus/reference/train-*-of-*.jsonl"))) > 1
    assert list(fake_data_dir.glob("heldout/hdict/validation-00000-of-*.jsonl"))
    for rel, record in manifest["shards"].items():
        assert c._sha256(fake_data_dir / rel) == record["sha256"]
    counts = manifest["domains"]["dialogue"]
    assert counts["train"]["pieces"] + counts["validation"]["pieces"] == \
        manifest["sources"]["ffort"]["pieces"]
    # Same inputs on a fresh directory give byte-identical shards.
    other = fake_data_dir / "again"
    (other / "downloads").mkdir(parents=True)
    for deb in (fake_data_dir / "downloads").glob("*.deb"):
        (other / "downloads" / deb.name).write_bytes(deb.read_bytes())
    assert {k: v["sha256"] for k, v in _build(other)["shards"].items()} == \
        {k: v["sha256"] for k, v in manifest["shards"].items()}


def test_second_build_does_nothing_and_corruption_is_rebuilt(fake_data_dir, caplog):
    first = _build(fake_data_dir)
    shard = fake_data_dir / sorted(first["shards"])[0]
    mtime = shard.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="data.corpus"):
        assert _build(fake_data_dir) == first
    assert "nothing to do" in caplog.text
    assert shard.stat().st_mtime_ns == mtime
    shard.write_text(shard.read_text()[:-10])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="data.corpus"):
        rebuilt = _build(fake_data_dir)
    assert "does not match its sha256" in caplog.text and shard.name in caplog.text
    assert c._sha256(shard) == rebuilt["shards"][sorted(first["shards"])[0]]["sha256"]
    assert rebuilt["shards"] == first["shards"]


def test_missing_apt_get_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(c.shutil, "which", lambda name: None)
    sources = (c.Source("x", "books", ("fake-absent",), lambda paths: iter(())),)
    with pytest.raises(c.MissingToolError) as err:
        c.build_corpus(str(tmp_path), sources=sources, heldout_sources=())
    message = str(err.value)
    assert "apt-get not found" in message and "fake-absent" in message
    assert "JSONL" in message and str(tmp_path / "downloads") in message


def test_pin_no_longer_served_falls_back_to_current(tmp_path, monkeypatch):
    calls = []

    def fake_apt(specs, downloads):
        calls.append(list(specs))
        ok = all("=" not in s for s in specs)
        if ok:
            make_deb(downloads / "fake-pkg_2.0_all.deb", "fake-pkg", "2.0", {"a": b"x"})
        return c.subprocess.CompletedProcess(specs, 0 if ok else 100, "", "not found")

    monkeypatch.setattr(c, "DEB_PINS", {"fake-pkg": "1.0"})
    monkeypatch.setattr(c.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(c, "_apt_download", fake_apt)
    records = c.fetch_debs(["fake-pkg"], tmp_path)
    assert records["fake-pkg"]["version"] == "2.0" and records["fake-pkg"]["pinned"] == "1.0"
    assert calls == [["fake-pkg=1.0"], ["fake-pkg=1.0"], ["fake-pkg"]]
    assert c.fetch_debs(["fake-pkg"], tmp_path) == records  # cached: no new apt-get call
    assert len(calls) == 3


@pytest.mark.slow
def test_full_build(tmp_path_factory):
    """Downloads the real packages (~170 MB) and builds the whole corpus (~1-2 minutes)."""
    data_dir = tmp_path_factory.mktemp("full")
    manifest = c.build_corpus(str(data_dir))
    for domain in c.DOMAINS:
        assert manifest["domains"][domain]["train"]["bytes"] > 3e6, domain
        assert manifest["domains"][domain]["validation"]["pieces"] > 0, domain
    assert all(v["validation"]["bytes"] > 1e6 for v in manifest["heldout"].values())
    assert c.build_corpus(str(data_dir)) == manifest


def test_a_corpus_other_than_the_pinned_one_says_so_plainly():
    pinned = {"perl-doc": {"version": "1", "pinned": "1"}, "linux-doc-6.1": {"version": "2"}}
    assert c.drift({"packages": pinned}) == ""
    moved = {**pinned, "perl-doc": {"version": "0.9", "pinned": "1"}}
    note = c.drift({"packages": moved})
    assert note.startswith("This corpus is NOT the pinned one: the archive no longer serves "
                           "perl-doc=1 (used 0.9). The domains heldout/perl_pod read")
