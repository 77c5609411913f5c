"""A domain's records: the rules every reader shares, and the check of every record before work.

A JSONL line is one JSON object with a string under the text key; a text line is one document;
blank lines and empty texts are not documents. A line that is not valid UTF-8, not JSON or
without the text field is an error naming the file and line (repair the file, e.g. `iconv -f
utf-8 -t utf-8 -c`): skipping it would change what a domain holds without a word. Files ending
in .gz are read through gzip, files ending in .zst through zstandard (the format of Dolma, The
Pile, RedPajama; concatenated frames and long windows included). A compressed file that is
truncated or not of its format is an error naming the file and the last line read: zstandard's
own reader would end a truncated file quietly. The on-the-fly tf.data pipeline (data/tasks.py)
reads .gz but not .zst: a .zst domain is read through the prepared token store
(`on_the_fly_problems` says so before any work).

`check` reads every line of a split's files with these rules before any training, in Python
(no TensorFlow), and reports every bad line it finds (up to a limit) at once, so that a bad
record at line 3000 of 4000 stops the run before its first step, not at step 120. It costs one
pass over the files: 4.6 s for the built-in corpus's 184 MB on this project's 2-core machine
(~40 MB/s); `config.data.check_records=False` skips it for a corpus too large to read twice,
and a bad record then stops the run when it is read, naming its file and line.

Long documents are cut into pieces of at most MAX_PIECE_CHARS characters, at whitespace where
there is some, before tokenizing, so that memory follows the piece, not the document (one
42 MB line once took 24 GB); only a document's last piece ends in EOS, and the pieces stay in
order in the stream, so the document reads on across them.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from typing import IO, Iterator

MAX_PIECE_CHARS = 1 << 16  # ~16k BPE tokens: 128 rows of 128 tokens
MAX_REPORTED = 10  # bad lines listed per split before the check stops reading
ZSTD_MAX_WINDOW = 1 << 31  # a limit (`zstd --long=31` files); memory follows each file's window
GZIP_MAGIC = b"\x1f\x8b"


class BrokenStream(ValueError):
    """A compressed file that is truncated or not of the format its suffix names."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def compression(path: str) -> str:
    """"gzip" for a .gz path or pattern, "zstd" for a .zst one, "" otherwise."""
    return "gzip" if path.endswith(".gz") else "zstd" if path.endswith(".zst") else ""


def compressed(pattern: str) -> bool:
    """Gzip: what the tf.data pipeline reads as TextLineDataset's "GZIP" (data/tasks.py). A
    .zst pattern is not: it is read through the prepared store (`on_the_fly_problems`)."""
    return compression(pattern) == "gzip"


def open_lines(path: str) -> IO[bytes]:
    """The file's raw lines, through gzip for a .gz file and zstandard for a .zst one
    (streaming; a truncated or foreign .zst raises BrokenStream)."""
    kind = compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "zstd":
        return io.BufferedReader(_ZstdReader(path), buffer_size=1 << 16)
    return open(path, "rb")


class _Inflater:
    """Decompresses a gzip or zstandard stream fed in chunks, member after member (frame after
    frame); `mid_stream` says whether the input so far ends inside one."""

    def __init__(self, kind: str, path: str):
        self.kind, self.path, self._obj, self._errors = kind, path, None, (zlib.error,)
        if kind == "zstd":
            import zstandard  # pylint: disable=import-outside-toplevel
            self._dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
            self._errors = (zstandard.ZstdError,)

    @property
    def mid_stream(self) -> bool:
        return self._obj is not None

    def _new(self):
        return self._dctx.decompressobj() if self.kind == "zstd" else zlib.decompressobj(wbits=31)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(the bytes `data` decompresses to, whether the stream ended for good: gzip's
        trailing bytes that open no member, as Python's gzip stops at them)."""
        out = []
        while data:
            if self._obj is None:
                if self.kind == "gzip" and not GZIP_MAGIC.startswith(data[:2]):
                    return b"".join(out), True
                self._obj = self._new()
            try:
                out.append(self._obj.decompress(data))
            except self._errors as e:
                what = "zstandard" if self.kind == "zstd" else "gzip"
                raise BrokenStream(self.path, f"not a {what} stream ({e})") from None
            if not self._obj.eof:
                break
            data, self._obj = self._obj.unused_data, None
        return b"".join(out), False


class _ZstdReader(io.RawIOBase):
    """A .zst file's decompressed bytes (read through io.BufferedReader). zstandard's
    stream_reader ends a file cut inside a frame without a word; this raises BrokenStream."""

    def __init__(self, path: str):
        super().__init__()
        self._inflater = _Inflater("zstd", path)
        self._file = open(path, "rb")
        self._out, self._at = memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at == len(self._out):
            chunk = self._file.read(1 << 17)
            if not chunk:
                if self._inflater.mid_stream:
                    raise BrokenStream(self._inflater.path, "the file ends inside a zstandard "
                                       "frame: it is truncated")
                return 0
            self._out, self._at = memoryview(self._inflater.feed(chunk)[0]), 0
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = self._out[self._at:self._at + n]
        self._at += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def sample_lines(path: str, sample_bytes: int) -> tuple[list[bytes], int]:
    """The first whole lines of a file, about `sample_bytes` of text, and how many bytes of the
    file (compressed, for a .gz or .zst one) they took: for estimates per file byte."""
    kind = compression(path)
    if not kind:
        lines, used = [], 0
        with open(path, "rb") as f:
            while used < sample_bytes and (line := f.readline()):
                lines.append(line)
                used += len(line)
        return lines, used
    inflater, parts, size, consumed = _Inflater(kind, path), [], 0, 0
    with open(path, "rb") as f:
        while size < sample_bytes and (chunk := f.read(1 << 14)):
            out, ended = inflater.feed(chunk)
            parts.append(out)
            size += len(out)
            consumed += len(chunk)
            if ended:
                break
    text = b"".join(parts)
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(b"\n"):  # a line cut by the sample's end
        kept = lines[:-1]
        consumed = round(consumed * sum(map(len, kept)) / max(len(text), 1))
        lines = kept
    return lines, consumed


def parse_line(kind: str, text_key: str, where: str, raw: bytes) -> str:
    """A line's document text ('' for a blank line), the line without its newline; raises
    ValueError naming `where`."""
    try:
        # A byte-order mark (Windows editors, spreadsheet exports) starts a file, not its text.
        line = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not valid UTF-8 ({e}); repair the file, e.g. "
                         "`iconv -f utf-8 -t utf-8 -c`") from None
    if kind == "text":
        return line
    if not line.strip():
        return ""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e}); each line must be one JSON "
                         "object") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: the line is {_json_kind(record)}, not a JSON object; each "
                         f"line must be one object with a string field {text_key!r}")
    if text_key not in record:
        raise ValueError(f"{where}: no string field {text_key!r} (found {sorted(record)}); set "
                         "the domain's text_key (config.data.text_key)")
    text = record[text_key]
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text_key!r} is {_json_kind(text)}, not a string; give "
                         "every record its text as a string, or drop the record")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where}: text is not valid UTF-8 ({e}); repair the file") from None
    return text


