"""Every experiment config loads, names its command, and every comparison's arms and
prerequisites resolve to configs whose overrides name real fields and whose weights parse: a
typo fails here, not an hour into a comparison."""

import glob
import importlib
import json
import os

import pytest

from runs import compare, executor, overrides
from data import sources
from runs import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                 if not p.endswith("__init__.py"))
COMPARES = sorted(os.path.relpath(p, ROOT)
                  for p in glob.glob(os.path.join(ROOT, "configs", "compare", "*.py"))
                  if not p.endswith(("__init__.py", "base.py")))


@pytest.mark.parametrize("path", CONFIGS + COMPARES)
def test_config_loads_and_names_its_command(path):
    module = importlib.import_module(path[:-3].replace(os.sep, "."))
    module.get_config()
    assert "python " in (module.__doc__ or ""), f"{path}: its docstring gives no command"


@pytest.mark.parametrize("path", COMPARES)
def test_comparison_arms_and_prerequisites_resolve(path):
    cfg = overrides.load_config_file(path)
    compare.check_config(cfg)
    for arm in cfg.compare.arms:
        run_cfg = compare.run_config(cfg, arm, 0, "workdir")
        assert run_cfg.seed == 0
        # the weights parse for the arm's domains (data.weights=natural once failed every run)
        if not run_cfg.data.weights.startswith("file:"):  # a prerequisite writes the file
            env = experiment.Env(run_cfg, sources.source_of(run_cfg))
            experiment.check_weights(run_cfg, env.domain_names)
    for name in cfg.compare.prerequisites:
        compare.prerequisite_config(cfg, name, "workdir")
    doc = importlib.import_module(path[:-3].replace(os.sep, ".")).__doc__ or ""
    assert "Prediction" in doc, f"{path}: a comparison's prediction goes in its docstring"


def test_every_methods_fields_are_its_modules_and_its_defaults_pass_its_checks():
    """configs/base.py holds config.reweight.<name> as each method module declares it, and a
    method chosen with its defaults (and the references it reads set) has no problem."""
    from configs import base
    from reweight import registry
    for (kind, name), module in registry.FIELDS.items():
        cfg = base.get_config()
        declared = importlib.import_module(module).defaults()
        assert cfg.reweight[name].to_dict() == declared.to_dict(), name
        cfg.reweight[kind] = name
        cfg.reference.update(workdir="ref", target="target", general="general")
        assert registry.problems(cfg) == [], name


def load_reproduce():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "reproduce", os.path.join(ROOT, "benchmarks", "reproduce.py"))
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    return reproduce


def test_reproduce_quick_arm_is_each_methods_own():
    """`reproduce.py --quick` keeps the baseline and one arm: it must be a real arm and the
    method itself (it once kept the alphabetically first, the clean-only oracle)."""
    reproduce = load_reproduce()
    for method, (path, arm) in reproduce.METHODS.items():
        cfg = overrides.load_config_file(path)
        assert arm in cfg.compare.arms and arm != cfg.compare.baseline, (method, arm)
        run_cfg = compare.run_config(cfg, arm, 0, "workdir")
        base_cfg = compare.run_config(cfg, cfg.compare.baseline, 0, "workdir")
        assert (run_cfg.reweight, run_cfg.data.weights) != (
            base_cfg.reweight, base_cfg.data.weights), f"{method}: {arm} reweights nothing"


@pytest.mark.parametrize("quick", [True, False])
def test_reproduce_copies_runs_another_method_finished(tmp_path, quick):
    """The planted-junk methods share one uniform baseline, trained once: a finished run is
    copied to every method whose run has the same config, never over a run of its own, and
    never a run whose config differs."""
    reproduce = load_reproduce()
    here = lambda m, arm, seed=0: compare.run_dir(  # noqa: E731
        reproduce.method_dir(str(tmp_path), m, quick), arm, seed)
    done = here("loss_based", "uniform")
    os.makedirs(done)
    for name, text in (("run.json", '{"status": "ok"}'), ("metrics.jsonl", "{}\n"),
                       ("run.lock", "1")):
        with open(os.path.join(done, name), "w") as f:
            f.write(text)
    os.makedirs(here("rho1", "uniform"))  # an attempt of its own: left to resume
    assert reproduce.reuse_identical_runs("odm", str(tmp_path), quick) == 1
    copy = here("odm", "uniform")
    assert sorted(os.listdir(copy)) == ["metrics.jsonl", "run.json"]  # not the lock
    assert reproduce.reuse_identical_runs("rho1", str(tmp_path), quick) == 0
    assert not os.listdir(here("rho1", "uniform"))
    assert reproduce.reuse_identical_runs("upsample", str(tmp_path), quick) == 0  # other data
    # DoReMi's reference is the uniform baseline's seed 0
    assert reproduce.reuse_identical_runs("doremi", str(tmp_path), quick) == 2
    assert executor.is_done(compare.prerequisite_dir(
        reproduce.method_dir(str(tmp_path), "doremi", quick), "reference"))


