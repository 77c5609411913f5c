"""What the training loop calls: domain specs, config parsing, train mixer, eval batches.

This module imports no TensorFlow at load time (config parsing and specs stay fast); the
functions that build tf.data pipelines import `data.tasks` when called.

Config format (`config.data`):
  domains:       "books,code,math" (built-in names, comma-separated) or a list of strings,
                 each a built-in name or "name=SOURCE", SOURCE one of
                   "path/{split}-*.jsonl"  JSONL, kind from the .jsonl/.json suffix
                   "path/{split}*.txt"     text, one document per line (any other suffix)
                   "jsonl:GLOB" / "text:GLOB"  the kind said explicitly
                   "tfds:NAME:VERSION"     a TFDS dataset built under tfds_data_dir
                 "{split}" in a glob is replaced by "train" / "validation"; a glob
                 without it serves the train split only.
  data_dir:      root of the built-in corpus ({data_dir}/corpus/{domain}/{split}-*.jsonl)
  text_key:      JSON / TFDS feature holding the text (default "text")
  tfds_data_dir: where TFDS datasets were built
  weights:       "uniform", "0.5,0.3,0.2" (in domain order), "books:2,code:1" (others 0) or
                 "file:PATH" (a file holding one of these, e.g. a sweep's mixture.txt)
  seed:          seeds the domain draws and each domain's shuffle
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from data.mixing import Mixer, pad_rows, rows_per_process, validate_weights

BUILTIN_DOMAINS = ("books", "reference", "code", "dialogue", "technical", "math")
KINDS = ("jsonl", "text", "tfds")


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """One domain's source.

    pattern: a file glob, "{split}" standing for the split name (kind jsonl / text), or a
    TFDS "name:version" (kind tfds, read from tfds_data_dir).
    """
    name: str
    kind: str
    pattern: str
    text_key: str = "text"
    tfds_data_dir: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"domain {self.name!r}: kind must be one of {KINDS}, got "
                             f"{self.kind!r}")
        if not self.name or any(c in self.name for c in "=,:/ "):
            raise ValueError(f"domain name {self.name!r} must be non-empty without '=,:/ '")


def builtin_domains(data_dir: str, names: Sequence[str] = BUILTIN_DOMAINS,
                    text_key: str = "text") -> list[DomainSpec]:
    """Specs of the built-in six-domain corpus that data/corpus.py writes."""
    unknown = [n for n in names if n not in BUILTIN_DOMAINS]
    if unknown:
        raise ValueError(f"unknown built-in domain(s) {unknown}; the built-in domains are "
                         f"{list(BUILTIN_DOMAINS)}, or write 'name=glob'")
    return [DomainSpec(n, "jsonl", os.path.join(data_dir, "corpus", n, "{split}-*.jsonl"),
                       text_key) for n in names]


def heldout_domains(data_dir: str, text_key: str = "text") -> list[DomainSpec]:
    """Specs of the held-out domains under {data_dir}/heldout/ (validation split only)."""
    root = os.path.join(data_dir, "heldout")
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))) \
        if os.path.isdir(root) else []
    return [DomainSpec(n, "jsonl", os.path.join(root, n, "{split}-*.jsonl"), text_key)
            for n in names]


def parse_domain(entry: str, data_dir: str = "", text_key: str = "text",
                 tfds_data_dir: str | None = None) -> DomainSpec:
    """One config entry ("books" or "name=SOURCE", see the module docstring) -> spec."""
    if "=" not in entry:
        return builtin_domains(data_dir, [entry.strip()], text_key)[0]
    name, source = (s.strip() for s in entry.split("=", 1))
    kind, _, rest = source.partition(":")
    if kind == "tfds":
        if not rest:
            raise ValueError(f"domain entry {entry!r}: write 'name=tfds:DATASET:VERSION'")
        return DomainSpec(name, "tfds", rest, text_key, tfds_data_dir)
    if kind in ("jsonl", "text") and rest:
        return DomainSpec(name, kind, rest, text_key)
    kind = "jsonl" if source.endswith((".jsonl", ".json")) else "text"
    return DomainSpec(name, kind, source, text_key)


def specs_from_config(data_cfg: Any) -> list[DomainSpec]:
    """`config.data` -> domain specs (fields: domains, data_dir, text_key, tfds_data_dir)."""
    entries = data_cfg.domains
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    if not entries:
        raise ValueError(f"config.data.domains is empty ({data_cfg.domains!r}); name "
                         f"built-in domains {list(BUILTIN_DOMAINS)} or 'name=glob' entries")
    specs = [parse_domain(e, data_cfg.data_dir, data_cfg.text_key,
                          data_cfg.tfds_data_dir or None) for e in entries]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate domain names in config.data.domains: {names}")
    return specs


def parse_weights(weights: str | Sequence[float] | Mapping[str, float] | None,
                  domain_names: Sequence[str]) -> np.ndarray:
    """"uniform" / None, "0.5,0.5", "name:w,...", a sequence or a mapping -> probabilities."""
    if weights is None or (isinstance(weights, str) and weights.strip() == "uniform"):
        return np.full(len(domain_names), 1.0 / len(domain_names))
    if isinstance(weights, str) and weights.strip().startswith("file:"):
        path = weights.strip()[len("file:"):]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file {path!r} (from {weights!r}) does not exist: "
                                    "write it first (a sweep or DoReMi run writes mixture.txt)")
        with open(path) as f:
            return parse_weights(f.read().strip(), domain_names)
    if isinstance(weights, str):
        parts = [p.strip() for p in weights.split(",") if p.strip()]
        try:
            if all(":" in p for p in parts):
                weights = {k.strip(): float(v) for k, v in (p.split(":", 1) for p in parts)}
            else:
                weights = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"cannot parse weights {weights!r}: write 'uniform', "
                             "comma-separated floats, or 'name:w,...'") from None
    return validate_weights(weights, domain_names)


def natural_token_counts(specs: Sequence[DomainSpec], vocab_path: str | None,
                         sample_bytes: int = 1 << 18) -> np.ndarray:
    """Estimated training tokens per domain: the train files' bytes times tokens per byte
    measured on the first `sample_bytes` of each domain's first file (vocab_path: a
    SentencePiece model, or None for byte tokens). Reads no TensorFlow; about a second."""
    import glob
    import json

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
        lines, used = [], 0
        with open(files[0], "rb") as f:
            while used < sample_bytes and (line := f.readline()):
                lines.append(line.decode("utf-8", errors="replace"))
                used += len(line)
        texts = [json.loads(l)[spec.text_key] for l in lines if l.strip()] \
            if spec.kind == "jsonl" else lines
        tokens = sum(len(sp.encode(t)) if sp else len(t.encode("utf-8")) for t in texts)
        counts.append(sum(os.path.getsize(p) for p in files) * tokens / max(used, 1))
    return np.asarray(counts, np.float64)


def _resolve(domains: Sequence[DomainSpec | str], data_dir: str) -> list[DomainSpec]:
    return [d if isinstance(d, DomainSpec) else parse_domain(d, data_dir) for d in domains]


def _stream_seed(seed: int, domain_index: int) -> int:
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
    streams = [tasks.RowStream(s, vocab, seq_len, split="train", seed=_stream_seed(seed, i),
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

    b = rows_per_process(global_batch, process_count)
    out = {}
    for d, spec in enumerate(_resolve(domains, data_dir)):
        stream = tasks.RowStream(spec, vocab, seq_len, split=split, shuffle=False,
                                 repeat=False)
        rows = [row for _, row in zip(range(max_rows_per_domain), stream)]
        batches = []
        for j in range(math.ceil(len(rows) / global_batch)):
            start = j * global_batch + process_index * b
            mine = pad_rows(rows[start:start + b], b, seq_len)
            batch = {k: np.stack([r[k] for r in mine]) for k in mine[0]}
            batch["domain_id"] = np.full(b, d, np.int32)
            batches.append(batch)
        out[spec.name] = batches
    return out
