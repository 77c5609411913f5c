"""The prepared token store: every domain tokenized once, read by row index.

A RegMix sweep of 48 proxies or a comparison of 4 arms x 5 seeds would otherwise tokenize the
same corpus 20-48 times and build tf.data pipelines for each run. `python main.py
--mode=prepare --config=...` writes, for each domain and split of the config:

  STORE/DOMAIN/SPLIT/tokens.bin   the documents' ids, each followed by EOS, back to back
                                  (little-endian uint16 when the vocabulary fits, else uint32)
  STORE/DOMAIN/SPLIT/meta.json    tokens, documents, dtype, the tokens' BLAKE2b (the corpus
                                  fingerprint, data/fingerprint.py, without rereading them), the
                                  tokenizer's identity (kind, path, sha256, ids), the sources;
                                  written last: a split without it is unfinished, never read

Inputs: JSONL (also .gz and .zst), text lines, parquet, Hugging Face datasets saved with
`save_to_disk`, and locally built TFDS datasets. Preparation runs on Ray Data (already the
project's engine for sweeps across hosts): one pass over every file of every unfinished split,
each file read and tokenized by one of a pool of actors (one a core), blocks kept in order so
the store is the same on every run; locally by default, on a cluster with
`config.data.prepare_address`. The driver appends the blocks to tokens.bin, so a corpus beyond
one machine's disk needs a shared file system. An interrupted preparation leaves
`tokens.bin.partial` and no meta.json: the next one redoes that split and skips finished ones.

Reading: row r of a split at length L is tokens[r*L : (r+1)*L] (the last partial row is
dropped), laid out as the on-the-fly pipeline lays out packed rows (data/tasks.py): a segment
starts at the row's start and after every EOS, each segment's positions start at 0 and its
first input is the vocabulary's start id, every token is a target. A document longer than a
row continues in the next row as a new segment, as the on-the-fly chunks do. Reads are numpy
slices of a memory map: no TensorFlow, and a domain's state is one integer (see IndexedRows).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Any, Iterator, Sequence

import numpy as np

FORMAT = 1
META = "meta.json"
TOKENS = "tokens.bin"


def split_dir(root: str, domain: str, split: str) -> str:
    return os.path.join(root, domain, split)


def is_complete(root: str, domain: str, split: str) -> bool:
    return os.path.exists(os.path.join(split_dir(root, domain, split), META))


# Reading documents: one unit of work (a file, an HF dataset) -> its texts, every bad record
# named by file, line (or row) and field.

def units(spec, split: str) -> list[dict] | None:
    """The read tasks of one split of a domain (None: the domain serves no such split)."""
    from data import records
    if spec.kind == "tfds":  # a locally built TFDS dataset: one task per split
        import tensorflow_datasets as tfds
        builder = tfds.builder(spec.pattern, data_dir=spec.tfds_data_dir)
        return [{"kind": "tfds", "path": spec.pattern, "split": split,
                 "data_dir": spec.tfds_data_dir or ""}] if split in builder.info.splits else None
    if spec.kind == "hf":
        import datasets
        if not os.path.isdir(spec.pattern):
            raise FileNotFoundError(f"domain {spec.name!r}: {spec.pattern!r} is not a directory "
                                    "saved by datasets' save_to_disk")
        loaded = datasets.load_from_disk(spec.pattern)
        if isinstance(loaded, datasets.DatasetDict):
            return [{"kind": "hf", "path": spec.pattern, "split": split}] \
                if split in loaded else None
        return [{"kind": "hf", "path": spec.pattern, "split": ""}] \
            if split == spec.unsplit else None
    files = records.split_files(spec.pattern, split, spec.unsplit)
    if files is None:
        return None
    return [{"kind": spec.kind, "path": p, "split": split} for p in files]


def read_unit(unit: dict, text_key: str) -> Iterator[str]:
    """The documents of one read task, in order; empty texts are not documents."""
    kind, path = unit["kind"], unit["path"]
    if kind in ("jsonl", "text"):
        from data import records
        with records.open_lines(path) as f:
            for lineno, raw in enumerate(f, start=1):
                text = records.parse_line(kind, text_key, f"{path}:{lineno}", raw.rstrip(b"\n"))
                if text:
                    yield text
    elif kind == "parquet":
        import pyarrow.parquet as pq
        table = pq.ParquetFile(path)
        if text_key not in table.schema_arrow.names:
            raise ValueError(f"{path}: no column {text_key!r} (columns: "
                             f"{table.schema_arrow.names}); set config.data.text_key")
        row = 0
        for batch in table.iter_batches(columns=[text_key], batch_size=4096):
            for text in batch.column(0).to_pylist():
                row += 1
                if not isinstance(text, str):
                    raise ValueError(f"{path}: row {row}: field {text_key!r} is "
                                     f"{'null' if text is None else type(text).__name__}, not "
                                     "a string")
                if text:
                    yield text
    elif kind == "hf":
        import datasets
        ds = datasets.load_from_disk(path)
        ds = ds[unit["split"]] if unit["split"] else ds
        if text_key not in ds.column_names:
            raise ValueError(f"{path}: no column {text_key!r} (columns: {ds.column_names}); "
                             "set config.data.text_key")
        for row, text in enumerate(ds[text_key], start=1):
            if not isinstance(text, str):
                raise ValueError(f"{path}: row {row}: field {text_key!r} is "
                                 f"{'null' if text is None else type(text).__name__}, not a "
                                 "string")
            if text:
                yield text
    elif kind == "tfds":
        import tensorflow_datasets as tfds
        ds = tfds.builder(path, data_dir=unit["data_dir"] or None).as_dataset(
            split=unit["split"], shuffle_files=False)
        for example in tfds.as_numpy(ds):
            if text_key not in example:
                raise ValueError(f"TFDS {path}: no feature {text_key!r} (features: "
                                 f"{sorted(example)}); set config.data.text_key")
            text = example[text_key].decode("utf-8")
            if text:
                yield text
    else:
        raise ValueError(f"{path}: a {kind!r} domain cannot be prepared (jsonl, text, parquet, "
                         "hf or tfds)")


# Preparation, on Ray Data.

def _dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


class _ReadTokenize:
    """Ray Data's map_batches callable over read tasks (one a call): reads the task's
    documents and yields their ids, each document closed by EOS, in flat chunks of about
    `CHUNK_DOCUMENTS` documents (small ordered blocks; no row per document)."""
    CHUNK_DOCUMENTS = 1024

    def __init__(self, vocab_args: dict, dtype: str, text_key: str):
        from data import vocabulary
        self.vocab, self.dtype, self.text_key = vocabulary.load(**vocab_args), dtype, text_key

    def __call__(self, batch: dict) -> Iterator[dict]:
        for key, unit in zip(batch["key"], batch["unit"]):
            texts = []
            for text in read_unit(json.loads(unit), self.text_key):
                texts.append(text)
                if len(texts) == self.CHUNK_DOCUMENTS:
                    yield self._chunk(key, texts)
                    texts = []
            if texts:
                yield self._chunk(key, texts)

    def _chunk(self, key, texts: list[str]) -> dict:
        ids = self.vocab.encode_batch(texts)
        flat = np.fromiter((i for doc in ids for i in (*doc, self.vocab.eos_id)), self.dtype,
                           count=sum(len(d) + 1 for d in ids))
        return {"key": np.array([key]), "tokens": [flat], "documents": np.array([len(ids)])}


def prepare(specs: Sequence, splits: Sequence[str], root: str, vocab_args: dict, *,
            text_key: str = "text", address: str = "", num_cpus: int | None = None,
            log=print) -> dict:
    """Writes every (domain, split) of `specs` that is not complete yet; returns
    {domain: {split: meta}} for all of them. `vocab_args` go to data.vocabulary.load. One Ray
    Data pass reads and tokenizes every file of every unfinished split, in order; each split
    is finished (renamed, its meta.json written) as soon as its last block is written."""
    import ray
    from data import vocabulary
    vocab = vocabulary.load(**vocab_args)
    dtype = _dtype(vocab.vocab_size)
    todo, out = [], {}
    for spec in specs:
        for split in splits:
            unit_list = units(spec, split)
            if unit_list is None:
                continue
            if is_complete(root, spec.name, split):
                meta = read_meta(root, spec.name, split)
                vocabulary.check_identity(meta["tokenizer"], vocab,
                                          f"the store's {spec.name}/{split}")
                out.setdefault(spec.name, {})[split] = meta
            elif not unit_list:
                raise FileNotFoundError(f"domain {spec.name!r}: no {split!r} files match "
                                        f"{spec.pattern!r}")
            else:
                todo.append((spec, split, unit_list))
    if not todo:
        return out
    log(f"prepare {len(todo)} split(s) of {len({s.name for s, _, _ in todo})} domain(s), "
        f"{sum(len(u) for _, _, u in todo)} file(s), into {root}")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address or None, num_cpus=None if address else num_cpus,
                 include_dashboard=False, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the same store on every run
        context.enable_progress_bars = False
        items = [{"key": k, "unit": json.dumps(u)} for k, (_, _, unit_list) in enumerate(todo)
                 for u in unit_list]
        workers = max(1, int(ray.available_resources().get("CPU", 1)))
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ReadTokenize, batch_size=1, fn_constructor_args=(vocab_args, dtype, text_key),
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers))
        writer = None
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for key, flat, n in zip(batch["key"], batch["tokens"], batch["documents"]):
                    if writer is None or writer.key != key:
                        if writer is not None:
                            writer.finish(out)
                        spec, split, unit_list = todo[int(key)]
                        writer = _SplitWriter(int(key), spec, split, unit_list, root, dtype,
                                              vocab)
                    writer.write(np.ascontiguousarray(flat, dtype), int(n))
        except ray.exceptions.RayTaskError as e:  # the reader's own error names file and line
            cause = e.cause if isinstance(e.cause, Exception) else e
            where = f"domain {writer.spec.name!r}, split {writer.split!r}: " if writer else ""
            raise type(cause)(f"{where}{cause}") from None
        if writer is not None:
            writer.finish(out)
        for spec, split, _ in todo:  # a split whose files hold no document wrote no block
            if split not in out.get(spec.name, {}):
                raise ValueError(f"domain {spec.name!r}: the {split!r} files of "
                                 f"{spec.pattern!r} hold no document")
    finally:
        if started:
            ray.shutdown()
    return out


class _SplitWriter:
    """tokens.bin.partial of one split, its counts and digest; `finish` renames it and writes
    meta.json, last."""

    def __init__(self, key: int, spec, split: str, unit_list: list[dict], root: str,
                 dtype: str, vocab):
        self.key, self.spec, self.split, self.units = key, spec, split, unit_list
        self.dtype, self.vocab = dtype, vocab
        self.where = split_dir(root, spec.name, split)
        os.makedirs(self.where, exist_ok=True)
        self.partial = os.path.join(self.where, TOKENS + ".partial")
        self.file = open(self.partial, "wb")
        self.tokens = self.documents = 0
        self.digest = hashlib.blake2b(digest_size=16)

    def write(self, flat: np.ndarray, documents: int) -> None:
        data = flat.tobytes()
        self.file.write(data)
        self.digest.update(data)
        self.tokens, self.documents = self.tokens + len(flat), self.documents + documents

    def finish(self, out: dict) -> None:
        self.file.close()
        os.replace(self.partial, os.path.join(self.where, TOKENS))
        meta = {"format": FORMAT, "domain": self.spec.name, "split": self.split,
                "tokens": self.tokens, "documents": self.documents, "dtype": self.dtype,
                "blake2b": self.digest.hexdigest(), "tokenizer": self.vocab.identity(),
                "sources": [_source(u) for u in self.units]}
        tmp = os.path.join(self.where, META + ".tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, os.path.join(self.where, META))  # last: the split is complete
        out.setdefault(self.spec.name, {})[self.split] = meta


def _source(unit: dict) -> dict:
    path = unit["path"]
    if unit["kind"] == "tfds":
        return {"path": path, "split": unit["split"], "data_dir": unit["data_dir"]}
    size = (os.path.getsize(path) if os.path.isfile(path) else
            sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, "**"), recursive=True)
                if os.path.isfile(p)))
    return {"path": os.path.abspath(path), "split": unit["split"], "bytes": size}


# Reading the store.

def read_meta(root: str, domain: str, split: str) -> dict:
    path = os.path.join(split_dir(root, domain, split), META)
    if not os.path.exists(path):
        partial = os.path.exists(os.path.join(split_dir(root, domain, split), TOKENS + ".partial"))
        raise FileNotFoundError(
            f"the token store {root!r} has no finished {domain}/{split}"
            + (" (a preparation was interrupted there)" if partial else "")
            + ": run `python main.py --mode=prepare` with this config first")
    with open(path) as f:
        return json.load(f)


@dataclasses.dataclass
class Split:
    """One prepared (domain, split): its tokens as a memory map, cut into rows of `length`."""
    meta: dict
    tokens: np.ndarray
    length: int
    start_id: int
    eos_id: int

    @classmethod
    def open(cls, root: str, domain: str, split: str, length: int, start_id: int,
             eos_id: int) -> "Split":
        meta = read_meta(root, domain, split)
        path = os.path.join(split_dir(root, domain, split), TOKENS)
        tokens = np.memmap(path, dtype=meta["dtype"], mode="r")
        if len(tokens) != meta["tokens"]:
            raise ValueError(f"{path} holds {len(tokens)} tokens, its meta.json says "
                             f"{meta['tokens']}: the store is damaged; delete {domain}/{split} "
                             "and prepare again")
        return cls(meta, tokens, length, start_id, eos_id)

    @property
    def num_rows(self) -> int:
        return len(self.tokens) // self.length

    def targets(self, indices: Sequence[int]) -> np.ndarray:
        """The tokens of the rows at `indices` (each in [0, num_rows)), int32 [R, L]."""
        L = self.length
        idx = np.asarray(indices, np.int64).reshape(-1, 1)
        return self.tokens[idx * L + np.arange(L)].astype(np.int32)  # one memmap gather

    def rows(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """The packed rows at `indices`, stacked: inputs, targets, segment_ids, positions,
        loss_mask."""
        return layout(self.targets(indices), self.start_id, self.eos_id)


def layout(targets_RxL: np.ndarray, start_id: int, eos_id: int) -> dict[str, np.ndarray]:
    """Rows of consecutive tokens -> the packed-row batch keys: a segment starts at each row's
    start and after each EOS; its positions count from 0 and its first input is `start_id`."""
    rows, L = targets_RxL.shape
    after_eos = np.zeros((rows, L), bool)
    after_eos[:, 1:] = targets_RxL[:, :-1] == eos_id
    starts = after_eos.copy()
    starts[:, 0] = True
    segment_ids = np.cumsum(starts, axis=1, dtype=np.int32)
    columns = np.broadcast_to(np.arange(L, dtype=np.int32), (rows, L))
    positions = columns - np.maximum.accumulate(np.where(starts, columns, 0), axis=1)
    inputs = np.empty_like(targets_RxL)
    inputs[:, 1:] = targets_RxL[:, :-1]
    inputs[starts] = start_id
    return {"inputs": inputs, "targets": targets_RxL, "segment_ids": segment_ids,
            "positions": positions.astype(np.int32),
            "loss_mask": np.ones((rows, L), np.float32)}


class IndexedRows:
    """A domain's endless training rows by global index: row n of the stream is row
    perm_e(n mod R) of the split, e = n // R its epoch and perm_e a permutation seeded by
    (seed, e). The stream's state is the number of rows the whole run (every process) has
    drawn from it, kept by the mixer (data/mixing.py), so any number of processes reads the
    same rows from the same checkpoint."""
    indexed = True  # read by global index (data/mixing.py)

    def __init__(self, split: Split, seed: int):
        if split.num_rows == 0:
            raise ValueError(f"domain {split.meta['domain']!r} has {split.meta['tokens']} "
                             f"prepared tokens, fewer than one row of {split.length}")
        self.split, self.seed = split, seed
        self._epoch, self._perm = -1, None

    def layout(self, targets_RxL: np.ndarray) -> dict[str, np.ndarray]:
        """Tokens of this vocabulary's rows -> the packed-row batch keys. The mixer lays out a
        whole batch at once (one call, not one per domain: 1.7x the read rate here)."""
        return layout(targets_RxL, self.split.start_id, self.split.eos_id)

    def targets(self, indices: Sequence[int]) -> np.ndarray:
        """The tokens of stream rows `indices`, int32 [R, L]."""
        n_rows = self.split.num_rows
        epochs, ks = np.divmod(np.asarray(indices, np.int64), n_rows)
        picked = np.empty(len(ks), np.int64)
        for epoch in np.unique(epochs):  # a batch spans at most two epochs
            if epoch != self._epoch:
                dtype = np.uint32 if n_rows < 1 << 32 else np.uint64
                self._perm = np.random.default_rng([self.seed, int(epoch)]).permutation(
                    n_rows).astype(dtype)
                self._epoch = epoch
            at = epochs == epoch
            picked[at] = self._perm[ks[at]]
        return self.split.targets(picked)


def shapes(meta_by_domain: dict) -> dict[str, Any]:
    """A summary line per (domain, split): tokens and documents."""
    return {f"{d}/{s}": {"tokens": m["tokens"], "documents": m["documents"]}
            for d, splits in meta_by_domain.items() for s, m in splits.items()}
