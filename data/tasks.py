"""seqio Tasks, one per domain, and the per-process packed row stream built on them.

A domain's Task reads its source (JSONL or text-line files, or a local TFDS dataset),
tokenizes with the given vocabulary (EOS appended to every document), and splits every
document into chunks of at most L tokens, so long documents are kept whole across rows
instead of being truncated (seqio ships no concatenate-then-split preprocessor). The
chunks are then packed into rows of L by seqio's `LMFeatureConverter(pack=True)`, which
gives the segment ids and positions; `RowStream` maps them onto the training batch keys
(inputs, targets, segment_ids, positions, loss_mask).

Bad input, decided: a line that is not valid UTF-8 (or, in JSONL, not a JSON object with a
string under the text key) is a clear error naming the file and line, raised when the
line is read. Skipping would silently change what a domain contains; the fix is to
repair the file (e.g. `iconv -f utf-8 -t utf-8 -c`). Blank lines and empty texts are
dropped (they are not documents). Missing files, files that are all empty, or a domain
that yields no document are a ValueError naming the domain and the glob.

Stream state (why tf.data iterator checkpoints): resuming by counting rows and skipping
them costs time linear in the rows consumed: measured 4.7 s per 10k rows (6 domains,
L=128, bytes, 2 cores), so ~8 min per million rows and hours for a long run. A
`tf.train.Checkpoint` of the iterator restores exactly (shuffle buffer and file positions
included) in ~2 s at 10k rows, independent of how far the run got, on top of the
pipeline build (~9 s for 6 domains) that any resume pays. Its cost is size: buffered
texts, chunks and packed rows are in it, ~1.5 MB of JSON per domain at L=128 after zlib
(`shuffle_buffer_size` and `_LINES_PER_PARSE` bound part of it). The files are
zlib-compressed and base64'd into a JSON-serializable dict so they ride in the run's
orbax checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tempfile
import zlib
from typing import Any, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from data import native_log, records
from data.domains import DomainSpec

with native_log.quiet():  # TensorFlow's C++ start-up lines
    import seqio
    import tensorflow as tf

try:  # the input pipeline must not take accelerator memory
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TF's devices were already initialized by the caller; leave them
    pass

TASK_PREFIX = "dmix"
_LINES_PER_PARSE = 32  # lines per Python parse call: amortizes the call, yet keeps the
# pending texts (saved in the iterator checkpoint, per open file) small


def _vocab_key(vocab: seqio.Vocabulary) -> str:
    """A string that identifies a vocabulary, for the Task name hash."""
    model = getattr(vocab, "sentencepiece_model_file", "")
    return f"{type(vocab).__name__}:{model}:{vocab.extra_ids}"


def task_name(spec: DomainSpec, vocab: seqio.Vocabulary) -> str:
    """The unique registry name of a domain's Task: same spec and vocab, same name."""
    digest = hashlib.sha1(f"{spec!r}|{_vocab_key(vocab)}".encode()).hexdigest()[:12]
    return f"{TASK_PREFIX}_{spec.name}_{digest}"


