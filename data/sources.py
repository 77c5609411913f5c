"""The data sources a config names (`config.data.source`): each gives the domain names, the
files' problems before any work, this process's training stream and eval rows, and the rows a
method's reference set reads. The builder (runs/experiment.py) dispatches through `SOURCES`;
nothing here knows the model or the methods.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np


@dataclasses.dataclass
class Data:
    """What one process reads: its rows of the training mix and of every eval domain."""
    # The mixed training stream (next / get_state / set_state / set_weights, the shape of
    # reweight.interface.BatchSource); None when built for evaluation only.
    source: Any
    eval_sets: dict[str, list[dict]]  # eval domain -> this process's rows of its batches
    domain_names: tuple[str, ...]  # training domains, in domain-id order
    # eval domain -> UTF-8 bytes of the text its eval rows score, all processes' (text
    # domains only: bits per byte)
    eval_bytes: dict[str, int] = dataclasses.field(default_factory=dict)


MakeData = Callable[[ml_collections.ConfigDict], Data]  # e.g. build_data, or a test's own


class Seqio:
    """Tokenized text files (or TFDS datasets) per domain, read through seqio Tasks; or, with
    config.data.store, the same domains prepared once into a token store (data/store.py) and
    read by index."""

    def __init__(self, cfg: ml_collections.ConfigDict):
        from data import domains
        self.cfg = cfg
        self.specs = domains.specs_from_config(cfg.data)
        self.eval_specs = self.specs + (
            domains.heldout_domains(cfg.data.data_dir) if cfg.data.heldout else []) + (
            domains.eval_only_domains(cfg.eval.domains, cfg.data.data_dir, cfg.data.text_key,
                                      cfg.data.tfds_data_dir or None))
        names = [s.name for s in self.eval_specs]
        if len(set(names)) != len(names):
            raise ValueError(f"config.eval.domains repeats a domain name of the run: {names}")
        self._vocab = None

    def names(self) -> tuple[list, list]:
        return [s.name for s in self.specs], [s.name for s in self.eval_specs]

    def vocab_path(self) -> str | None:
        """The SentencePiece model the config names (None: byte tokens)."""
        from data import tokenizer
        d = self.cfg.data
        if d.vocab == "builtin":
            return str(tokenizer.model_path(d.data_dir, self.cfg.model.vocab_size))
        return None if d.vocab == "byte" else d.vocab

    def vocab(self):
        if self._vocab is None and self.cfg.data.store:  # any tokenizer, data/vocabulary.py
            from data import vocabulary
            vocab = vocabulary.load(**self.vocab_args())
            if vocab.vocab_size > self.cfg.model.vocab_size:
                raise ValueError(f"config.model.vocab_size={self.cfg.model.vocab_size} is "
                                 f"smaller than the tokenizer's {vocab.vocab_size} ids: raise it")
            self._vocab = vocab
        if self._vocab is None:
            from data import tokenizer
            path, d = self.vocab_path(), self.cfg.data
            if d.vocab == "builtin" and not os.path.exists(path):
                raise FileNotFoundError(
                    f"config.data.vocab='builtin' reads the corpus tokenizer of config.model."
                    f"vocab_size={self.cfg.model.vocab_size} under config.data.data_dir="
                    f"{d.data_dir!r}, and {path} does not exist: build it with `python -m "
                    f"data.tokenizer --data_dir={d.data_dir} --vocab_size="
                    f"{self.cfg.model.vocab_size}`, or set config.data.vocab to 'byte' or a "
                    "SentencePiece model file")
            vocab = tokenizer.load_vocabulary(path)
            if vocab.vocab_size > self.cfg.model.vocab_size:
                raise ValueError(f"config.model.vocab_size={self.cfg.model.vocab_size} is "
                                 f"smaller than the tokenizer's {vocab.vocab_size} ids: raise it")
            self._vocab = vocab
        return self._vocab

    def vocab_args(self) -> dict:
        """data.vocabulary.load's arguments for this config's tokenizer."""
        d = self.cfg.data
        return {"spec": d.vocab, "data_dir": d.data_dir, "vocab_size": self.cfg.model.vocab_size}

    def token_counts(self) -> np.ndarray:
        if self.cfg.data.store:  # exact, from the store
            from data import store
            return np.array([store.read_meta(self.cfg.data.store, s.name, "train")["tokens"]
                             for s in self.specs], np.float64)
        from data import pipeline
        return pipeline.natural_token_counts(self.specs, self.vocab_path())

    def prepare(self, log=print) -> dict:
        """--mode=prepare: every domain's train and validation splits into config.data.store
        (data/store.py), once; {domain: {split: meta}}."""
        from data import store
        d = self.cfg.data
        if not d.store:
            raise ValueError("--mode=prepare writes a token store: set config.data.store to the "
                             "directory to write it in")
        return store.prepare(self.eval_specs, ("train", "validation"), d.store,
                             self.vocab_args(), text_key=d.text_key, address=d.prepare_address,
                             log=log)

    def fingerprint(self) -> dict:
        """The corpus fingerprint (data/fingerprint.py) over every local file this config's
        domains read, train and validation splits, and the tokenizer file."""
        from data import fingerprint, records
        if self.cfg.data.store:  # the prepared tokens' digests, recorded when written
            from data import store
            root, labels = self.cfg.data.store, []
            for spec in self.eval_specs:
                for split in ("train", "validation"):
                    if store.is_complete(root, spec.name, split):
                        digest = store.read_meta(root, spec.name, split)["blake2b"]
                        labels.append((f"{spec.name}/{split}/tokens:{digest}", None))
            tokenizer = self.vocab().identity()  # which tokenizer these numbers are in
            return fingerprint.of(labels) | {
                "tokenizer": f"{tokenizer['kind']}:{tokenizer['sha256'][:12] or 'bytes'}"}
        parts = []
        for spec in self.eval_specs:
            if spec.kind == "tfds" or records.remote(spec.pattern):
                parts.append((f"{spec.name}/{spec.kind}:{spec.pattern}", None))
                continue
            for split in ("train", "validation"):
                for path in records.split_files(spec.pattern, split, spec.unsplit) or []:
                    parts.append((f"{spec.name}/{split}/{os.path.basename(path)}", path))
        vocab = self.vocab_path()
        parts.append((f"tokenizer/{os.path.basename(vocab)}", vocab) if vocab and os.path.exists(
            vocab) else (f"tokenizer/{self.cfg.data.vocab}", None))
        return fingerprint.of(parts)

    def _common(self, global_batch: int, index: int, count: int) -> dict:
        return dict(vocab=self.vocab(), seq_len=self.cfg.data.seq_len, global_batch=global_batch,
                    process_index=index, process_count=count, data_dir=self.cfg.data.data_dir)

    def check(self, train: bool) -> list[str]:
        """Every problem of the files a run reads (`data.records`): each training domain's
        train split when training, each eval domain's validation split (skipped with
        config.data.check_records=False: the pipeline then stops at the first it reads);
        then the vocabulary."""
        from data import records
        problems = []
        if self.cfg.data.store:
            return self._store_problems(train)
        unprepared = [s.name for s in self.eval_specs if s.kind in ("parquet", "hf")]
        if unprepared:
            return [f"domain(s) {unprepared} (parquet or a saved Hugging Face dataset) are read "
                    "through a prepared token store: set config.data.store=DIR and run "
                    "`python main.py --mode=prepare` with this config first"]
        zst = [p for s in self.eval_specs for p in records.on_the_fly_problems(s.name, s.pattern)]
        if zst:
            return zst
        if not self.cfg.data.check_records:
            return problems + self._vocab_problems()
        splits = ([(s, "train") for s in self.specs] if train else []) + [
            (s, "validation") for s in self.eval_specs]
        for spec, split in splits:
            if spec.kind != "tfds" and not records.remote(spec.pattern):
                problems += records.check(spec.name, spec.kind, spec.pattern, split,
                                          spec.text_key, spec.unsplit)
        return problems + self._vocab_problems()

    def _store_problems(self, train: bool) -> list[str]:
        """Every split the run reads is prepared, with this config's tokenizer."""
        from data import store, vocabulary
        problems = self._vocab_problems()
        splits = ([(s, "train") for s in self.specs] if train else []) + [
            (s, "validation") for s in self.eval_specs]
        for spec, split in splits:
            try:
                meta = store.read_meta(self.cfg.data.store, spec.name, split)
                if not problems:
                    vocabulary.check_identity(meta["tokenizer"], self.vocab(),
                                              f"the store's {spec.name}/{split}")
            except (ValueError, FileNotFoundError) as e:
                problems.append(str(e))
        return problems

    def _vocab_problems(self) -> list[str]:
        try:
            self.vocab()
        except (ValueError, FileNotFoundError) as e:
            return [str(e)]
        return []

    def build(self, train: bool) -> Data:
        if self.cfg.data.store:
            return self._build_from_store(train)
        from data import pipeline
        c = self.cfg
        common = self._common(c.train.batch_size, jax.process_index(), jax.process_count())
        source = pipeline.make_train_iter(
            self.specs, weights=c.data.weights, seed=c.seed,
            shuffle_buffer_size=c.data.shuffle_buffer_size, **common) if train else None
        evals = pipeline.make_eval_batches(self.eval_specs, max_rows_per_domain=c.data.eval_rows,
                                           **common)
        text_bytes = pipeline.eval_bytes(self.eval_specs, self.vocab(), c.data.seq_len,
                                         c.data.eval_rows, c.data.data_dir)
        return Data(source, evals, tuple(self.names()[0]), text_bytes)

    def _split(self, domain: str, split: str):
        from data import store
        vocab = self.vocab()
        return store.Split.open(self.cfg.data.store, domain, split, self.cfg.data.seq_len,
                                vocab.start_id, vocab.eos_id)

    def _build_from_store(self, train: bool) -> Data:
        """The mixer over each domain's indexed train rows (a domain's shuffle seeded by the run
        seed and its index, as on the fly), and each eval domain's first `eval_rows` validation
        rows; no TensorFlow."""
        from data import mixing, pipeline, store
        c = self.cfg
        names = [s.name for s in self.specs]
        source = mixing.Mixer(
            [store.IndexedRows(self._split(n, "train"), pipeline.stream_seed(c.seed, i))
             for i, n in enumerate(names)], names, global_batch=c.train.batch_size,
            weights=mixing.parse_weights(c.data.weights, names), seed=c.seed,
            process_index=jax.process_index(), process_count=jax.process_count()) \
            if train else None
        evals, text_bytes = {}, {}
        vocab = self.vocab()
        for d, spec in enumerate(self.eval_specs):
            split = self._split(spec.name, "validation")
            rows = split.rows(range(min(c.data.eval_rows, split.num_rows)))
            evals[spec.name] = pipeline.eval_batches(rows, d, c.train.batch_size,
                                                     jax.process_index(), jax.process_count())
            text_bytes[spec.name] = pipeline.scored_bytes(rows, vocab)
        return Data(source, evals, tuple(names), text_bytes)

    def validation_rows(self, domain: str, rows: int) -> dict:
        from data import pipeline
        (spec,) = [s for s in self.eval_specs if s.name == domain] or [None]
        if spec is None:
            raise ValueError(f"no eval domain {domain!r}; the eval domains are "
                             f"{self.names()[1]}")
        if self.cfg.data.store:
            split = self._split(domain, "validation")
            return pipeline.eval_batches(split.rows(range(min(rows, split.num_rows))), 0, rows,
                                         0, 1)[0]
        return pipeline.make_eval_batches([spec], max_rows_per_domain=rows,
                                          **self._common(rows, 0, 1))[domain][0]

    def cloze_rows(self, domain: str, rows: int, length: int) -> dict:
        from data import cloze
        return cloze.stack(cloze.cloze_rows(self.cfg.data.data_dir, domain, self.vocab().encode,
                                            length, rows, text_key=self.cfg.data.text_key))


