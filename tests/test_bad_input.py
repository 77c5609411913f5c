"""Bad configs and bad data fail before any training, each with its own clear message, and
never touch a checkpoint already written."""

import json
import os

import jax
import pytest

from configs import base
from runs import experiment
from helpers import synthetic, tiny_config
from lm import checkpoint as ckpt_lib
from lm import loop
from lm import workdir as workdir_lib
from reweight.interface import Uniform


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A workdir holding a finished checkpoint of the tiny config, and its files' bytes."""
    workdir = str(tmp_path_factory.mktemp("run"))
    cfg = tiny_config(steps=2, checkpoint_every=2)
    workdir_lib.record(cfg, workdir)
    it = synthetic(cfg)
    loop.train(cfg, workdir, source=it, eval_sets=it.eval_batches(4), weighter=Uniform(),
               devices=jax.devices()[:1])
    return workdir, _files(workdir)


def _files(workdir) -> dict:
    out = {}
    for root, _, names in os.walk(workdir):
        for name in names:
            if root.startswith(ckpt_lib.checkpoint_dir(workdir)) or name == "config.json":
                with open(os.path.join(root, name), "rb") as f:
                    out[os.path.join(root, name)] = f.read()
    return out


def _domain(root, name, train=b'{"text": "a fine document"}\n' * 50):
    """A JSONL domain with train and validation files; returns its config entry."""
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for split, content in (("train", train), ("validation", b'{"text": "held out"}\n' * 20)):
        with open(os.path.join(root, name, f"{split}-00000-of-00001.jsonl"), "wb") as f:
            f.write(content)
    return f"{name}={root}/{name}/{{split}}-*.jsonl"


def _seqio(cfg, root, train_bytes=None, name="mine"):
    entry = _domain(root, name, train_bytes) if train_bytes is not None else _domain(root, name)
    cfg.data.update(source="seqio", domains=entry, vocab="byte", data_dir=str(root))
    cfg.model.vocab_size = 512


def _set(**fields):
    """Sets dotted config fields: _set(**{"train.lr": 0.0})."""
    def mutate(cfg, root):
        for key, value in fields.items():
            section, name = key.rsplit(".", 1) if "." in key else ("", key)
            target = cfg
            for part in filter(None, section.split(".")):
                target = target[part]
            target[name] = value
    return mutate


def _reference(field="workdir", checkpoint=True, config=True, **changes):
    """A reference workdir under the test's folder (a recorded config of the tiny model with
    `changes`, e.g. data.seq_len=8, and an empty finished step) named by config.reference.FIELD."""
    def mutate(cfg, root):
        path = os.path.join(root, f"ref_{field}")
        os.makedirs(os.path.join(path, "checkpoints", "5") if checkpoint else path)
        ref = tiny_config()
        for key, value in changes.items():
            section, name = key.split(".")
            ref[section][name] = value
        if config:
            workdir_lib.record(ref, path)
        cfg.reference[field] = path
    return mutate


def _pretrained(**changes):
    """config.init_from: a run under the test's folder (the tiny model's recorded config with
    `changes`, e.g. data.vocab=byte, and an empty finished step)."""
    def mutate(cfg, root):
        _reference(**changes)(cfg, root)
        cfg.init_from, cfg.reference.workdir = cfg.reference.workdir, ""
    return mutate


