"""The experiment builder: a config becomes its data, its methods and a run of `lm.loop`.

Every entry point builds through here (training, evaluation, sweeps, the skill-graph estimate,
comparisons), so `config.data.source` is dispatched in one place (`SOURCES`) and methods are
built one way (`reweight.registry`, with the `Env` below telling them about the data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from data import sources
from data.mixing import parse_weights
from lm import checkpoint, downstream, loop, sharding, validation
from lm import hooks as hooks_lib
from lm import reference as reference_lib
from lm import workdir as workdir_lib
from reweight import registry
from reweight.interface import HostMethod, Uniform, Weighter

TOKENIZER_FILE = "tokenizer_identity.json"  # in a run's workdir: `tokenizer_identity`


class Env:
    """The `reweight.interface.MethodEnv` of a config: what method factories know of the data."""

    def __init__(self, cfg: ml_collections.ConfigDict, source: Any = None,
                 domain_names: tuple | None = None):
        self.cfg = cfg
        self.source = source or sources.source_of(cfg)
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
    data: sources.Data
    weighter: Weighter
    methods: list[HostMethod]
    # name (a field of config.reference) -> the frozen reference model it names
    references: dict[str, reference_lib.ReferenceSpec] = dataclasses.field(default_factory=dict)
    hooks: list[hooks_lib.Hook] = dataclasses.field(default_factory=list)  # config.train.hooks

    def train(self, workdir: str, devices=None,
              hooks: Sequence[hooks_lib.Hook] = ()) -> loop.TrainResult:
        """Trains in `workdir`; the config's hooks and the caller's `hooks` (`lm.hooks.Hook`)
        act after evaluation and the host methods, before the checkpoint."""
        if self.data.source is None:
            raise ValueError("this experiment was built for evaluation (train=False): build it "
                             "with train=True to train")
        if jax.process_index() == 0:  # what its ids mean, for runs that read its params
            workdir_lib.write_atomic(os.path.join(workdir, TOKENIZER_FILE),
                                     json.dumps(tokenizer_identity(self.cfg), indent=2))
        return loop.train(self.cfg, workdir, source=self.data.source,
                          eval_sets=self.data.eval_sets, weighter=self.weighter,
                          methods=self.methods, hooks=[*self.hooks, *hooks], devices=devices,
                          references=self.references, eval_bytes=self.data.eval_bytes)

    def evaluate(self, checkpoint: str, devices=None, field: str = "the checkpoint"):
        """The eval sets' losses under the params of `checkpoint` (a workdir); `field` is
        what error messages call it."""
        return loop.evaluate(self.cfg, checkpoint, eval_sets=self.data.eval_sets,
                             devices=devices, field=field, eval_bytes=self.data.eval_bytes)


def build(cfg: ml_collections.ConfigDict, *, train: bool = True, data: sources.Data | None = None,
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

    source = attempt(lambda: sources.source_of(cfg))
    weighter, methods, references = Uniform(), [], {}
    hooks = attempt(lambda: config_hooks(cfg), []) if train else []
    h = cfg.eval.harness
    if train and h.in_loop and downstream.task_specs(h.tasks) and isinstance(source,
                                                                             sources.Seqio):
        hooks.append(downstream.Harness(cfg, source.vocab()))
    if source is not None:
        env = Env(cfg, source, data.domain_names if data else None)
        if train:
            attempt(lambda: check_weights(cfg, env.domain_names))
            # Every bad field of the chosen methods, one problem each; a method with any is not
            # built (its factory would raise them again, as one).
            weighter_problems = registry.problems(cfg, ("instance",))
            host_problems = registry.problems(cfg, ("mixture", "selector"))
            found += weighter_problems + host_problems
            if not weighter_problems:
                weighter = attempt(lambda: registry.make_weighter(cfg, env), Uniform())
            if not host_problems:
                methods = attempt(lambda: registry.make_host_methods(cfg, env), [])
            references, reference_problems = reference_specs(cfg)
            found += reference_problems
            found += _step_reference_problems(cfg, weighter, methods)
        if data is None:
            found += source.check(train)
    if found:
        raise ValueError(f"{len(found)} problem(s) before any work:\n  " + "\n  ".join(found))
    return Experiment(cfg, data or source.build(train), weighter, methods, references, hooks)


def config_hooks(cfg: ml_collections.ConfigDict) -> list[hooks_lib.Hook]:
    """The loop hooks config.train.hooks names: "package.module:factory,...", each factory
    called with the config and returning an `lm.hooks.Hook` (a hook from the command line,
    with nothing under lm/ edited)."""
    out = []
    for path in (p.strip() for p in cfg.train.hooks.split(",") if p.strip()):
        module, sep, attr = path.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr) if sep else None
        except (ImportError, AttributeError) as e:
            raise ValueError(f"config.train.hooks: cannot import {path!r} ({e})") from None
        if factory is None:
            raise ValueError(f"config.train.hooks entry {path!r} is not 'package.module:factory'")
        hook = factory(cfg)
        if not isinstance(hook, hooks_lib.Hook):
            raise ValueError(f"config.train.hooks: {path!r} returned {type(hook).__name__}, not "
                             "an lm.hooks.Hook")
        out.append(hook)
    return out


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
    if workdir_lib.read_config(path) is None:
        return [f"{at} has no {workdir_lib.CONFIG_FILE}, so its model shape is unknown: give "
                "the --workdir of a run of this project"]
    ref, out = recorded_config(path), []
    same = (("model.vocab_size", ref.model.vocab_size, cfg.model.vocab_size),
            ("data.source", ref.data.source, cfg.data.source),
            ("data.seq_len", ref.data.seq_len, cfg.data.seq_len))
    for key, theirs, ours in same:
        if theirs != ours:
            out.append(f"{at}: the reference was trained with {key}={theirs!r} and this run has "
                       f"config.{key}={ours!r}; a reference must score the same tokens (same "
                       f"tokenizer, vocabulary and row length): train a reference with "
                       f"--config.{key}={ours!r}, or set config.{key} as the reference had it")
    return out or tokenizer_problems(cfg, path, f"the reference {at}")


def tokenizer_of(cfg: ml_collections.ConfigDict) -> str:
    """What a config's token ids mean, as its fields name it: a generated source's own ids
    (synthetic, LEGO as words) or the text tokenizer data.vocab, the built-in one read from
    data.data_dir. Two configs with different names train or score different tokens."""
    d = cfg.data
    if d.source == "synthetic" or (d.source == "lego" and d.lego_render == "words"):
        return f"the {d.source} source's own ids"
    if d.vocab == "builtin":
        return f"the ids of the built-in tokenizer under data_dir {os.path.realpath(d.data_dir)}"
    return f"the ids of data.vocab {d.vocab!r}"


def tokenizer_identity(cfg: ml_collections.ConfigDict) -> dict:
    """What a config's token ids mean, as data.vocabulary names a text tokenizer (kind, its
    file's sha256, size, eos/start ids, and where the file was), or a generated source's own
    ids ({"kind": "lego ids"}). A training run records it (TOKENIZER_FILE), so a run that
    continues, evaluates or scores with its params checks the tokenizer's contents, not the
    config's path to it: a copied or moved tokenizer passes, a rewritten one does not."""
    d = cfg.data
    if d.source == "synthetic" or (d.source == "lego" and d.lego_render == "words"):
        return {"kind": f"{d.source} ids"}
    from data import vocabulary
    return vocabulary.load(d.vocab, data_dir=d.data_dir,
                           vocab_size=cfg.model.vocab_size).identity()


