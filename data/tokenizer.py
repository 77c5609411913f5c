"""Trains and loads the project's SentencePiece BPE tokenizer.

The model is trained on a deterministic sample of the corpus's train split (see
`data.corpus`): an equal byte budget per domain, not proportional to domain size, so the
small domains (dialogue, math) get pieces of their own instead of being covered by byte
fallback. Shards are already in hash order, so each domain's sample is the prefix of its
first train shards: the same on every machine.

Settings: pad=0, eos=1, unk=2, no bos (what seqio expects), byte
fallback (no unknown tokens), digits split, identity normalization and whitespace kept
(code indentation survives a round trip). Training sees one line per sentence; there is no
dummy prefix, so a line's first word tokenizes the same way at the start of a document and
in its middle.

Run: `python -m data.tokenizer --data_dir=data_cache --vocab_size=8192`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from data.corpus import DEFAULT_DATA_DIR, DOMAINS

log = logging.getLogger("data.tokenizer")

MAX_SENTENCE_BYTES = 1 << 16  # sentencepiece's default (4192) silently drops longer lines


def model_path(data_dir: str, vocab_size: int) -> Path:
    """Where the model for `vocab_size` lives (or will live) under `data_dir`."""
    return Path(data_dir) / "tokenizer" / f"spm_bpe_{vocab_size}.model"


def _train_shards(data_dir: str) -> dict[str, list[Path]]:
    root = Path(data_dir) / "corpus"
    found = {d.name: sorted(d.glob("train-*-of-*.jsonl")) for d in sorted(root.glob("*"))
             if d.is_dir()}
    found = {d: shards for d, shards in found.items() if shards}
    if not found:
        raise FileNotFoundError(f"no train shards under {root}: build the corpus first "
                                f"(python -m data.corpus --data_dir={data_dir})")
    order = [d for d in DOMAINS if d in found] + sorted(d for d in found if d not in DOMAINS)
    return {d: found[d] for d in order}


def sample_documents(data_dir: str, sample_bytes: int) -> Iterator[str]:
    """Train documents, `sample_bytes // n_domains` UTF-8 bytes per domain (a domain with
    less contributes all it has), in shard order: deterministic."""
    shards = _train_shards(data_dir)
    budget = sample_bytes // len(shards)
    for domain, paths in shards.items():
        taken = 0
        for path in paths:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    text = json.loads(line)["text"]
                    yield text
                    taken += len(text.encode())
                    if taken >= budget:
                        break
            if taken >= budget:
                break
        log.info("tokenizer sample: %-10s %.1f MB", domain, taken / 1e6)


def _sentences(data_dir: str, sample_bytes: int) -> Iterator[str]:
    for text in sample_documents(data_dir, sample_bytes):
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_tokenizer(data_dir: str = DEFAULT_DATA_DIR, vocab_size: int = 8192,
                    sample_bytes: int = 24_000_000, character_coverage: float = 0.9995,
                    force: bool = False) -> str:
    """Trains a BPE SentencePiece model on a corpus sample; returns the .model path.

    Cached at `{data_dir}/tokenizer/spm_bpe_{vocab_size}.model`: if it exists it is returned
    without retraining (pass `force=True` to retrain). A JSON file beside it records the
    settings, the sample size and the training time.
    """
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel

    path = model_path(data_dir, vocab_size)
    if path.exists() and not force:
        log.info("tokenizer %s exists; not retraining", path)
        return str(path)
    if vocab_size <= 259:
        raise ValueError(f"vocab_size must be > 259, got {vocab_size}: byte fallback takes 256 "
                         f"pieces and pad/eos/unk 3 more, before any character or merge")
    _train_shards(data_dir)  # fail here, with the fix, rather than inside sentencepiece
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = dict(
        model_type="bpe", vocab_size=vocab_size, character_coverage=character_coverage,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True,
        max_sentence_length=MAX_SENTENCE_BYTES, input_sentence_size=0,
        num_threads=os.cpu_count() or 1)
    tmp_prefix = path.parent / f".tmp_spm_bpe_{vocab_size}"
    start = time.time()
    spm.SentencePieceTrainer.train(sentence_iterator=_sentences(data_dir, sample_bytes),
                                   model_prefix=str(tmp_prefix), minloglevel=2, **settings)
    seconds = time.time() - start
    os.replace(f"{tmp_prefix}.vocab", path.with_suffix(".vocab"))
    os.replace(f"{tmp_prefix}.model", path)
    path.with_suffix(".json").write_text(json.dumps(
        {"settings": settings, "sample_bytes": sample_bytes, "train_seconds": round(seconds, 1)},
        indent=1, sort_keys=True))
    log.info("trained %s in %.1fs", path, seconds)
    return str(path)


def load_vocabulary(path_or_none: str | None):
    """A seqio vocabulary: `SentencePieceVocabulary(path)`, or `ByteVocabulary()` for
    "byte" or None. seqio (and TensorFlow) are imported here, not at module import."""
    from data import native_log
    with native_log.quiet():  # TensorFlow's C++ start-up lines
        import seqio  # pylint: disable=import-outside-toplevel

    if path_or_none is None or path_or_none == "byte":
        return seqio.ByteVocabulary()
    if not Path(path_or_none).exists():
        raise FileNotFoundError(f"no SentencePiece model at {path_or_none}: train one with "
                                f"`python -m data.tokenizer --data_dir=DIR --vocab_size=N`, "
                                f"or pass \"byte\" for byte-level tokens")
    return seqio.SentencePieceVocabulary(str(path_or_none))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the SentencePiece BPE tokenizer.")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--sample_mb", type=float, default=24.0)
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.time()
    try:
        path = train_tokenizer(args.data_dir, args.vocab_size, int(args.sample_mb * 1e6),
                               force=args.force)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    print(f"{path} ({time.time() - start:.1f}s)")


if __name__ == "__main__":
    main()