CASES = {
    # The core config fields (lm/validation.py).
    "zero width": (_set(**{"model.d_model": 0}), r"config\.model\.d_model must be in \(0"),
    "heads do not divide": (_set(**{"model.num_heads": 3}),
                            r"divisible by config\.model\.num_heads=3"),
    "odd head size": (_set(**{"model.d_model": 36}), r"head size .*=9 must be even"),
    "unknown dtype": (_set(**{"model.compute_dtype": "fp8"}),
                      r"config\.model\.compute_dtype='fp8' is unknown"),
    "rows longer than the model": (_set(**{"data.seq_len": 64}),
                                   r"config\.data\.seq_len=64 is longer than .*max_len=32"),
    "no prefetch": (_set(**{"data.prefetch": 0}), r"config\.data\.prefetch must be in \[1, 64\]"),
    "negative lr": (_set(**{"train.lr": -1.0}), r"config\.train\.lr must be in \(0, inf\), got -1"),
    "NaN lr": (_set(**{"train.lr": float("nan")}), r"config\.train\.lr must be in .* got nan"),
    "zero steps": (_set(**{"train.steps": 0}), r"config\.train\.steps must be in \(0"),
    "beta2 of 1": (_set(**{"train.b2": 1.0}), r"config\.train\.b2 must be < 1"),
    "batch vs mesh": (_set(**{"train.batch_size": 12}),
                      r"batch_size=12 .* not divisible by the data-parallel size 8"),
    "batch vs micro-batches": (_set(**{"train.microbatches": 3}),
                               r"divisible by config\.train\.microbatches=3"),
    "unknown NaN policy": (_set(**{"train.on_nonfinite": "ignore"}),
                           r"config\.train\.on_nonfinite='ignore' is unknown"),
    "never checkpoint": (_set(**{"train.checkpoint_every": 0}),
                         r"config\.train\.checkpoint_every must be in \(0"),
    "negative eval interval": (_set(**{"train.eval_every": -5}), r"config\.train\.eval_every"),
    "mesh too big": (_set(**{"mesh.shape": (3, 1, 1)}), r"config\.mesh\.shape"),
    "rule to a missing axis": (_set(**{"mesh.rules": (("batch", "dp"),)}),
                               r"config\.mesh\.rules maps 'batch' to mesh axis 'dp'"),
    "every problem listed": (_set(**{"train.lr": 0.0, "train.steps": 0}),
                             r"2 problem\(s\)(.|\n)*train\.lr(.|\n)*train\.steps"),
    # Methods (their factories).
    "unknown weighter": (_set(**{"reweight.instance": "nope"}),
                         r"config\.reweight\.instance='nope' is not a known"),
    "unknown mixture policy": (_set(**{"reweight.mixture": "nope"}),
                               r"config\.reweight\.mixture='nope' is not a known"),
    "unknown selector": (_set(**{"reweight.selector": "nope"}),
                         r"config\.reweight\.selector='nope' is not a known"),
    "negative temperature": (
        _set(**{"reweight.instance": "loss_based", "reweight.loss_based.r": -1.0}),
        r"config\.reweight\.loss_based\.r must be a finite number > 0, got -1"),
    "one MATES stage": (_set(**{"reweight.selector": "mates", "reweight.mates.stage_steps": 4}),
                        r"config\.reweight\.mates\.stage_steps .* below config\.train\.steps=4"),
    "every method's problems at once": (
        _set(**{"reweight.instance": "loss_based", "reweight.loss_based.strategy": "mid",
                "reweight.loss_based.r": 0.0, "reweight.mixture": "odm",
                "reweight.odm.smoothing": 1.0, "train.lr": -1.0}),
        r"4 problem\(s\)(.|\n)*train\.lr(.|\n)*loss_based\.strategy='mid'(.|\n)*"
        r"loss_based\.r must(.|\n)*odm\.smoothing must"),
    # Mixture weights.
    "negative weight": (_set(**{"data.weights": "2,-1,0"}), r"weights must be >= 0"),
    "weight of an unknown domain": (_set(**{"data.weights": "synthetic_0:1,nope:1"}),
                                    r"unknown domain\(s\) \['nope'\]"),
    "all weights zero": (_set(**{"data.weights": "0,0,0"}), r"must not all be zero"),
    "too few weights": (_set(**{"data.weights": "1,1"}), r"one entry per domain \(3"),
    "missing weights file": (_set(**{"data.weights": "file:/no/such/mixture.txt"}),
                             r"weights file '/no/such/mixture\.txt' .* does not exist"),
    "NaN weight": (_set(**{"data.weights": "1,nan,1"}),
                   r"config\.data\.weights='1,nan,1': weights must be finite"),
    "a domain weighted twice": (_set(**{"data.weights": "synthetic_0:1,synthetic_0:2"}),
                                r"config\.data\.weights=.* name domain\(s\) \['synthetic_0'\] more "
                                r"than once"),
    "skills graph of the wrong size": (
        _set(**{"reweight.mixture": "skill_it", "reweight.skill_it.graph": "1,0;0,1"}),
        r"config\.reweight\.skill_it\.graph='1,0;0,1': the skills graph must be a finite 3x3"),
    "unknown source": (_set(**{"data.source": "nope"}), r"config\.data\.source='nope' is unknown"),
    # Data files (seqio).
    "no files": (lambda c, r: (_seqio(c, r), c.data.update(
                     domains=f"mine={r}/none/{{split}}-*.jsonl")),
                 r"domain 'mine': no files match"),
    "empty files": (lambda c, r: _seqio(c, r, b""), r"domain 'mine'.* are all empty"),
    "not UTF-8": (lambda c, r: _seqio(c, r, b'{"text": "caf\xe9"}\n' * 5), r"not valid UTF-8"),
    "no text field": (lambda c, r: _seqio(c, r, b'{"body": "x"}\n' * 5),
                      r"no string field 'text'"),
    "blank documents only": (lambda c, r: _seqio(c, r, b"\n\n\n"), r"hold no document"),
    "a bad line deep in a file": (  # found before the first step, not when read at step 120
        lambda c, r: _seqio(c, r, b'{"text": "a fine document"}\n' * 2999 + b"{oops\n" +
                            b'{"text": "a fine document"}\n' * 1000),
        r"train-00000-of-00001\.jsonl:3000: not valid JSON"),
    "every problem at once": (
        lambda c, r: (_seqio(c, r, b'{"body": 1}\n' * 3), c.train.update(lr=-1.0),
                      c.data.update(weights="mine:2,mine:1")),
        r"6 problem\(s\)(.|\n)*train\.lr(.|\n)*more than once(.|\n)*:1: no string field"),
    "no built-in tokenizer of that size": (
        lambda c, r: (_seqio(c, r), c.data.update(vocab="builtin"), c.model.update(vocab_size=4096)),
        r"config\.data\.vocab='builtin' reads the corpus tokenizer of config\.model\.vocab_size="
        r"4096 under config\.data\.data_dir"),
    "unknown built-in domain": (_set(**{"data.source": "seqio", "data.domains": "novels"}),
                                r"unknown built-in domain\(s\) \['novels'\]"),
    "vocabulary too big for the model": (
        lambda c, r: (_seqio(c, r), c.model.update(vocab_size=64)),
        r"config\.model\.vocab_size=64 is smaller than the tokenizer's"),
    # Reference models (experiment.reference_specs).
    "reference directory missing": (_set(**{"reference.workdir": "/no/such/ref"}),
                                    r"config\.reference\.workdir='/no/such/ref': no such "
                                    r"directory; train the reference first"),
    "reference without a checkpoint": (_reference(checkpoint=False),
                                       r"config\.reference\.workdir=.* holds no checkpoint"),
    "reference without its config": (_reference(config=False), r"has no config\.json, so its "
                                                                 r"model shape is unknown"),
    "reference of another vocabulary size": (
        _reference(**{"model.vocab_size": 128}),
        r"config\.reference\.workdir=.*trained with model\.vocab_size=128 and this run has "
        r"config\.model\.vocab_size=64.*--config\.model\.vocab_size=64"),
    "reference of another sequence length": (
        _reference(**{"data.seq_len": 8}),
        r"trained with data\.seq_len=8 and this run has config\.data\.seq_len=16"),
    "reference of another tokenizer": (
        lambda c, r: (_seqio(c, r), _reference(field="target", **{
            "data.source": "seqio", "data.vocab": "builtin", "model.vocab_size": 512})(c, r)),
        r"the reference config\.reference\.target=.* was trained on the ids of the built-in "
        r"tokenizer under data_dir .*, and this run reads the ids of data\.vocab 'byte'"),
    "RHO-1 without a reference": (_set(**{"reweight.instance": "rho1"}),
                                  r"config\.reweight\.instance='rho1' need\(s\) a frozen "
                                  r"reference model in the step, and config\.reference\.workdir "
                                  r"is empty"),
    "per-token DoReMi without a reference": (
        _set(**{"reweight.mixture": "doremi", "reweight.doremi.excess": "token"}),
        r"host method 'mixture' need\(s\) a frozen reference model"),
    "cross-entropy difference without its references": (
        _set(**{"reweight.selector": "ref_select", "reweight.ref_select.mode": "xent_diff"}),
        r"ref_select\.mode='xent_diff' reads the reference model\(s\) config\.reference\."
        r"general, config\.reference\.target, which are not set"),
    "RHO-1 keeps nothing": (_set(**{"reweight.instance": "rho1", "reweight.rho1.keep": 0.0}),
                            r"config\.reweight\.rho1\.keep must be in \(0, 1\], got 0"),
    # Checkpoints and workdirs.
    "init from nowhere": (_set(init_from="/no/such/run"), r"init_from='/no/such/run': no checkpoint"),
    "init from another tokenizer's run": (
        _pretrained(**{"data.source": "seqio", "data.vocab": "byte"}),
        r"config\.init_from=.* was trained on the ids of data\.vocab 'byte', and this run reads "
        r"the synthetic source's own ids"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_clearly_before_training(case, run_dir, tmp_path):
    workdir, before = run_dir
    mutate, message = CASES[case]
    cfg = tiny_config(steps=4, checkpoint_every=2)
    mutate(cfg, tmp_path)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        experiment.run(cfg, workdir, allow_config_change=True)
    assert info.match(message), str(info.value)
    assert _files(workdir) == before


def test_a_workdir_refuses_another_configs_run_naming_the_fields(run_dir):
    workdir, before = run_dir
    cfg = tiny_config(steps=4, checkpoint_every=2)
    cfg.model.d_model = 64
    cfg.train.lr = 0.5
    with pytest.raises(ValueError, match=r"another config(.|\n)*model\.d_model: 32 -> 64"
                                         r"(.|\n)*train\.lr: 0\.01 -> 0\.5"):
        experiment.run(cfg, workdir)
    assert _files(workdir) == before
    cfg = tiny_config(steps=2, checkpoint_every=5, log_every=3, run_steps=1)  # how it's watched
    workdir_lib.check_resume(cfg, workdir, defaults=base.get_config(), has_checkpoint=True)


def _recorded_before_the_rename(cfg, workdir):
    """Records `cfg` as a run did before loss-based's fields moved under reweight.loss_based
    and before config.train.eval_at_start existed."""
    recorded = json.loads(cfg.to_json_best_effort())
    recorded["reweight"].update(recorded["reweight"].pop("loss_based"))
    del recorded["train"]["eval_at_start"]
    with open(os.path.join(workdir, workdir_lib.CONFIG_FILE), "w") as f:
        json.dump(recorded, f)


def _loss_based_config():
    cfg = tiny_config(steps=4)
    cfg.reweight.update(instance="loss_based", loss_based=dict(strategy="linupper", r=0.4))
    return cfg


def test_an_older_runs_config_resumes_and_reads_under_todays_names(tmp_path):
    cfg, workdir = _loss_based_config(), str(tmp_path)
    _recorded_before_the_rename(cfg, workdir)
    assert "strategy" in json.load(open(os.path.join(workdir, "config.json")))["reweight"]
    workdir_lib.check_resume(cfg, workdir, defaults=base.get_config(), has_checkpoint=True)
    assert experiment.recorded_config(workdir).to_json() == cfg.to_json()


def test_an_older_runs_real_differences_are_named_and_nothing_else(tmp_path):
    cfg, workdir = _loss_based_config(), str(tmp_path)
    _recorded_before_the_rename(cfg, workdir)
    cfg.reweight.loss_based.r = 1.0
    cfg.train.eval_at_start = True  # added since, and not its default: the older run did not
    with pytest.raises(ValueError, match="--allow_config_change") as info:
        workdir_lib.check_resume(cfg, workdir, defaults=base.get_config(), has_checkpoint=True)
    named = str(info.value).split("Differing fields:\n  ")[1].split("\nUse ")[0]
    assert named.split("\n  ") == ["reweight.loss_based.r: 0.4 -> 1.0",
                                   "train.eval_at_start: '<absent>' -> True"]
    workdir_lib.check_resume(cfg, workdir, defaults=base.get_config(), has_checkpoint=True,
                             allow_config_change=True)


def test_a_new_default_of_a_method_the_run_does_not_choose_is_no_difference(tmp_path):
    """Runs recorded before DoReMi's paper form (update_every 10, no sampling field): one of
    another method resumes; a DoReMi run is told the field that changed."""
    for mixture in ("fixed", "doremi"):
        cfg = tiny_config(steps=4)
        cfg.reweight.mixture = mixture
        recorded = json.loads(cfg.to_json_best_effort())
        recorded["reweight"]["doremi"]["update_every"] = 10
        del recorded["reweight"]["doremi"]["sampling"]
        workdir = tmp_path / mixture
        workdir.mkdir()
        (workdir / workdir_lib.CONFIG_FILE).write_text(json.dumps(recorded))
        if mixture == "fixed":
            workdir_lib.check_resume(cfg, str(workdir), defaults=base.get_config(),
                                     has_checkpoint=True)
            continue
        with pytest.raises(ValueError, match="--allow_config_change") as info:
            workdir_lib.check_resume(cfg, str(workdir), defaults=base.get_config(),
                                     has_checkpoint=True)
        named = str(info.value).split("Differing fields:\n  ")[1].split("\nUse ")[0]
        assert named.split("\n  ") == ["reweight.doremi.update_every: 10 -> 1"]


def test_loading_params_of_another_model_names_the_field(run_dir, tmp_path):
    workdir, before = run_dir
    cfg = tiny_config(steps=4)
    cfg.init_from = workdir
    cfg.model.num_layers = 3
    with pytest.raises(ValueError, match=r"set these fields as it had them:\n  "
                                         r"model\.num_layers: 2 -> 3"):
        experiment.run(cfg, str(tmp_path))
    with pytest.raises(ValueError, match=r"model\.num_layers: 2 -> 3"):
        experiment.run(cfg, workdir, mode="eval")
    assert _files(workdir) == before
    assert json.load(open(os.path.join(workdir, "config.json")))["model"]["num_layers"] == 2
