"""Planted domains: seeded, deterministic transformations of the built-in corpus.

A data method is right only if it tells useful data from useless data; these domains make the
difference known in advance, so a testbed can say what each method must do:

  noise       uniformly random tokens of the testbed tokenizer, decoded to text: nothing to
              learn (its loss floor is log V), a pure waste of steps;
  duplicated  a few source documents repeated many times: learnt once, then only memorised;
  shuffled    each source document's words in a random order: junk with exactly the unigram
              statistics of clean text (a unigram-level scorer cannot see it);
  target      a small slice of one real domain: the domain a run wants to be good at.

They are written as JSONL shards like the corpus's own,
`{data_dir}/planted/{name}/{split}-00000-of-00001.jsonl`, with a manifest of the settings and
the files' hashes; a config names them as ordinary domains, e.g.
`data.domains="books,noise=data_cache/planted/noise/{split}-*.jsonl"` (`domain_entries`).
Each transformation is a pure function of (source documents, seed): the same files on every
machine. Noise decoded to text re-tokenizes into nearly but not exactly the drawn ids (a few
neighbouring pieces merge); its per-token entropy stays close to log V.

Run: `python -m data.planted --data_dir=data_cache` (after `python -m data.corpus` and
`python -m data.tokenizer --vocab_size=1024`; `make testbed` does all three).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from data.tokenizer import model_path

KINDS = ("noise", "duplicated", "shuffled", "target")
SPLITS = ("train", "validation")
FORMAT_VERSION = 1


def source_documents(data_dir: str, domain: str, split: str) -> Iterator[str]:
    """The built-in corpus's documents of one domain and split, in shard order."""
    shards = sorted((Path(data_dir) / "corpus" / domain).glob(f"{split}-*.jsonl"))
    if not shards:
        raise FileNotFoundError(f"no {split} shards of domain {domain!r} under "
                                f"{data_dir}/corpus: build the corpus first "
                                f"(python -m data.corpus --data_dir={data_dir})")
    for shard in shards:
        with open(shard, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]


def take_bytes(docs: Iterable[str], budget: int) -> list[str]:
    """The leading documents whose UTF-8 bytes first reach `budget` (all if fewer)."""
    out, taken = [], 0
    for doc in docs:
        if taken >= budget:
            break
        out.append(doc)
        taken += len(doc.encode())
    return out


def noise_documents(piece_ids: np.ndarray, decode, docs: int, doc_tokens: int,
                    rng: np.random.Generator) -> list[str]:
    """`docs` documents of `doc_tokens` ids drawn uniformly from `piece_ids`, decoded."""
    return [decode(rng.choice(piece_ids, doc_tokens).tolist()) for _ in range(docs)]