def _json_kind(value) -> str:
    """How a JSON value reads in an error: 'null', 'a number (3)', 'a list', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    return {list: "a list", dict: "an object", str: "a string"}[type(value)]


def pieces(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """`text` cut into consecutive pieces of at most `max_chars`, each cut just before a
    whitespace character where the window has one; they join back to `text`."""
    out, start = [], 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = max(text.rfind(" ", start + 1, end), text.rfind("\n", start + 1, end))
        cut = cut if cut > start else end
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def split_files(pattern: str, split: str, unsplit: str) -> list[str] | None:
    """The sorted local files of `split` (None: the pattern serves no such split)."""
    if "{split}" in pattern:
        return sorted(glob.glob(pattern.format(split=split)))
    return sorted(glob.glob(pattern)) if split == unsplit else None


def _lines(path: str) -> Iterator[tuple[str, bytes]]:
    """(path:line, the line without its newline) of one file; a compressed file that breaks
    raises BrokenStream naming the file and the last line read."""
    lineno, what = 0, {"gzip": "gzip", "zstd": "zstandard"}.get(compression(path), "")
    try:
        with open_lines(path) as f:
            for lineno, raw in enumerate(f, start=1):
                yield f"{path}:{lineno}", raw.rstrip(b"\n")
    except (BrokenStream, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise BrokenStream(path, f"unreadable after line {lineno}, not a whole {what} file "
                           f"({getattr(e, 'reason', e)}): download or compress it again") \
            from None


def check(name: str, kind: str, pattern: str, split: str, text_key: str,
          unsplit: str = "train") -> list[str]:
    """Every problem of one split of a domain's files: no files, all empty, no document, or
    bad lines (the first MAX_REPORTED); [] when every record reads."""
    where = f"domain {name!r}"
    files = split_files(pattern, split, unsplit)
    if files is None:
        return [f"{where}: pattern {pattern!r} has no '{{split}}' placeholder, so it serves only "
                f"{unsplit!r}, not {split!r}; write the pattern with {{split}} (e.g. "
                "'dir/{split}-*.jsonl') to give the domain that split, or evaluate the files as "
                "they are with config.eval.domains"]
    if not files:
        shown = pattern.format(split=split) if "{split}" in pattern else pattern
        return [f"{where}: no files match {shown!r} (split {split!r}); build the corpus first "
                "(data/corpus.py) or fix the domain's glob / config.data.data_dir"]
    if all(os.path.getsize(f) == 0 for f in files):
        return [f"{where}: the {split!r} files matching {pattern!r} are all empty ({files}): "
                "rebuild them or remove the domain"]
    problems, documents = [], 0
    for path in files:
        try:
            for at, raw in _lines(path):
                try:
                    documents += bool(parse_line(kind, text_key, at, raw))
                except ValueError as e:
                    problems.append(f"{where}: {e}")
                    if len(problems) == MAX_REPORTED:
                        break
        except BrokenStream as e:
            problems.append(f"{where}: {e}")
        if len(problems) >= MAX_REPORTED:
            problems.append(f"{where}: (more bad lines may follow; fix these first)")
            break
    if not problems and not documents:
        problems.append(f"{where}: the {split!r} files matching {pattern!r} hold no document "
                        "(all empty or blank): fill them or remove the domain")
    return problems


def remote(pattern: str) -> bool:
    """A pattern on a remote file system (gs://, s3://): read by TensorFlow, not checked here."""
    return "://" in pattern



def on_the_fly_problems(name: str, pattern: str) -> list[str]:
    """Why the on-the-fly tf.data pipeline (data/tasks.py) cannot read a domain's files: it
    reads plain and gzipped lines, not zstandard (.zst) ones, which are read through the
    prepared token store. [] when it can. Looks at the pattern and at the local files it
    matches in any split (a glob such as 'dir/*' may match .zst files)."""
    files = [pattern] if remote(pattern) else glob.glob(pattern.replace("{split}", "*"))
    zst = [f for f in [pattern] + files if compression(f) == "zstd"]
    if not zst:
        return []
    return [f"domain {name!r}: {zst[-1]} is zstandard-compressed (.zst), which the on-the-fly "
            "pipeline (tf.data's TextLineDataset) does not read: tokenize the domains once into "
            "the prepared token store (`python main.py --mode=prepare --config=CONFIG`) and "
            "train from the store, or decompress the files (`zstd -d`)"]