class _Generated:
    """A source whose rows the repo generates from the config: no files to read or check, no
    token counts, no fingerprint, no eval-only domains, and no text for a cloze set."""
    what = ""  # how a cloze error names its domains

    def __init__(self, cfg: ml_collections.ConfigDict):
        if cfg.eval.domains:
            raise ValueError(f"config.eval.domains={cfg.eval.domains!r} needs text domains "
                             f"(config.data.source=seqio), not {cfg.data.source!r}")
        self.cfg = cfg

    def token_counts(self) -> None:
        return None

    def fingerprint(self) -> None:
        return None  # generated from the config (and its seed): no files

    def check(self, train: bool) -> list[str]:
        return []  # generated rows: nothing to read

    def cloze_rows(self, domain: str, rows: int, length: int) -> dict:
        raise ValueError("a cloze reference set needs text domains (config.data.source=seqio); "
                         f"use kind 'validation' on {self.what}")


class Synthetic(_Generated):
    """Markov-chain domains the repo generates (data/synthetic.py): tests and quick checks."""
    what = "synthetic domains"

    def _mixture(self, global_batch: int, index: int = 0, count: int = 1):
        from data.synthetic import SyntheticMixture
        c = self.cfg
        return SyntheticMixture(num_domains=c.data.num_domains, vocab_size=c.model.vocab_size,
                                seq_len=c.data.seq_len, global_batch=global_batch,
                                weights=c.data.weights, seed=c.seed, process_index=index,
                                process_count=count)

    def names(self) -> tuple[list, list]:
        names = [f"synthetic_{d}" for d in range(self.cfg.data.num_domains)]
        return names, names

    def build(self, train: bool) -> Data:
        it = self._mixture(self.cfg.train.batch_size, jax.process_index(), jax.process_count())
        return Data(it if train else None, it.eval_batches(self.cfg.data.eval_rows),
                    tuple(it.domain_names))

    def validation_rows(self, domain: str, rows: int) -> dict:
        return self._mixture(rows).eval_batches(rows)[domain][0]


