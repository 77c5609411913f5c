"""A held-out cloze task built from the corpus: predict the last word of a sentence.

LAMBADA-style: the context is the document's text up to a sentence's final word (left-
truncated to fit the row), the target is that word with its leading space, and the loss mask
covers the target's tokens only. Examples come from a domain's validation split (never trained
on), read from its last document backwards so they stay clear of the per-domain eval rows,
which take the split's first rows in file order. Rows are in the standard batch format.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Callable, Iterable, Iterator

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LAST_WORD = re.compile(r"^(.*\S)\s+([A-Za-z]{3,})[.!?]['\"]?$")


def cloze_pairs(documents: Iterable[str], min_context_words: int = 8,
                every: int = 3) -> Iterator[tuple[str, str]]:
    """(context, target word) pairs: of each document's sentences that end in a word of >= 3
    letters after >= `min_context_words` words of document text, every `every`-th one."""
    for doc in documents:
        text = " ".join(doc.split())
        seen = 0
        for match in _SENTENCE_END.finditer(text + " "):
            m = _LAST_WORD.match(text[:match.start()])
            if m is None or len(m.group(1).split()) < min_context_words:
                continue
            seen += 1
            if (seen - 1) % every == 0:
                yield m.group(1), m.group(2)


def cloze_row(context: str, target: str, encode: Callable[[str], list], seq_len: int) -> dict:
    """One row: the context's last tokens, then " target"; loss on the target tokens only."""
    target_ids = list(encode(" " + target))
    if not 0 < len(target_ids) < seq_len:
        raise ValueError(f"target {target!r} takes {len(target_ids)} tokens; seq_len={seq_len} "
                         "must leave room for context")
    tokens = (list(encode(context))[-(seq_len - len(target_ids)):] + target_ids)
    n = len(tokens)
    targets = np.zeros(seq_len, np.int32)
    targets[:n] = tokens
    inputs = np.zeros(seq_len, np.int32)
    inputs[1:n] = tokens[:-1]
    loss_mask = np.zeros(seq_len, np.float32)
    loss_mask[n - len(target_ids):n] = 1.0
    segment_ids = np.zeros(seq_len, np.int32)
    segment_ids[:n] = 1
    positions = np.zeros(seq_len, np.int32)
    positions[:n] = np.arange(n)
    return {"inputs": inputs, "targets": targets, "segment_ids": segment_ids,
            "positions": positions, "loss_mask": loss_mask}


def _validation_documents(data_dir: str, domain: str, text_key: str) -> list[str]:
    pattern = os.path.join(data_dir, "corpus", domain, "validation-*.jsonl")
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no validation files match {pattern}: build the corpus "
                                f"(python -m data.corpus --data_dir={data_dir}) or pick another "
                                "cloze domain")
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs += [json.loads(line)[text_key] for line in f if line.strip()]
    return docs[::-1]


def cloze_rows(data_dir: str, domain: str, encode: Callable[[str], list], seq_len: int,
               count: int, skip: int = 0, text_key: str = "text") -> list[dict]:
    """Rows `skip` .. `skip + count` of the domain's cloze examples (disjoint ranges give
    disjoint sets, e.g. a reference set and an evaluation set)."""
    rows = []
    for i, (context, target) in enumerate(cloze_pairs(
            _validation_documents(data_dir, domain, text_key))):
        if i >= skip:
            rows.append(cloze_row(context, target, encode, seq_len))
        if len(rows) == count:
            return rows
    raise ValueError(f"the {domain!r} validation split has {len(rows) + skip} cloze examples, "
                     f"fewer than the {count + skip} asked for: ask for fewer")


def stack(rows: list[dict], domain_id: int = 0) -> dict:
    """Rows -> one batch dict with `domain_id`."""
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    batch["domain_id"] = np.full(len(rows), domain_id, np.int32)
    return batch


def batches(rows: list[dict], global_batch: int, process_index: int = 0,
            process_count: int = 1) -> list[dict]:
    """This process's slice of each global batch of `rows`, the last padded with rows that
    have no loss tokens (the eval format of `data.pipeline.make_eval_batches`)."""
    seq_len = len(rows[0]["targets"])
    empty = {k: np.zeros(seq_len, v.dtype) for k, v in rows[0].items()}
    rows = rows + [empty] * (-len(rows) % global_batch)
    local = global_batch // process_count
    return [stack(rows[start + process_index * local:start + (process_index + 1) * local])
            for start in range(0, len(rows), global_batch)]