def _run_of(path: str) -> str | None:
    """The run directory `path` names (a workdir, or its checkpoints/ folder): the one that
    holds its config.json; None if neither does."""
    for where in (path, os.path.dirname(os.path.normpath(path))):
        if workdir_lib.read_config(where) is not None:
            return where
    return None


def recorded_tokenizer(run: str) -> dict | None:
    """The tokenizer identity a training run in `run` (or its checkpoints/ folder) recorded;
    None for a run from before the record."""
    where = _run_of(run)
    path = os.path.join(where, TOKENIZER_FILE) if where else ""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def tokenizer_problems(cfg: ml_collections.ConfigDict, run: str, at: str) -> list[str]:
    """The params in `run` were trained on one tokenizer's ids: continuing, evaluating or
    scoring with them on another's raises no shape error, it only reads noise. `at` names the
    field that points at `run`. A run from before TOKENIZER_FILE is checked by its config's
    fields (`tokenizer_of`)."""
    if (recorded := recorded_tokenizer(run)) is not None:
        from data import vocabulary
        try:
            ours = tokenizer_identity(cfg)
        except (ValueError, FileNotFoundError):
            return []  # the config's own tokenizer does not load: its checks say so
        if not (changes := vocabulary.identity_changes(recorded, ours)):
            return []
        differs = f"another tokenizer's ids than this run reads (recorded -> now: {changes})"
    else:
        if (where := _run_of(run)) is None:
            return []  # nothing recorded to check against
        theirs, ours = tokenizer_of(recorded_config(where)), tokenizer_of(cfg)
        if theirs == ours:
            return []
        differs = f"{theirs}, and this run reads {ours}"
    return [f"{at} was trained on {differs}: the same ids would mean other tokens. Set "
            "config.data (source, vocab, data_dir) as that run had them, with the same "
            "tokenizer file, or train it again with this run's tokenizer"]