class Lego(_Generated):
    """LEGO chains of k variables (data/lego.py): skills are the depths 1..k. Text rows
    (config.data.lego_render=text) are encoded with the run's tokenizer, config.data.vocab, as
    data/vocabulary.py loads it: the ids of the seqio pipeline a model was pretrained on. As
    the seqio source, it reads the tokenizer in `check` (or when first generating), not here."""
    what = "LEGO skills"

    def __init__(self, cfg: ml_collections.ConfigDict):
        from data import lego
        super().__init__(cfg)
        d = cfg.data
        lego.check_fields(d.lego_k, d.lego_supervision, d.lego_render)
        if d.lego_render == "words" and cfg.model.vocab_size < lego.VOCAB_SIZE:
            raise ValueError(f"config.model.vocab_size={cfg.model.vocab_size} is smaller than "
                             f"LEGO's {lego.VOCAB_SIZE} words: raise it")
        self.lego = lego
        self._gen = None

    @property
    def gen(self):
        """The generator (data.lego.Lego), built once; raises on a missing tokenizer, a
        config.model.vocab_size below its ids, or a data.seq_len below the longest row."""
        if self._gen is None:
            from data import vocabulary
            c, d = self.cfg, self.cfg.data
            vocab = vocabulary.load(d.vocab, data_dir=d.data_dir, vocab_size=c.model.vocab_size
                                    ) if d.lego_render == "text" else None
            self._gen = self.lego.Lego(d.lego_k, d.lego_supervision, d.seq_len, c.seed,
                                       eval_examples=d.eval_rows, render=d.lego_render,
                                       vocab=vocab)
        return self._gen

    def check(self, train: bool) -> list[str]:
        try:
            self.gen
        except (ValueError, FileNotFoundError) as e:
            return [str(e)]
        return []

    def names(self) -> tuple[list, list]:
        names = self.lego.skill_names(self.cfg.data.lego_k)
        return names, list(names)

    def build(self, train: bool) -> Data:
        common = dict(global_batch=self.cfg.train.batch_size, process_index=jax.process_index(),
                      process_count=jax.process_count())
        source = self.lego.make_train_iter(self.gen, weights=self.cfg.data.weights,
                                           seed=self.cfg.seed, **common) if train else None
        return Data(source, self.lego.make_eval_batches(self.gen, **common),
                    tuple(self.gen.domain_names))

    def validation_rows(self, domain: str, rows: int) -> dict:
        return self.lego.make_eval_batches(self.gen, global_batch=rows,
                                           max_rows_per_skill=rows)[domain][0]


SOURCES = {"seqio": Seqio, "synthetic": Synthetic, "lego": Lego}


def source_of(cfg: ml_collections.ConfigDict):
    """The data source `config.data.source` names, for this config."""
    if cfg.data.source not in SOURCES:
        raise ValueError(f"config.data.source={cfg.data.source!r} is unknown; use "
                         f"{', '.join(SOURCES)}")
    return SOURCES[cfg.data.source](cfg)


def domain_names(cfg: ml_collections.ConfigDict) -> tuple[list, list]:
    """(training domains, eval domains) without building any pipeline."""
    return source_of(cfg).names()


def build_data(cfg: ml_collections.ConfigDict, *, train: bool = True) -> Data:
    """This process's data; `train=False` builds the eval sets alone (no training files read)."""
    return source_of(cfg).build(train)
