"""The experiment builder: a config becomes its data, its methods and a run of `lm.loop`.

Every entry point builds through here (training, evaluation, sweeps, the skill-graph estimate,
comparisons), so `config.data.source` is dispatched in one place (`SOURCES`) and methods are
built one way (`reweight.registry`, with the `Env` below telling them about the data).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from data.mixing import parse_weights
from lm import checkpoint, loop, sharding, validation
from lm import reference as reference_lib
from lm import workdir as workdir_lib
from reweight import registry
from reweight.interface import BatchSource, HostMethod, Uniform, Weighter


@dataclasses.dataclass
class Data:
    """What one process reads: its rows of the training mix and of every eval domain."""
    source: BatchSource | None  # None when built for evaluation only
    eval_sets: dict[str, list[dict]]  # eval domain -> this process's rows of its batches
    domain_names: tuple[str, ...]  # training domains, in domain-id order


MakeData = Callable[[ml_collections.ConfigDict], Data]  # e.g. build_data, or a test's own


class Seqio:
    """Tokenized text files (or TFDS datasets) per domain, read through seqio Tasks."""

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

    def token_counts(self) -> np.ndarray:
        from data import pipeline
        return pipeline.natural_token_counts(self.specs, self.vocab_path())

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
        if not self.cfg.data.check_records:
            return problems + self._vocab_problems()
        splits = ([(s, "train") for s in self.specs] if train else []) + [
            (s, "validation") for s in self.eval_specs]
        for spec, split in splits:
            if spec.kind != "tfds" and not records.remote(spec.pattern):
                problems += records.check(spec.name, spec.kind, spec.pattern, split,
                                          spec.text_key, spec.unsplit)
        return problems + self._vocab_problems()

    def _vocab_problems(self) -> list[str]:
        try:
            self.vocab()
        except (ValueError, FileNotFoundError) as e:
            return [str(e)]
        return []

    def build(self, train: bool) -> Data:
        from data import pipeline
        c = self.cfg
        common = self._common(c.train.batch_size, jax.process_index(), jax.process_count())
        source = pipeline.make_train_iter(
            self.specs, weights=c.data.weights, seed=c.seed,
            shuffle_buffer_size=c.data.shuffle_buffer_size, **common) if train else None
        evals = pipeline.make_eval_batches(self.eval_specs, max_rows_per_domain=c.data.eval_rows,
                                           **common)
        return Data(source, evals, tuple(self.names()[0]))

    def validation_rows(self, domain: str, rows: int) -> dict:
        from data import pipeline
        (spec,) = [s for s in self.eval_specs if s.name == domain] or [None]
        if spec is None:
            raise ValueError(f"no eval domain {domain!r}; the eval domains are "
                             f"{self.names()[1]}")
        return pipeline.make_eval_batches([spec], max_rows_per_domain=rows,
                                          **self._common(rows, 0, 1))[domain][0]

    def cloze_rows(self, domain: str, rows: int, length: int) -> dict:
        from data import cloze
        return cloze.stack(cloze.cloze_rows(self.cfg.data.data_dir, domain, self.vocab().encode,
                                            length, rows, text_key=self.cfg.data.text_key))


def _no_eval_domains(cfg: ml_collections.ConfigDict) -> None:
    if cfg.eval.domains:
        raise ValueError(f"config.eval.domains={cfg.eval.domains!r} needs text domains "
                         f"(config.data.source=seqio), not {cfg.data.source!r}")


class Synthetic:
    """Markov-chain domains the repo generates (data/synthetic.py): tests and quick checks."""

    def __init__(self, cfg: ml_collections.ConfigDict):
        _no_eval_domains(cfg)
        self.cfg = cfg

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

    def token_counts(self) -> None:
        return None

    def check(self, train: bool) -> list[str]:
        return []  # generated rows: nothing to read

    def build(self, train: bool) -> Data:
        it = self._mixture(self.cfg.train.batch_size, jax.process_index(), jax.process_count())
        return Data(it if train else None, it.eval_batches(self.cfg.data.eval_rows),
                    tuple(it.domain_names))

    def validation_rows(self, domain: str, rows: int) -> dict:
        return self._mixture(rows).eval_batches(rows)[domain][0]

    def cloze_rows(self, domain: str, rows: int, length: int) -> dict:
        raise ValueError("a cloze reference set needs text domains (config.data.source=seqio); "
                         "use kind 'validation' on synthetic domains")


class Lego:
    """LEGO chains of k variables (data/lego.py): skills are the depths 1..k."""

    def __init__(self, cfg: ml_collections.ConfigDict):
        from data import lego
        _no_eval_domains(cfg)
        if cfg.model.vocab_size < lego.VOCAB_SIZE:
            raise ValueError(f"config.model.vocab_size={cfg.model.vocab_size} is smaller than "
                             f"LEGO's {lego.VOCAB_SIZE} words: raise it")
        self.cfg, self.lego = cfg, lego
        self.gen = lego.Lego(cfg.data.lego_k, cfg.data.lego_supervision, cfg.data.seq_len,
                             cfg.seed, eval_examples=cfg.data.eval_rows)

    def names(self) -> tuple[list, list]:
        return list(self.gen.domain_names), list(self.gen.domain_names)

    def token_counts(self) -> None:
        return None

    def check(self, train: bool) -> list[str]:
        return []  # generated rows: nothing to read

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

    def cloze_rows(self, domain: str, rows: int, length: int) -> dict:
        raise ValueError("a cloze reference set needs text domains (config.data.source=seqio); "
                         "use kind 'validation' on LEGO skills")


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


class Env:
    """The `reweight.interface.MethodEnv` of a config: what method factories know of the data."""

    def __init__(self, cfg: ml_collections.ConfigDict, source: Any = None,
                 domain_names: tuple | None = None):
        self.cfg = cfg
        self.source = source or source_of(cfg)
        self.domain_names = tuple(domain_names or self.source.names()[0])

    def weights(self, spec: str) -> np.ndarray:
        if isinstance(spec, str) and spec.strip() == "natural":
            counts = self.token_counts()
            if counts is None:  # generated domains are endless and alike
                return np.full(len(self.domain_names), 1.0 / len(self.domain_names))
            return counts / counts.sum()
        return parse_weights(spec, self.domain_names)

    def token_counts(self) -> np.ndarray | None:
        return self.source.token_counts()

    def reference_rows(self, kind: str, domain: str, rows: int, length: int) -> dict:
        if kind == "cloze":
            return self.source.cloze_rows(domain, rows, length)
        if kind == "validation":  # held out from the eval: the rows after its first eval_rows
            skip = self.cfg.data.eval_rows
            batch = self.source.validation_rows(domain, skip + rows)
            held_out = {k: v[skip:skip + rows] for k, v in batch.items()}
            have = int((held_out["loss_mask"].sum(axis=1) > 0).sum())
            if have < rows:
                raise ValueError(
                    f"the reference set needs {rows} validation rows of {domain!r} after the "
                    f"eval's first config.data.eval_rows={skip}, and the split has {have} more: "
                    "lower the reference rows or data.eval_rows, or use a longer split")
            return held_out
        raise ValueError(f"reference set kind {kind!r} is unknown; use cloze or validation")


@dataclasses.dataclass
class Experiment:
    """A config built: its data, weighter and host methods, ready to train or evaluate."""
    cfg: ml_collections.ConfigDict
    data: Data
    weighter: Weighter
    methods: list[HostMethod]
    # name (a field of config.reference) -> the frozen reference model it names
    references: dict[str, reference_lib.ReferenceSpec] = dataclasses.field(default_factory=dict)

    def train(self, workdir: str, devices=None) -> loop.TrainResult:
        if self.data.source is None:
            raise ValueError("this experiment was built for evaluation (train=False): build it "
                             "with train=True to train")
        return loop.train(self.cfg, workdir, source=self.data.source,
                          eval_sets=self.data.eval_sets, weighter=self.weighter,
                          methods=self.methods, devices=devices, references=self.references)

    def evaluate(self, checkpoint: str, devices=None, field: str = "the checkpoint"):
        """The eval sets' losses under the params of `checkpoint` (a workdir); `field` is
        what error messages call it."""
        return loop.evaluate(self.cfg, checkpoint, eval_sets=self.data.eval_sets,
                             devices=devices, field=field)


def build(cfg: ml_collections.ConfigDict, *, train: bool = True, data: Data | None = None,
          problems: Sequence[str] = ()) -> Experiment:
    """Checks everything, then builds: the data source, the mixture weights, the methods
    and, unless `data` is given (its domains are then the methods' too), every record of the
    files to read; all problems found, with `problems` (e.g. the core config's), go in one
    error before any pipeline is built. `train=False` builds no training pipeline and no
    method (evaluation runs none)."""
    found = list(problems)

    def attempt(build_one, default=None):
        try:
            return build_one()
        except (ValueError, FileNotFoundError) as e:
            found.append(str(e))
            return default

    source = attempt(lambda: source_of(cfg))
    weighter, methods, references = Uniform(), [], {}
    if source is not None:
        env = Env(cfg, source, data.domain_names if data else None)
        if train:
            attempt(lambda: check_weights(cfg, env.domain_names))
            weighter = attempt(lambda: registry.make_weighter(cfg, env), Uniform())
            methods = attempt(lambda: registry.make_host_methods(cfg, env), [])
            references, reference_problems = reference_specs(cfg)
            found += reference_problems
            found += _step_reference_problems(cfg, weighter, methods)
        if data is None:
            found += source.check(train)
    if found:
        raise ValueError(f"{len(found)} problem(s) before any work:\n  " + "\n  ".join(found))
    return Experiment(cfg, data or source.build(train), weighter, methods, references)


REFERENCE_FIELDS = ("workdir", "target", "general")  # of config.reference


def reference_specs(cfg: ml_collections.ConfigDict) -> tuple[dict, list[str]]:
    """(name -> ReferenceSpec of every set field of config.reference, the problems found):
    each must be a workdir of a run of this project with a checkpoint and a config.json, and
    share this run's data source, tokenizer, vocabulary size and row length."""
    specs, problems = {}, []
    for name in REFERENCE_FIELDS:
        path = cfg.reference[name]
        if not path:
            continue
        found = _reference_problems(cfg, f"config.reference.{name}", path)
        if found:
            problems += found
        else:
            specs[name] = reference_lib.ReferenceSpec(f"config.reference.{name}", path,
                                                      recorded_config(path).model)
    return specs, problems


def _reference_problems(cfg: ml_collections.ConfigDict, field: str, path: str) -> list[str]:
    at = f"{field}={path!r}"
    if not os.path.isdir(path):
        return [f"{at}: no such directory; train the reference first (e.g. "
                "configs/reference_target.py) and give its --workdir"]
    if reference_lib.newest_step(path) is None:
        return [f"{at} holds no checkpoint: give the --workdir of a reference run that has "
                "saved one (its checkpoints/ folder), or train it to the end first"]
    if workdir_lib.recorded_config(path) is None:
        return [f"{at} has no {workdir_lib.CONFIG_FILE}, so its model shape is unknown: give "
                "the --workdir of a run of this project"]
    ref, out = recorded_config(path), []
    same = (("model.vocab_size", ref.model.vocab_size, cfg.model.vocab_size),
            ("data.source", ref.data.source, cfg.data.source),
            ("data.vocab", ref.data.vocab, cfg.data.vocab),
            ("data.seq_len", ref.data.seq_len, cfg.data.seq_len))
    for key, theirs, ours in same:
        if theirs != ours:
            out.append(f"{at}: the reference was trained with {key}={theirs!r} and this run has "
                       f"config.{key}={ours!r}; a reference must score the same tokens (same "
                       f"tokenizer, vocabulary and row length): train a reference with "
                       f"--config.{key}={ours!r}, or set config.{key} as the reference had it")
    if cfg.data.source == "seqio" and cfg.data.vocab == "builtin" and os.path.realpath(
            ref.data.data_dir) != os.path.realpath(cfg.data.data_dir):
        out.append(f"{at}: the reference read its built-in tokenizer from data.data_dir="
                   f"{ref.data.data_dir!r} and this run from config.data.data_dir="
                   f"{cfg.data.data_dir!r}, which may hold another tokenizer: point both at "
                   "the same corpus, or train a reference on this one")
    return out


def _step_reference_problems(cfg, weighter: Weighter, methods: Sequence[HostMethod]) -> list:
    """A method that needs the reference in the step, and none named."""
    needs = [f"config.reweight.instance={cfg.reweight.instance!r}"] if getattr(
        weighter, "needs_reference", False) else []
    needs += [f"host method {m.name!r}" for m in methods if m.needs_reference]
    if needs and not cfg.reference.workdir:
        return [f"{' and '.join(needs)} need(s) a frozen reference model in the step, and "
                "config.reference.workdir is empty: set it to the --workdir of a reference run "
                "(e.g. configs/reference_target.py)"]
    return []


def reference_changes(workdir: str, specs: dict) -> list[str]:
    """Each reference whose newest checkpoint differs from the one the run in `workdir` first
    loaded (reference.json): a resume would train against another model."""
    out, before = [], reference_lib.recorded(workdir)
    for name, spec in specs.items():
        if name in before:
            now = reference_lib.newest_step(spec.workdir)
            if now != before[name]["step"] or os.path.abspath(spec.workdir) != before[name][
                    "workdir"]:
                out.append(f"{spec.field}={spec.workdir!r}: the run in --workdir={workdir} "
                           f"trained against {before[name]['workdir']} at step "
                           f"{before[name]['step']}, and its newest checkpoint is now step "
                           f"{now}; restore that reference, use a new --workdir, or pass "
                           "--allow_config_change to continue against the new one")
    return out


def warnings_of(cfg: ml_collections.ConfigDict) -> list[str]:
    """Settings that run but are probably not what was meant, one line each."""
    from configs import base
    out, t = [], cfg.train
    if t.warmup_steps >= t.steps:
        out.append(f"config.train.warmup_steps={t.warmup_steps} is not below config.train.steps="
                   f"{t.steps}: the learning rate never reaches config.train.lr={t.lr}")
    default = base.get_config().reweight
    for (field, name), keys in registry.FIELDS.items():
        chosen = cfg.reweight[field]
        if chosen == name:
            continue
        for key in keys:
            value, was = cfg.reweight[key], default[key]
            if (value.to_dict() if hasattr(value, "to_dict") else value) != (
                    was.to_dict() if hasattr(was, "to_dict") else was):
                out.append(f"config.reweight.{key} is set, but config.reweight.{field}="
                           f"{chosen!r} (not {name!r}) does not read it")
    return out


def workdir_problems(cfg: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """Whether a run can write `workdir`: a directory, writable, with room for a checkpoint
    (the params and AdamW's two moments, float32) beyond what it holds."""
    import shutil
    import jax.numpy as jnp
    from lm import train as train_lib
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        return [f"--workdir={workdir} is a file, not a directory: choose a directory"]
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".probe-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        return [f"--workdir={workdir} cannot be written ({e.strerror}): choose a writable "
                "directory"]
    tokens = jnp.zeros((1, cfg.data.seq_len), jnp.int32)
    try:
        shapes = jax.eval_shape(lambda: train_lib.make_model(cfg).init(
            jax.random.key(0), tokens, tokens, tokens))
    except Exception:  # an invalid model config: the core checks report it
        return []
    params = sum(x.size for x in jax.tree.leaves(shapes))
    need, free = 3 * 4 * params, shutil.disk_usage(workdir).free
    if free < need:
        return [f"--workdir={workdir} has {free / 1e6:.1f} MB free, and one checkpoint of this "
                f"model takes about {need / 1e6:.1f} MB ({params:,} params, AdamW's moments): "
                "free some space or choose another --workdir"]
    return []


def check_weights(cfg: ml_collections.ConfigDict, names: Sequence[str]) -> None:
    """Raises, naming the field, unless config.data.weights parses for the domains `names`
    (a check without building anything: tests/test_configs.py runs it on every arm)."""
    try:
        parse_weights(cfg.data.weights, names)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"config.data.weights={cfg.data.weights!r}: {e}") from None


def run(cfg: ml_collections.ConfigDict, workdir: str, *, mode: str = "train",
        allow_config_change: bool = False, devices=None) -> dict:
    """The ordinary entry point: trains or evaluates one config in `workdir`, every check
    before any work. Returns the last evaluation's scalars ({} if none ran), with "preempted"
    if stopped early; eval.json gets them (a finished run's file is kept)."""
    sharding.maybe_initialize_distributed(cfg.mesh)
    problems = validation.problems(cfg, jax.device_count(), jax.process_count())
    if mode == "train":
        problems += workdir_problems(cfg, workdir)
        workdir_lib.check_resume(cfg, workdir, has_checkpoint=checkpoint.has_checkpoint(workdir),
                                 allow_config_change=allow_config_change)
    if cfg.init_from:
        workdir_lib.check_model_matches(cfg, cfg.init_from)
    if mode == "eval" and not cfg.init_from:
        workdir_lib.check_model_matches(cfg, workdir, "--workdir")
    exp = build(cfg, train=mode == "train", problems=problems)
    if mode == "train" and checkpoint.has_checkpoint(workdir) and not allow_config_change:
        if changes := reference_changes(workdir, exp.references):
            raise ValueError("the reference model changed under a run:\n  " +
                             "\n  ".join(changes))
    if mode == "train":
        for warning in warnings_of(cfg):
            logging.warning(warning)
        result = exp.train(workdir, devices)
        evaluation, preempted = result.eval, result.preempted
    else:
        evaluation, preempted = exp.evaluate(
            cfg.init_from or workdir, devices,
            "config.init_from" if cfg.init_from else "--workdir"), False
    path = os.path.join(workdir, "eval.json")
    if evaluation is None:  # trained to the end before: its last evaluation stands
        scalars = {}
        if os.path.exists(path):
            with open(path) as f:
                scalars = json.load(f)
    else:
        scalars = evaluation.scalars()
        if jax.process_index() == 0:
            workdir_lib.write_atomic(path, json.dumps(scalars, indent=2))
    return scalars | ({"preempted": result.step} if preempted else {})


@contextlib.contextmanager
def compile_cache(workdir: str, environ: bool = False):
    """JAX's persistent compilation cache in DIR/jax_cache while many runs train (a sweep's
    trials, a comparison's arms): every run compiles the same programs, and reading them back
    cut a tiny trial from ~20 s to ~2.5 s here. `environ`: the environment names it too, for
    the worker processes spawned meanwhile (JAX reads it at import). The previous settings
    come back afterwards."""
    from jax.experimental.compilation_cache import compilation_cache
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
    before = {k: getattr(jax.config, k) for k in keys}
    values = before if before["jax_compilation_cache_dir"] else dict(  # the user's choice stands
        zip(keys, (os.path.join(os.path.abspath(workdir), "jax_cache"), 0, 0)))
    env_before = {k.upper(): os.environ.get(k.upper()) for k in keys} if environ else {}
    for k, v in values.items():
        jax.config.update(k, v)
        if environ:
            os.environ[k.upper()] = str(v)
    compilation_cache.reset_cache()  # JAX decides whether to use the cache once, until reset
    try:
        yield
    finally:
        for k, v in before.items():
            jax.config.update(k, v)
        for k, v in env_before.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        compilation_cache.reset_cache()


def sample(cfg: ml_collections.ConfigDict, workdir: str, devices=None) -> list[dict]:
    """Text from the params of `workdir`'s latest checkpoint (or config.init_from), for
    config.sample's prompt or prompts file: greedy or sampled, seeded. Writes
    `workdir/samples.jsonl` (one record per prompt) and returns the records."""
    from lm import decode
    from lm import train as train_lib
    s, checkpoint_from = cfg.sample, cfg.init_from or workdir
    problems = [p for ok, p in (
        (cfg.data.source == "seqio", f"config.data.source={cfg.data.source!r}: sampling needs "
                                     "a text vocabulary, so a seqio source"),
        (0 < s.max_new_tokens < cfg.model.max_len, f"config.sample.max_new_tokens="
                                                   f"{s.max_new_tokens} must be in [1, "
                                                   f"model.max_len={cfg.model.max_len})"),
        (s.temperature >= 0, f"config.sample.temperature={s.temperature} must be >= 0 "
                             "(0 = greedy)"),
        (0 <= s.top_k <= cfg.model.vocab_size, f"config.sample.top_k={s.top_k} must be in "
                                               f"[0, model.vocab_size] (0 = all)"),
        (not s.prompts_file or os.path.isfile(s.prompts_file),
         f"config.sample.prompts_file={s.prompts_file!r} is not a file")) if not ok]
    if problems:
        raise ValueError("cannot sample:\n  " + "\n  ".join(problems))
    workdir_lib.check_model_matches(cfg, checkpoint_from)
    vocab = Seqio(cfg).vocab()
    if s.prompts_file:
        with open(s.prompts_file) as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    else:
        prompts = [s.prompt]
    room = cfg.model.max_len - s.max_new_tokens  # a longer prompt keeps its last tokens
    encoded = [list(vocab.encode(p))[-room:] if room else [] for p in prompts]
    rt = train_lib.build_runtime(cfg, Uniform(), 1, devices)
    chunk, length = 16, min(cfg.model.max_len, max(map(len, encoded)) + s.max_new_tokens)
    outputs = []
    with rt.context():
        params, step = checkpoint.load_params(checkpoint_from, rt.abstract.params)
        for start in range(0, len(encoded), chunk):
            part = encoded[start:start + chunk]
            buffer = np.zeros((chunk, length), np.int32)
            for i, ids in enumerate(part):
                buffer[i, :len(ids)] = ids
            lengths = np.array([len(ids) for ids in part] + [0] * (chunk - len(part)), np.int32)
            out = decode.decode(rt.model, params, buffer, lengths, s.max_new_tokens,
                                temperature=s.temperature, top_k=s.top_k,
                                rng=jax.random.fold_in(jax.random.key(s.seed), start))
            outputs += np.asarray(out)[:len(part)].tolist()
    records = []
    for prompt, ids in zip(prompts, outputs):
        if vocab.eos_id in ids:  # the document ended there
            ids = ids[:ids.index(vocab.eos_id)]
        records.append({"prompt": prompt, "completion": vocab.decode(ids), "tokens": len(ids),
                        "step": step, "temperature": s.temperature, "top_k": s.top_k,
                        "seed": s.seed})
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "samples.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    return records


def recorded_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir's run recorded (config.json), over today's defaults
    (configs/base.py): fields added since then take their defaults, fields removed since are
    dropped, and JSON's lists are the tuples the config held."""
    from flax.traverse_util import flatten_dict
    from configs import base
    with open(os.path.join(workdir, workdir_lib.CONFIG_FILE)) as f:
        recorded = flatten_dict(json.load(f), sep=".")
    cfg = base.get_config()
    known = flatten_dict(cfg.to_dict(), sep=".")
    tuples = lambda v: tuple(map(tuples, v)) if isinstance(v, list) else v
    cfg.update_from_flattened_dict({k: tuples(v) for k, v in recorded.items() if k in known})
    return cfg


def parse_overrides(text: str) -> list[tuple[str, str]]:
    """"field=value;field=value" -> [(field, value)]."""
    out = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        field, sep, value = part.partition("=")
        if not sep or not field.strip():
            raise ValueError(f"override {part!r} is not FIELD=VALUE (write e.g. "
                             "'reweight.instance=loss_based;reweight.r=0.4')")
        out.append((field.strip(), value.strip()))
    return out


def apply_overrides(cfg: ml_collections.ConfigDict, text: str, where: str) -> None:
    """Sets each dotted field, the value read as the field's type (a string field takes the
    text as it is; any other a Python literal)."""
    for field, value in parse_overrides(text):
        *parents, leaf = field.split(".")
        node = cfg
        try:
            for p in parents:
                node = node[p]
            current = node[leaf]
        except (KeyError, AttributeError):
            raise ValueError(f"{where}: override {field}={value!r} names no config field") from None
        if isinstance(current, str):
            parsed = value
        else:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise ValueError(f"{where}: override {field}={value!r}: the field holds "
                                 f"{type(current).__name__}, and {value!r} is not one") from None
        try:
            node[leaf] = parsed
        except TypeError as e:
            raise ValueError(f"{where}: override {field}={value!r}: {e}") from None