def duplicated_documents(source: list[str], unique: int, budget: int,
                         rng: np.random.Generator) -> list[str]:
    """`unique` documents drawn from `source`, repeated in a shuffled order until their
    bytes reach `budget`."""
    if len(source) < unique:
        raise ValueError(f"need {unique} source documents to duplicate, have {len(source)}")
    chosen = [source[i] for i in sorted(rng.choice(len(source), unique, replace=False))]
    size = sum(len(d.encode()) for d in chosen)
    copies = max(1, -(-budget // max(size, 1)))
    order = rng.permutation(np.repeat(np.arange(unique), copies))
    return [chosen[i] for i in order]


def shuffled_documents(source: list[str], rng: np.random.Generator) -> list[str]:
    """Each document's whitespace-separated words in a random order (one space between)."""
    out = []
    for doc in source:
        words = doc.split()
        out.append(" ".join(words[i] for i in rng.permutation(len(words))))
    return out


def _write(path: Path, docs: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"text": doc}) + "\n")
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(data_dir: str, *, vocab_size: int = 1024, source: str = "books",
          target_source: str = "math", train_mb: float = 4.0, validation_mb: float = 0.4,
          target_mb: float = 1.0, unique_docs: int = 8, noise_doc_tokens: int = 512,
          seed: int = 0, kinds: Iterable[str] = KINDS) -> dict:
    """Writes the planted domains under {data_dir}/planted/; returns the manifest.

    noise draws from the pieces of the BPE of `vocab_size` (not its control or byte-fallback
    pieces); duplicated and shuffled transform `source`; target is the first `target_mb` of
    `target_source`'s train split (its validation split whole, up to `validation_mb`)."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown planted kind(s) {unknown}; choose from {KINDS}")
    root = Path(data_dir) / "planted"
    budget = {"train": int(train_mb * 1e6), "validation": int(validation_mb * 1e6)}
    settings = dict(vocab_size=vocab_size, source=source, target_source=target_source,
                    train_mb=train_mb, validation_mb=validation_mb, target_mb=target_mb,
                    unique_docs=unique_docs, noise_doc_tokens=noise_doc_tokens, seed=seed,
                    format_version=FORMAT_VERSION)
    manifest = {"settings": settings, "files": {}}
    for k, kind in enumerate(KINDS):
        if kind not in kinds:
            continue
        for s, split in enumerate(SPLITS):
            rng = np.random.default_rng([seed, k, s])
            if kind == "noise":
                import sentencepiece as spm  # pylint: disable=import-outside-toplevel
                path = model_path(data_dir, vocab_size)
                if not path.exists():
                    raise FileNotFoundError(
                        f"no tokenizer at {path}: train it first (python -m data.tokenizer "
                        f"--data_dir={data_dir} --vocab_size={vocab_size})")
                sp = spm.SentencePieceProcessor(model_file=str(path))
                ids = np.array([i for i in range(sp.get_piece_size())
                                if not (sp.is_control(i) or sp.is_byte(i) or sp.is_unknown(i))])
                per_doc = noise_doc_tokens * 3  # ~3 bytes a piece: enough docs for the budget
                docs = noise_documents(ids, sp.decode, max(1, budget[split] // per_doc),
                                       noise_doc_tokens, rng)
            elif kind == "duplicated":
                # The validation split holds other copies of the same documents: the domain's
                # content is those documents.
                pool = take_bytes(source_documents(data_dir, source, "train"), budget["train"])
                rng = np.random.default_rng([seed, k])
                docs = duplicated_documents(pool, unique_docs, budget[split], rng)
            elif kind == "shuffled":
                docs = shuffled_documents(
                    take_bytes(source_documents(data_dir, source, split), budget[split]), rng)
            else:
                cap = int(target_mb * 1e6) if split == "train" else budget[split]
                docs = take_bytes(source_documents(data_dir, target_source, split), cap)
            name = f"{kind}/{split}-00000-of-00001.jsonl"
            manifest["files"][name] = {"documents": len(docs), "sha256": _write(root / name, docs)}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def domain_entries(data_dir: str, kinds: Iterable[str]) -> list[str]:
    """`config.data.domains` entries for planted domains: "noise=DIR/planted/noise/{split}-*.jsonl"."""
    return [f"{k}={os.path.join(data_dir, 'planted', k, '{split}-*.jsonl')}" for k in kinds]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the planted domains.")
    parser.add_argument("--data_dir", default="data_cache")
    parser.add_argument("--vocab_size", type=int, default=1024)
    parser.add_argument("--source", default="books")
    parser.add_argument("--target_source", default="math")
    parser.add_argument("--train_mb", type=float, default=4.0)
    parser.add_argument("--target_mb", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        manifest = build(args.data_dir, vocab_size=args.vocab_size, source=args.source,
                         target_source=args.target_source, train_mb=args.train_mb,
                         target_mb=args.target_mb, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    for name, info in sorted(manifest["files"].items()):
        print(f"{args.data_dir}/planted/{name}: {info['documents']} documents")


if __name__ == "__main__":
    main()
