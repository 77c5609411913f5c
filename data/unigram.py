"""Unigram entropy: the loss of the best model that knows only token frequencies.

A model whose loss on a domain is above that domain's unigram entropy H = -sum_v p(v) log p(v)
(nats per token, p the domain's own token frequencies) has learnt no more than which tokens are
common; data methods compared in that regime can only move frequencies. A testbed shows its
baseline's eval loss curve against these lines (`benchmarks/testbed.py`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np


def token_counts(texts: Iterable[str], encode: Callable[[str], list[int]], vocab_size: int,
                 max_tokens: int = 0) -> np.ndarray:
    """Counts [vocab_size] of the ids of `texts` (each followed by EOS id 1, as the pipeline
    appends it), stopping after `max_tokens` (0 = all)."""
    counts = np.zeros(vocab_size, np.int64)
    seen = 0
    for text in texts:
        ids = np.asarray(encode(text) + [1], np.int64)
        if max_tokens:
            ids = ids[:max_tokens - seen]
        counts += np.bincount(ids, minlength=vocab_size)[:vocab_size]
        seen += len(ids)
        if max_tokens and seen >= max_tokens:
            break
    return counts


def entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the distribution the counts give (0 for no counts)."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())