def _step_reference_problems(cfg, weighter: Weighter, methods: Sequence[HostMethod]) -> list:
    """A method that needs the reference in the step, and none named."""
    # The step's weighter is the instance method's, or a mixture's in-step part (DoReMi).
    chosen = (f"config.reweight.instance={cfg.reweight.instance!r}"
              if cfg.reweight.instance != "uniform" else
              f"config.reweight.mixture={cfg.reweight.mixture!r}")
    needs = [chosen] if getattr(weighter, "needs_reference", False) else []
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
    for kind, name in registry.FIELDS:
        chosen = cfg.reweight[kind]
        if chosen == name:
            continue
        was = default[name]
        for key, value in cfg.reweight[name].items():
            if value != was[key]:
                out.append(f"config.reweight.{name}.{key} is set, but config.reweight.{kind}="
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
    if stopped early; eval.json gets them, the downstream tasks' (harness/..., lm/downstream.py)
    and the corpus fingerprint of the files it read (`corpus/fingerprint`, data/fingerprint.py;
    a finished run's file is kept)."""
    sharding.maybe_initialize_distributed(cfg.mesh)
    problems = validation.problems(cfg, jax.device_count(), jax.process_count())
    problems += downstream.problems(cfg)
    if mode == "train":
        problems += workdir_problems(cfg, workdir)
        from configs import base
        workdir_lib.check_resume(cfg, workdir, defaults=base.get_config(),
                                 has_checkpoint=checkpoint.has_checkpoint(workdir),
                                 allow_config_change=allow_config_change)
    if cfg.init_from:
        workdir_lib.check_model_matches(cfg, cfg.init_from)
        problems += tokenizer_problems(cfg, cfg.init_from, f"config.init_from={cfg.init_from!r}")
    if mode == "eval" and not cfg.init_from:
        workdir_lib.check_model_matches(cfg, workdir, "--workdir")
    resumes = mode == "train" and checkpoint.has_checkpoint(workdir)
    if resumes or (mode == "eval" and not cfg.init_from):
        problems += tokenizer_problems(cfg, workdir, f"--workdir={workdir!r}")
    exp = build(cfg, train=mode == "train", problems=problems)
    if resumes and not allow_config_change:
        if changes := reference_changes(workdir, exp.references):
            raise ValueError("the reference model changed under a run:\n  " +
                             "\n  ".join(changes))
    tasks = downstream.task_specs(cfg.eval.harness.tasks)
    harness = {}  # the downstream tasks' scalars, for eval.json
    if mode == "train":
        for warning in warnings_of(cfg):
            logging.warning(warning)
        result = exp.train(workdir, devices)
        evaluation, preempted = result.eval, result.preempted
        done = downstream.read(workdir) if tasks and cfg.eval.harness.in_loop else None
        if done and done["step"] == cfg.train.steps:
            harness = downstream.scalars(done)
    else:
        field = "config.init_from" if cfg.init_from else "--workdir"
        evaluation, preempted = exp.evaluate(cfg.init_from or workdir, devices, field), False
        if tasks:
            harness = downstream.scalars(downstream.evaluate(
                cfg, cfg.init_from or workdir, sources.source_of(cfg).vocab(), workdir,
                devices=devices, field=field))
    path = os.path.join(workdir, "eval.json")
    if evaluation is None:  # trained to the end before: its last evaluation stands
        scalars = {}
        if os.path.exists(path):
            with open(path) as f:
                scalars = json.load(f)
    else:
        scalars = evaluation.scalars() | harness
        if corpus := sources.source_of(cfg).fingerprint():  # which files these numbers are of
            scalars |= {f"corpus/{k}": v for k, v in corpus.items()}
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


def recorded_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir's run recorded (config.json), over today's defaults
    (configs/base.py): fields renamed since are read under today's names
    (`lm.workdir.RENAMED`), fields added since take their defaults, fields removed since are
    dropped, and JSON's lists are the tuples the config held."""
    from flax.traverse_util import flatten_dict
    from configs import base
    recorded = workdir_lib.read_config(workdir)
    if recorded is None:
        raise FileNotFoundError(f"{workdir} has no {workdir_lib.CONFIG_FILE}: give the workdir "
                                "of a run of this project")
    recorded = flatten_dict(recorded, sep=".")
    cfg = base.get_config()
    known = flatten_dict(cfg.to_dict(), sep=".")
    tuples = lambda v: tuple(map(tuples, v)) if isinstance(v, list) else v
    cfg.update_from_flattened_dict({k: tuples(v) for k, v in recorded.items() if k in known})
    return cfg