def test_reproduce_copies_a_composition_the_runs_of_its_parts(tmp_path):
    """DoReMi+RHO-1 shares DoReMi's reference, proxy, uniform and doremi runs: its doremi arm
    reads the proxy's mixture.txt in its own directory, the same run only because the proxy
    is; one scale up nothing is shared."""
    reproduce = load_reproduce()
    doremi = reproduce.method_dir(str(tmp_path), "doremi", False)
    cfg = reproduce.method_config("doremi", False, 1)
    done = [compare.prerequisite_dir(doremi, n) for n in ("reference", "proxy")] + [
        compare.run_dir(doremi, arm, seed) for arm in ("uniform", "doremi")
        for seed in compare.seeds_of(cfg)]
    for d in done:
        os.makedirs(d)
        with open(os.path.join(d, "run.json"), "w") as f:
            f.write('{"status": "ok"}')
    assert reproduce.reuse_identical_runs("compose_doremi_rho1", str(tmp_path), False) == 12
    assert reproduce.reuse_identical_runs("x4_rho1", str(tmp_path), False) == 0
    keys = dict((d, k) for k, d in reproduce.planned_runs(cfg, doremi))
    other = reproduce.method_config("doremi", False, 1)
    other.compare.prerequisites.proxy.overrides += ";reweight.doremi.eta=0.5"
    changed = dict((d, k) for k, d in reproduce.planned_runs(other, doremi))
    assert changed[compare.run_dir(doremi, "doremi", 0)] != keys[compare.run_dir(doremi,
                                                                                 "doremi", 0)]
    assert changed[compare.run_dir(doremi, "uniform", 0)] == keys[compare.run_dir(doremi,
                                                                                  "uniform", 0)]


def test_reproduce_tables_a_composition_against_each_part_and_a_transfer(monkeypatch):
    """The combined arm's paired difference from each part alone; and one scale up, per arm
    whether the verdict holds, the effect's ratio, and Spearman's rho of the arms' order."""
    reproduce = load_reproduce()
    final = {"uniform": 5.0, "doremi": 4.9, "rho1": 4.75, "doremi_rho1": 4.7}

    def read_run(workdir, arm, seed):
        evals = [{"step": 500, "eval/books/loss": final[arm] + 0.01 * seed * (arm == "rho1")}]
        return compare.Run(arm, seed, workdir, "ok", steps=500, eval_rows=8,
                           train_domains=["books"], evals=evals, tokens=1.0, step_flops=1.0,
                           flops=1.0, seconds=1.0)
    monkeypatch.setattr(compare, "read_run", read_run)
    cfg = reproduce.method_config("compose_doremi_rho1", False, 1)
    cfg.compare.domains = "books"
    monkeypatch.setattr(reproduce, "method_config", lambda *a: cfg)
    out = reproduce.composition_effects("compose_doremi_rho1", "w", False)
    assert out["doremi_rho1_vs_doremi"]["effect"] == pytest.approx(-0.2)
    assert out["doremi_rho1_vs_doremi"]["verdict"] == "better"
    assert out["doremi_rho1_vs_rho1"]["effect"] == pytest.approx(-0.07)  # rho1's seeds: +0.02

    def summary(arms):  # arm -> (final loss, paired difference from uniform, verdict)
        out = {"uniform": {"quantities": {"loss/train_mean": {"mean": 5.0}}}}
        for arm, (loss, d, verdict) in arms.items():
            out[arm] = {"quantities": {"loss/train_mean": {"mean": loss, "verdict": verdict,
                        "diff": {"mean": d, "low": d - 0.05, "high": d + 0.05, "n": 3}}}}
        return {"skills": [], "arms": out}
    small = summary({"rho1": (4.75, -0.25, "better"), "other": (5.01, 0.01, "no clear")})
    large = summary({"rho1": (4.6, -0.4, "better"), "other": (4.9, -0.1, "better")})
    t = reproduce.transfer(small, large)
    assert t["arms"]["rho1"]["verdict_agrees"] and not t["arms"]["other"]["verdict_agrees"]
    assert t["arms"]["rho1"]["effect_ratio"] == pytest.approx(1.6)
    assert t["rank_arms"] == ["uniform", "rho1", "other"]
    assert t["rank_spearman"] == pytest.approx(0.5)  # ranks (2, 1, 3) against (3, 1, 2)


def test_reproduce_regmix_is_a_comparison_with_its_sweep_first(tmp_path):
    """RegMix in reproduce.py: its sweep a prerequisite (--quick: 6 proxies in one program,
    no transfer check), its transfer read from the sweep's regmix.json, a verdict only from
    at least MIN_TRANSFER mixtures."""
    reproduce = load_reproduce()
    full, quick = (compare.prerequisite_config(reproduce.method_config("regmix", q, 1), "sweep",
                                               "w") for q in (False, True))
    assert (full.sweep.num_trials, full.sweep.transfer_trials) == (48, 10)
    assert (quick.sweep.num_trials, quick.sweep.vmap_trials, quick.sweep.transfer_trials,
            quick.train.steps) == (6, 6, 0, 20)
    d = tmp_path / "prerequisites" / "sweep"
    d.mkdir(parents=True)
    summary = {"chosen": {"books": 0.9, "noise": 0.1}, "transfer": {
        "spearman": 0.8, "low": 0.3, "high": 0.95, "n": 10}}
    (d / "regmix.json").write_text(json.dumps(summary))
    (effect,) = reproduce.sweep_effects(str(tmp_path)).values()
    assert effect["verdict"] == "reproduced" and effect["chosen_junk_weight"] == {"noise": 0.1}
    summary["transfer"] |= {"n": 5}
    (d / "regmix.json").write_text(json.dumps(summary))
    assert reproduce.sweep_effects(str(tmp_path))["sweep_transfer"]["verdict"] == (
        "too few mixtures")
