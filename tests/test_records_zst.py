"""data/records.py reads zstandard-compressed domains (.jsonl.zst, .txt.zst): streaming, frame
after frame, long windows; a bad line, a truncated file or a foreign one is named by file and
line; the on-the-fly pipeline's refusal names the prepared store."""
import gzip
import json

import pytest
import zstandard

from data import domains, records

DOCS = [f"document {i}: café 漢字\n    indented code {i}" for i in range(3000)]
JSONL = [json.dumps({"text": d, "id": i}).encode() + b"\n" for i, d in enumerate(DOCS)]


def zst(lines, frames=1, **params) -> bytes:
    """`lines` as `frames` concatenated zstd frames (as pzstd and some corpora write them)."""
    c = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters
                                 .from_level(3, **params)) if params else zstandard.ZstdCompressor()
    step = -(-len(lines) // frames)
    out = b""
    for i in range(0, len(lines), step):
        obj = c.compressobj()
        out += obj.compress(b"".join(lines[i:i + step])) + obj.flush()
    return out


def test_zst_files_read_line_by_line_across_frames(tmp_path):
    (tmp_path / "train-0.jsonl.zst").write_bytes(zst(JSONL, frames=3))
    (tmp_path / "train-1.txt.zst").write_bytes(zst([b"plain text line\n"] * 10))
    with records.open_lines(str(tmp_path / "train-0.jsonl.zst")) as f:
        assert list(f) == JSONL
    assert records.check("web", "jsonl", str(tmp_path / "{split}-0.jsonl.zst"), "train",
                         "text") == []
    assert records.check("txt", "text", str(tmp_path / "{split}-1.txt.zst"), "train",
                         "text") == []
    # a window past zstd's default limit (zstd --long=28 and up): read, not refused
    (tmp_path / "long.jsonl.zst").write_bytes(zst(JSONL[:5], window_log=28,
                                                  write_content_size=False))
    with records.open_lines(str(tmp_path / "long.jsonl.zst")) as f:
        assert list(f) == JSONL[:5]


def test_a_bad_line_of_a_zst_file_is_named_by_file_and_line(tmp_path):
    lines = JSONL[:50] + [b'{"text": "cut\n'] + JSONL[50:60] + [b'{"body": "x"}\n']
    path = tmp_path / "train-0.jsonl.zst"
    path.write_bytes(zst(lines, frames=2))
    problems = records.check("web", "jsonl", str(tmp_path / "{split}-*.jsonl.zst"), "train",
                             "text")
    assert len(problems) == 2
    assert problems[0].startswith(f"domain 'web': {path}:51: not valid JSON")
    assert problems[1].startswith(f"domain 'web': {path}:62: no string field 'text'")


def test_truncated_and_foreign_compressed_files_are_named(tmp_path):
    whole = zst(JSONL, frames=2)
    (tmp_path / "train-0.jsonl.zst").write_bytes(whole[:-20])  # cut inside the last frame
    (tmp_path / "train-1.jsonl.zst").write_bytes(b"".join(JSONL[:3]))  # not compressed
    (tmp_path / "train-2.jsonl.zst").write_bytes(whole)
    problems = records.check("web", "jsonl", str(tmp_path / "{split}-*.jsonl.zst"), "train",
                             "text")
    assert len(problems) == 2, problems
    assert f"{tmp_path}/train-0.jsonl.zst: unreadable after line" in problems[0]
    assert "truncated" in problems[0] and "not a whole zstandard file" in problems[0]
    assert f"{tmp_path}/train-1.jsonl.zst: unreadable after line 0" in problems[1]
    assert "Unknown frame descriptor" in problems[1]
    with pytest.raises(records.BrokenStream, match=r"train-0.jsonl.zst: the file ends inside a "
                                                   r"zstandard frame: it is truncated"):
        with records.open_lines(str(tmp_path / "train-0.jsonl.zst")) as f:
            list(f)
    # gzip, the same way (it raised out of the check before)
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(b"".join(JSONL))[:-30])
    (problem,) = records.check("gz", "jsonl", str(tmp_path / "cut.jsonl.gz"), "train", "text")
    assert "cut.jsonl.gz: unreadable after line" in problem and "whole gzip file" in problem


def test_sample_lines_of_compressed_files(tmp_path):
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(zst(JSONL, frames=4))
    lines, used = records.sample_lines(str(path), 4000)
    assert 4000 <= sum(map(len, lines)) and lines == JSONL[:len(lines)]
    assert 0 < used <= path.stat().st_size
    lines, used = records.sample_lines(str(path), 10 ** 9)  # every frame
    assert lines == JSONL and used == path.stat().st_size
    gz = tmp_path / "b.jsonl.gz"  # members after the first are read too
    gz.write_bytes(gzip.compress(b"".join(JSONL[:10])) + gzip.compress(b"".join(JSONL[10:20])))
    assert records.sample_lines(str(gz), 10 ** 9)[0] == JSONL[:20]


def test_zst_domains_parse_and_the_on_the_fly_path_names_the_store(tmp_path):
    for suffix, kind in [(".jsonl.zst", "jsonl"), (".json.zst", "jsonl"), (".txt.zst", "text"),
                         (".jsonl.gz", "jsonl"), (".jsonl", "jsonl"), (".txt", "text")]:
        assert domains.parse_domain(f"d=dir/{{split}}-*{suffix}").kind == kind
    assert records.compression("a.jsonl.zst") == "zstd" and not records.compressed("a.jsonl.zst")
    assert records.compressed("a.jsonl.gz") and records.compression("a.txt") == ""
    (problem,) = records.on_the_fly_problems("web", "dir/{split}-*.jsonl.zst")
    assert "domain 'web'" in problem and "--mode=prepare" in problem and "store" in problem
    assert records.on_the_fly_problems("web", "gs://bucket/{split}-*.jsonl.zst")
    (tmp_path / "train-0.jsonl.zst").write_bytes(zst(JSONL[:2]))  # matched by a bare glob
    assert records.on_the_fly_problems("web", str(tmp_path / "*"))
    assert records.on_the_fly_problems("web", str(tmp_path / "{split}-*.jsonl.gz")) == []