def _parse_lines(kind: str, text_key: str, filename: bytes, linenos: np.ndarray,
                 lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw lines -> (document pieces, whether each is its document's last); a blank line is
    one empty piece. Raises on a bad line (data.records)."""
    texts, last = [], []
    for lineno, raw in zip(linenos, lines):
        parts = records.pieces(records.parse_line(
            kind, text_key, f"{filename.decode(errors='replace')}:{lineno}", raw))
        texts += [p.encode("utf-8") for p in parts]
        last += [False] * (len(parts) - 1) + [True]
    return np.array(texts, dtype=object), np.array(last, dtype=bool)


def _file_reader(kind: str, text_key: str, compression: str):
    """A seqio `read_file_fn`: a dataset of file names -> {"targets": document piece,
    "last": whether it ends its document}."""

    def read(filename: tf.Tensor) -> tf.data.Dataset:
        lines = tf.data.TextLineDataset(filename, compression_type=compression)
        lines = lines.enumerate(start=1).batch(_LINES_PER_PARSE)

        def parse(linenos, batch):
            texts, last = tf.numpy_function(
                lambda f, n, b: _parse_lines(kind, text_key, f, n, b),
                [filename, linenos, batch], (tf.string, tf.bool), stateful=False)
            texts.set_shape([None])
            last.set_shape([None])
            return {"targets": texts, "last": last}

        return lines.map(parse).unbatch()

    return read


def _end_documents(dataset: tf.data.Dataset, eos_id: int) -> tf.data.Dataset:
    """EOS after each document's last piece only (the tokenizer added none)."""
    def end(ex):
        eos = tf.cast(tf.fill([tf.cast(ex["last"], tf.int32)], eos_id), ex["targets"].dtype)
        return {"targets": tf.concat([ex["targets"], eos], 0)}
    return dataset.map(end)


def _drop_empty(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.filter(lambda ex: tf.strings.length(ex["targets"]) > 0)


def split_into_chunks(dataset: tf.data.Dataset, sequence_length: dict) -> tf.data.Dataset:
    """Splits each tokenized document into consecutive chunks of at most L tokens."""
    length = sequence_length["targets"]

    def to_chunks(ex):
        tokens = ex["targets"]
        n = tf.size(tokens, out_type=tf.int64)
        splits = tf.concat([tf.range(0, n, length, dtype=tf.int64), [n]], axis=0)
        return {"targets": tf.RaggedTensor.from_row_splits(tokens, splits)}

    return dataset.map(to_chunks).unbatch()


def _split_globs(spec: DomainSpec) -> dict[str, str]:
    if "{split}" in spec.pattern:
        return {s: spec.pattern.format(split=s) for s in ("train", "validation", "test")}
    return {spec.unsplit: spec.pattern}


def register_task(spec: DomainSpec, vocab: seqio.Vocabulary) -> seqio.Task:
    """Registers (once) and returns the Task of one domain; idempotent by spec and vocab."""
    name = task_name(spec, vocab)
    if name in seqio.TaskRegistry.names():
        return seqio.TaskRegistry.get(name)
    if spec.kind == "tfds":
        source = seqio.TfdsDataSource(tfds_name=spec.pattern, tfds_data_dir=spec.tfds_data_dir)
        rekey = [lambda ds: ds.map(lambda ex: {"targets": ex[spec.text_key], "last": True})]
    else:
        source = seqio.FileDataSource(
            read_file_fn=_file_reader(spec.kind, spec.text_key,
                                      "GZIP" if records.compressed(spec.pattern) else ""),
            split_to_filepattern=_split_globs(spec))
        rekey = []
    return seqio.TaskRegistry.add(
        name,
        source=source,
        output_features={"targets": seqio.Feature(vocab, add_eos=True)},
        preprocessors=rekey + [
            _drop_empty,
            lambda ds, output_features: seqio.preprocessors.tokenize(
                ds, output_features, copy_pretokenized=False, with_eos=False),
            lambda ds: _end_documents(ds, vocab.eos_id),
            split_into_chunks,
        ],
    )


def _reason(error: tf.errors.OpError) -> str:
    """What went wrong inside a TF error: the last Python error a parse step raised (it names
    the file and line), else TF's own first line, without the graph node dump."""
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return raised[-1].split(": ", 1)[1] if raised else f"reading failed: {lines[0]}"


def _check_files(spec: DomainSpec, split: str, shard_index: int, shard_count: int) -> None:
    """Fails early, naming the domain and glob, when a split has no usable files."""
    globs = _split_globs(spec)
    if split not in globs:
        raise ValueError(
            f"domain {spec.name!r}: pattern {spec.pattern!r} has no '{{split}}' placeholder, "
            f"so it serves only {spec.unsplit!r}, not {split!r}; write the pattern with "
            "{split} (e.g. 'dir/{split}-*.jsonl') to give the domain a validation split, or "
            "evaluate the files as they are with config.eval.domains")
    pattern = globs[split]
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(
            f"domain {spec.name!r}: no files match {pattern!r} (split {split!r}); build the "
            "corpus first (data/corpus.py) or fix the domain's glob / config.data.data_dir")
    mine = files[shard_index::shard_count] if len(files) >= shard_count else files
    if all(tf.io.gfile.stat(f).length == 0 for f in mine):
        raise ValueError(
            f"domain {spec.name!r}: the files matching {pattern!r} that process "
            f"{shard_index} of {shard_count} reads are all empty ({mine}); rebuild the "
            "shards or remove the domain")


def files_signature(spec: DomainSpec, split: str) -> tuple | None:
    """The split's files as (path, bytes, mtime): the key of what a process remembers about
    them (that they hold documents, their first eval rows), so that a rewritten file is read
    again. None for a TFDS dataset, which is never remembered."""
    globs = _split_globs(spec) if spec.kind != "tfds" else {}
    if split not in globs:
        return None
    stats = [(f, tf.io.gfile.stat(f)) for f in sorted(tf.io.gfile.glob(globs[split]))]
    return tuple((f, st.length, st.mtime_nsec) for f, st in stats)


_NONEMPTY: set = set()  # (task, split, shard, shards, files) this process has read a row of
_EVAL_ROWS: dict = {}  # (task, split, seq_len, files) -> the first rows read in file order
_EVAL_ROWS_KEPT = 64  # entries: ~7 comparisons' worth of eval domains; the oldest go first


def eval_rows(spec: DomainSpec, vocab: seqio.Vocabulary, seq_len: int, max_rows: int,
              split: str = "validation") -> list[dict[str, np.ndarray]]:
    """The first `max_rows` packed rows of a split in file order (read-only arrays): every run
    of a comparison evaluates on the same rows, so a process reads them once per files."""
    files = files_signature(spec, split)
    key = (task_name(spec, vocab), split, seq_len, files)
    cached = _EVAL_ROWS.get(key)
    if cached is None or (len(cached[0]) < max_rows and not cached[1]):
        stream = RowStream(spec, vocab, seq_len, split=split, shuffle=False, repeat=False)
        rows = [row for _, row in zip(range(max_rows), stream)]
        for row in rows:
            for v in row.values():
                v.setflags(write=False)
        cached = (rows, len(rows) < max_rows)  # (rows, the split ends there)
        if files is not None:
            _EVAL_ROWS.pop(key, None)
            _EVAL_ROWS[key] = cached
            while len(_EVAL_ROWS) > _EVAL_ROWS_KEPT:
                _EVAL_ROWS.pop(next(iter(_EVAL_ROWS)))
    return cached[0][:max_rows]


class RowStream:
    """Packed rows of L tokens from one domain, for one process, as numpy dicts.

    Training streams (`repeat=True`) shuffle with `seed`, repeat forever and read shard
    `shard_index` of `shard_count` (disjoint across processes). Eval streams
    (`repeat=False, shuffle=False`) read the split once in file order.
    """

    def __init__(self, spec: DomainSpec, vocab: seqio.Vocabulary, seq_len: int, *,
                 split: str = "train", seed: int = 0, shard_index: int = 0,
                 shard_count: int = 1, shuffle: bool = True, repeat: bool = True,
                 shuffle_buffer_size: int = 1024, block_rows: int = 16):
        self.name = spec.name
        self._where = f"domain {spec.name!r} ({spec.kind} {spec.pattern!r}, split {split!r})"
        if spec.kind != "tfds":
            _check_files(spec, split, shard_index, shard_count)
        task = register_task(spec, vocab)

        def chunks(shuffle: bool, num_epochs: int | None) -> tf.data.Dataset:
            try:
                return task.get_dataset(
                    sequence_length={"targets": seq_len}, split=split, shuffle=shuffle,
                    shuffle_buffer_size=shuffle_buffer_size, seed=seed,
                    shard_info=seqio.ShardInfo(shard_index, shard_count),
                    num_epochs=num_epochs, try_in_mem_cache=False)
            except (ValueError, KeyError, tf.errors.OpError) as e:
                text = str(e) if len(str(e)) < 600 else str(e)[:600] + " [...]"
                raise ValueError(f"{self._where}: cannot read it: {text}") from e

        # An endless repeat of a source with no document would spin forever: read one first,
        # once per process for the same files (a comparison's runs read the same domains).
        seen = (task_name(spec, vocab), split, shard_index, shard_count,
                files_signature(spec, split))
        if repeat and seen not in _NONEMPTY:
            with native_log.quiet():  # the tokenizer kernel logs when it first runs
                self._check_nonempty(chunks(False, 1))
            if seen[-1] is not None:
                _NONEMPTY.add(seen)
        ds = chunks(shuffle, None if repeat else 1)
        ds = seqio.LMFeatureConverter(pack=True)(ds, {"targets": seq_len})
        ds = ds.map(lambda ex: {
            "inputs": ex["decoder_input_tokens"],
            "targets": ex["decoder_target_tokens"],
            "segment_ids": ex["decoder_segment_ids"],
            "positions": ex["decoder_positions"],
            "loss_mask": tf.cast(ex["decoder_loss_weights"], tf.float32),
        })
        options = tf.data.Options()
        options.deterministic = True
        # The parse step is a Python function; it holds no state, so saving is exact.
        options.experimental_external_state_policy = (
            tf.data.experimental.ExternalStatePolicy.IGNORE)
        # Rows leave TF in blocks: one iterator call per row cost ~2x the pipeline itself.
        self._dataset = ds.batch(block_rows).with_options(options)
        self._iterator = iter(self._dataset)
        self._block: dict[str, np.ndarray] = {}
        self._pos = 0
        self.rows = 0  # rows handed out; informational, saved in the state
        with native_log.quiet():  # the first block now, while nothing else prints
            self._fill()

    def _check_nonempty(self, dataset: tf.data.Dataset) -> None:
        try:
            empty = not list(dataset.take(1))
        except tf.errors.OpError as e:
            raise ValueError(f"{self._where}: {_reason(e)}") from None
        if empty:
            raise self._no_documents()

    def _no_documents(self) -> ValueError:
        return ValueError(f"{self._where}: yields no documents for this process; check "
                          "that the files hold non-empty texts")

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def _fill(self) -> None:
        """The next block of rows from TF (StopIteration at the end of a finite stream)."""
        try:
            block = next(self._iterator)
        except StopIteration:
            if self.rows == 0:
                raise self._no_documents() from None
            raise
        except tf.errors.OpError as e:
            raise ValueError(f"{self._where}: {_reason(e)}") from None
        self._block = {k: v.numpy() for k, v in block.items()}
        self._pos = 0

    def __next__(self) -> dict[str, np.ndarray]:
        if self._pos == len(self._block.get("inputs", ())):
            self._fill()
        row = {k: v[self._pos] for k, v in self._block.items()}
        self._pos += 1
        self.rows += 1
        return row

    def get_state(self) -> dict[str, Any]:
        """The iterator's tf checkpoint files and the rows fetched but not yet handed out.

        Both zlib-compressed (token arrays shrink ~15x) and base64'd.
        """
        with tempfile.TemporaryDirectory() as tmp:
            tf.train.Checkpoint(iterator=self._iterator).write(os.path.join(tmp, "it"))
            files = {f: _pack_bytes(open(os.path.join(tmp, f), "rb").read())
                     for f in sorted(os.listdir(tmp))}
        pending = io.BytesIO()
        np.savez(pending, **{k: v[self._pos:] for k, v in self._block.items()})
        return {"kind": "tf_iterator", "rows": self.rows, "files": files,
                "pending": _pack_bytes(pending.getvalue())}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "tf_iterator":
            raise ValueError(f"{self._where}: state kind {state.get('kind')!r} is not "
                             "'tf_iterator'; it was saved by a different stream type")
        with tempfile.TemporaryDirectory() as tmp:
            for f, data in state["files"].items():
                with open(os.path.join(tmp, os.path.basename(f)), "wb") as fh:
                    fh.write(_unpack_bytes(data))
            tf.train.Checkpoint(iterator=self._iterator).read(
                os.path.join(tmp, "it")).assert_consumed()
        with np.load(io.BytesIO(_unpack_bytes(state["pending"]))) as pending:
            self._block = {k: pending[k] for k in pending.files}
        self._pos = 0
        self.rows = int(state["rows"])


def _pack_bytes(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 1)).decode("ascii")


def _unpack_bytes(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))

