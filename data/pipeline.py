"""What a run builds its data from: the train mixer and the eval batches of seqio domains.

This module imports no TensorFlow at load time; the functions that build tf.data pipelines
import `data.tasks` when called. Domains are `data.domains` specs; weights are anything
`data.mixing.parse_weights` reads; `seed` seeds the domain draws and each domain's shuffle.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from data.domains import DomainSpec, parse_domain
from data.mixing import BATCH_KEYS, Mixer, pad_rows, parse_weights, rows_per_process


def natural_token_counts(specs: Sequence[DomainSpec], vocab_path: str | None,
                         sample_bytes: int = 1 << 18) -> np.ndarray:
    """Estimated training tokens per domain: the train files' bytes times tokens per byte
    measured on the first `sample_bytes` of each domain's first file (vocab_path: a
    SentencePiece model, or None for byte tokens; a .gz file counts its compressed bytes,
    the sample's tokens per compressed byte measured alike). Reads no TensorFlow; about a
    second."""
    import glob
    import json

    from data import records

    sp = None
    if vocab_path is not None:
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=str(vocab_path))
    counts = []
    for spec in specs:
        if spec.kind == "tfds":
            raise ValueError(f"domain {spec.name!r} is a TFDS dataset: natural token counts "
                             "are only estimated for jsonl / text files; give weights instead")
        files = sorted(glob.glob(spec.pattern.replace("{split}", "train")))
        if not files:
            raise FileNotFoundError(f"domain {spec.name!r}: no train files match "
                                    f"{spec.pattern!r}; build the corpus or fix the glob")
        raw_lines, used = records.sample_lines(files[0], sample_bytes)
        lines = [line.decode("utf-8", errors="replace") for line in raw_lines]
        texts = [json.loads(l)[spec.text_key] for l in lines if l.strip()] \
            if spec.kind == "jsonl" else lines
        tokens = sum(len(sp.encode(t)) if sp else len(t.encode("utf-8")) for t in texts)
        counts.append(sum(os.path.getsize(p) for p in files) * tokens / max(used, 1))
    return np.asarray(counts, np.float64)


def _resolve(domains: Sequence[DomainSpec | str], data_dir: str) -> list[DomainSpec]:
    return [d if isinstance(d, DomainSpec) else parse_domain(d, data_dir) for d in domains]


def stream_seed(seed: int, domain_index: int) -> int:
    """Distinct, reproducible shuffle seed per domain."""
    return int(np.random.SeedSequence([seed, domain_index]).generate_state(1)[0])


def make_train_iter(domains: Sequence[DomainSpec | str], vocab: Any, seq_len: int,
                    global_batch: int, weights: Any = "uniform", seed: int = 0,
                    process_index: int = 0, process_count: int = 1, data_dir: str = "",
                    shuffle_buffer_size: int = 1024) -> Mixer:
    """The endless training iterator: this process's rows of each global batch.

    Domains are specs or config entries (see `parse_domain`); `domain_id` indexes this
    list. Each process reads shard `process_index` of `process_count` of every domain.
    """
    from data import tasks  # TensorFlow, only when a pipeline is built

    specs = _resolve(domains, data_dir)
    names = [s.name for s in specs]
    w = parse_weights(weights, names)
    rows_per_process(global_batch, process_count)
    streams = [tasks.RowStream(s, vocab, seq_len, split="train", seed=stream_seed(seed, i),
                               shard_index=process_index, shard_count=process_count,
                               shuffle_buffer_size=shuffle_buffer_size)
               for i, s in enumerate(specs)]
    return Mixer(streams, names, global_batch=global_batch, weights=w, seed=seed,
                 process_index=process_index, process_count=process_count)


def make_eval_batches(domains: Sequence[DomainSpec | str], vocab: Any, seq_len: int,
                      global_batch: int, max_rows_per_domain: int, process_index: int = 0,
                      process_count: int = 1, data_dir: str = "",
                      split: str = "validation") -> dict[str, list[dict[str, np.ndarray]]]:
    """Per domain, this process's rows of the first ceil(N/B) global eval batches.

    N = min(rows in the split, max_rows_per_domain). Every process reads the whole
    (bounded) split in file order and keeps its own rows, so all processes agree on the
    number of batches; the last batch is padded with loss_mask-0 rows.
    """
    from data import tasks  # TensorFlow, only when a pipeline is built

    out = {}
    for d, spec in enumerate(_resolve(domains, data_dir)):
        rows = tasks.eval_rows(spec, vocab, seq_len, max_rows_per_domain, split)
        stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {
            k: np.zeros((0, seq_len), np.float32 if k == "loss_mask" else np.int32)
            for k in BATCH_KEYS}
        out[spec.name] = eval_batches(stacked, d, global_batch, process_index, process_count)
    return out


def eval_batches(rows: dict[str, np.ndarray], domain_index: int, global_batch: int,
                 process_index: int = 0, process_count: int = 1) -> list[dict[str, np.ndarray]]:
    """Stacked eval rows -> this process's rows of each global batch, the last padded with
    loss_mask-0 rows, tagged with `domain_index`."""
    b = rows_per_process(global_batch, process_count)
    n, seq_len = rows["targets"].shape
    batches = []
    for j in range(math.ceil(n / global_batch)):
        start = j * global_batch + process_index * b
        mine = [{k: v[i] for k, v in rows.items()} for i in range(start, min(start + b, n))]
        mine = pad_rows(mine, b, seq_len)
        batch = {k: np.stack([r[k] for r in mine]) for k in mine[0]}
        batch["domain_id"] = np.full(b, domain_index, np.int32)
        batches.append(batch)
    return batches


def eval_bytes(domains: Sequence[DomainSpec | str], vocab: Any, seq_len: int,
               max_rows_per_domain: int, data_dir: str = "",
               split: str = "validation") -> dict[str, int]:
    """Per domain, the UTF-8 bytes of the text its eval rows score (every process's rows: the
    rows of `make_eval_batches`), for bits per byte, the figure that compares runs across
    tokenizers. Each document segment's scored targets are decoded by the tokenizer and
    counted; special tokens (EOS) decode to nothing. (A SentencePiece segment cut mid-document
    loses its first piece's leading space: under one byte a row.)"""
    from data import tasks  # TensorFlow, only when a pipeline is built

    out = {}
    for spec in _resolve(domains, data_dir):
        rows = tasks.eval_rows(spec, vocab, seq_len, max_rows_per_domain, split)
        out[spec.name] = scored_bytes(
            {k: np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}, vocab)
    return out


def scored_bytes(rows: dict[str, np.ndarray], vocab: Any) -> int:
    """The UTF-8 bytes of the text stacked rows score: each document segment's scored targets
    decoded by the tokenizer (EOS and other special tokens decode to nothing)."""
    total = 0
    for i in range(len(rows.get("targets", ()))):
        scored = rows["loss_mask"][i] > 0
        for segment in np.unique(rows["segment_ids"][i][scored]):
            ids = rows["targets"][i][scored & (rows["segment_ids"][i] == segment)]
            total += len(vocab.decode([int(t) for t in ids]).encode("utf-8"))
    return total
