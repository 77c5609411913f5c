"""Domain specs: what each training or eval domain reads, parsed from `config.data`.

Config format (`config.data`):
  domains:       "books,code,math" (built-in names, comma-separated) or a list of strings,
                 each a built-in name or "name=SOURCE", SOURCE one of
                   "path/{split}-*.jsonl"  JSONL, kind from the .jsonl/.json suffix (.gz:
                                           gzipped; .zst: zstandard, prepared store only)
                   "path/{split}*.txt"     text, one document per line (any other suffix)
                   "jsonl:GLOB" / "text:GLOB"  the kind said explicitly
                   "tfds:NAME:VERSION"     a TFDS dataset built under tfds_data_dir
                   "path/{split}-*.parquet"  parquet, the text in column text_key
                                           (prepared store only)
                   "hf:DIRECTORY"          a Hugging Face dataset saved with save_to_disk:
                                           its train / validation splits (prepared store only)
                 "{split}" in a glob is replaced by "train" / "validation"; a glob
                 without it serves the train split only.
  data_dir:      root of the built-in corpus ({data_dir}/corpus/{domain}/{split}-*.jsonl)
  text_key:      JSON / TFDS feature holding the text (default "text")
  tfds_data_dir: where TFDS datasets were built
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

BUILTIN_DOMAINS = ("books", "reference", "code", "dialogue", "technical", "math")
KINDS = ("jsonl", "text", "tfds", "parquet", "hf")


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """One domain's source.

    pattern: a file glob, "{split}" standing for the split name (kind jsonl / text), or a
    TFDS "name:version" (kind tfds, read from tfds_data_dir). A glob without "{split}" is
    the split `unsplit` alone: train for a training domain, validation for an eval-only one.
    """
    name: str
    kind: str
    pattern: str
    text_key: str = "text"
    tfds_data_dir: str | None = None
    unsplit: str = "train"

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
    if kind in ("jsonl", "text", "parquet") and rest:
        return DomainSpec(name, kind, rest, text_key)
    if kind == "hf":  # a directory of datasets' save_to_disk; its splits, or train alone
        if not rest:
            raise ValueError(f"domain entry {entry!r}: write 'name=hf:DIRECTORY' (a Hugging "
                             "Face dataset saved with save_to_disk)")
        return DomainSpec(name, "hf", rest, text_key)
    if source.endswith(".parquet"):
        return DomainSpec(name, "parquet", source, text_key)
    jsonl = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
    kind = "jsonl" if source.endswith(jsonl) else "text"
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


def eval_only_domains(entries: str, data_dir: str = "", text_key: str = "text",
                      tfds_data_dir: str | None = None) -> list[DomainSpec]:
    """`config.eval.domains` (built-in names and "name=GLOB" entries, as config.data.domains)
    -> specs read for evaluation only: a glob with "{split}" gives its validation files, one
    without gives its files as they are. A built-in name evaluates that domain in a run that
    does not train on it (a target-only arm scored on the rest of the mix)."""
    parts = [e for e in entries.split(",") if e.strip()]
    return [dataclasses.replace(parse_domain(e, data_dir, text_key, tfds_data_dir),
                                unsplit="validation") for e in parts]
