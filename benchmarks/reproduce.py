"""Every reproduction on the testbed: each method's comparison, its table, one JSON line.

  make testbed
  python benchmarks/reproduce.py                 # every method, the configs' own seeds (long)
  python benchmarks/reproduce.py loss_based      # one method by name
  python benchmarks/reproduce.py --quick         # one seed, 30 steps, the baseline and the
                                                 # method's own arm (METHODS): a smoke test,
                                                 # 11 min on 2 CPU cores (2026-12-02)
  python benchmarks/reproduce.py --processes=2   # two runs at a time (the sweep: one); not
                                                 # for --quick: a worker starts cold, one
                                                 # process carries eval rows and compilations

Each method is a compare config under configs/compare/ (RegMix's: its sweep a prerequisite,
the rank transfer of its mixtures from proxy to target scale an extra effect) whose docstring
holds the prediction written before it ran; its runs go to `--workdir/<method>/` (finished
runs are never rerun, so a long reproduction can be run in pieces; a run another method
finished with the same config, such as the uniform baseline the four planted-junk methods
share, is copied, not retrained; all runs share one JAX compilation cache,
`--workdir/jax_cache`). Scale: configs/testbed.py (1.2M params, vocabulary 1024, 500 steps of
16 x 128 tokens; ~3 minutes a run alone on 2 CPU cores). `--quick` results say only that the
pipeline works: one seed has no interval. The last line is JSON: per method and arm, the
paired difference of the headline eval loss from the baseline (Skill-It: of the final mean
accuracy over the skills; mean, CI, seeds, verdict), and the time it took.

Issue 34's rows: a composition (COMPOSED) also tables its combined arm against each part
alone, paired by seed; a comparison one scale up (SCALED, configs/testbed_x4.py) also runs or
reads its testbed comparison and reports, per arm, whether the verdict and the effect's size
carry over, and Spearman's rho of the arms' final losses across the two scales.
"""

import argparse
import glob
import json
import math
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runs import compare, executor, overrides  # noqa: E402
from runs import experiment  # noqa: E402
from lm.workdir import LOCK_FILE  # noqa: E402

# method -> (its config, the arm --quick keeps beside the baseline: the method itself, not an
# oracle). References and proxies are each comparison's prerequisites, trained first.
METHODS = {
    "loss_based": ("configs/compare/loss_planted.py", "linupper"),  # Sow et al. 2025, junk
    "odm": ("configs/compare/odm_planted.py", "odm_exp3"),  # Albalak et al. 2023, junk
    "skill_it": ("configs/compare/skill_it_lego.py", "skill_it"),  # Chen et al. 2023, LEGO
    "rho1": ("configs/compare/rho1_planted.py", "rho1"),  # Lin et al. 2024, junk
    "doremi": ("configs/compare/doremi_planted.py", "doremi"),  # Xie et al. 2023, junk
    "xent_diff": ("configs/compare/xent_diff.py", "xent_diff"),  # Moore & Lewis 2010, a target
    "mates": ("configs/compare/mates_planted.py", "mates"),  # Yu et al. 2024, target + 3 junks
    "upsample": ("configs/compare/upsample_wsd.py", "up_15"),  # Blakeney et al. 2024, WSD
    "loss_lr_grid": ("configs/compare/loss_lr_grid.py", "linupper_3e-3"),  # Sow et al., 6 domains
    "loss_real": ("configs/compare/loss_real.py", "linupper_3e-3"),  # each at the grid's best lr
    "regmix": ("configs/compare/regmix_planted.py", "regmix"),  # Liu et al. 2024, its sweep
    # Compositions (issue 34): methods of different kinds combined, against each alone.
    "compose_doremi_rho1": ("configs/compare/compose_doremi_rho1.py", "doremi_rho1"),
    "compose_mates_rho1": ("configs/compare/compose_mates_rho1.py", "mates_rho1"),
    "compose_upsample_quadratic": ("configs/compare/compose_upsample_quadratic.py",
                                   "up_15_quadratic"),
    # Scale transfer (issue 34): testbed comparisons at configs/testbed_x4.py's scale.
    "x4_rho1": ("configs/compare/x4_rho1_planted.py", "rho1"),
    "x4_loss": ("configs/compare/x4_loss_planted.py", "linupper"),
    "x4_doremi": ("configs/compare/x4_doremi_planted.py", "doremi"),
    # Skill-It as its paper ran it (issue 34): continual, LEGO as text, answer-only loss.
    "skill_it_continual": ("configs/compare/skill_it_continual.py", "skill_it"),
}
# Methods whose headline is not the default (skills: the final mean accuracy; else the loss).
HEADLINE = {"skill_it_continual": "loss/train_mean"}  # the answer's log-likelihood
# A composition's combined arm -> the arms of its parts alone, each a baseline it is tabled
# against (paired by seed), beside the comparison's own baseline.
COMPOSED = {"compose_doremi_rho1": ("doremi_rho1", ("doremi", "rho1")),
            "compose_mates_rho1": ("mates_rho1", ("mates", "rho1")),
            "compose_upsample_quadratic": ("up_15_quadratic", ("up_15", "quadratic"))}
# A comparison one scale up -> the testbed comparison it scales (its arms have the same names).
SCALED = {"x4_rho1": "rho1", "x4_loss": "loss_based", "x4_doremi": "doremi"}
# --quick, a sweep prerequisite: 6 proxies trained together (one program), no transfer check
SWEEP_QUICK = ("sweep.num_trials=6;sweep.vmap_trials=6;sweep.transfer_trials=0;"
               "sweep.num_simulations=10000;train.steps=20;data.check_records=False")
# --quick: 30 steps, one final eval, records not pre-read: a run is then mostly its ~30 s of
# start-up (data pipeline, checks, compile), which no shortening removes
QUICK = ("train.steps=30;train.eval_every=0;train.warmup_steps=3;train.checkpoint_every=30;"
         "data.check_records=False")
# 3 selections in 30 steps, as in 500; a third of the probes, a quarter of the diagnostic ones
QUICK_MATES = ("reweight.mates.stage_steps=10;reweight.mates.probe_size=64;"
               "reweight.mates.diagnostic_probes=32")
QUICK_EVAL_ROWS = 64  # --quick: validation rows per domain
MIN_TRANSFER = 6  # mixtures a transfer verdict needs (the minimum)


def sweep_effects(workdir: str) -> dict:
    """A comparison's sweep prerequisites (RegMix): per sweep, the rank transfer of its
    mixtures' target losses from proxy to target scale (reproduced: better than chance, by its
    interval) and the chosen mixture's weight on the planted junk."""
    out = {}
    for path in sorted(glob.glob(os.path.join(workdir, "prerequisites", "*", "regmix.json"))):
        with open(path) as f:
            summary = json.load(f)
        junk = {d: w for d, w in summary["chosen"].items() if d in ("noise", "duplicated")}
        t = summary.get("transfer", {"spearman": math.nan, "low": math.nan, "high": math.nan,
                                     "n": 0})
        verdict = ("too few mixtures" if t["n"] < MIN_TRANSFER or not math.isfinite(t["low"])
                   else "reproduced" if t["low"] > 0 else "not reproduced")
        out[f"{os.path.basename(os.path.dirname(path))}_transfer"] = {
            "effect": t["spearman"], "low": t["low"], "high": t["high"], "seeds": t["n"],
            "verdict": verdict, "chosen_junk_weight": junk}
    return out


def method_config(method: str, quick: bool, processes: int):
    """One method's comparison config; --quick: seed 0, the baseline and the method's arm,
    each run (prerequisites included) shortened."""
    path, quick_arm = METHODS[method]
    cfg = overrides.load_config_file(path)
    cfg.compare.processes = processes
    if quick:
        cfg.compare.seeds = "0"
        cfg.compare.eval_rows = QUICK_EVAL_ROWS
        for arm in [a for a in cfg.compare.arms if a not in (cfg.compare.baseline, quick_arm)]:
            del cfg.compare.arms[arm]
        mates = {a for a in cfg.compare.arms
                 if compare.run_config(cfg, a, 0).reweight.selector == "mates"}
        for name, spec in cfg.compare.arms.items():
            extra = f"{QUICK};{QUICK_MATES}" if name in mates else QUICK
            spec.overrides = ";".join(o for o in (spec.overrides, extra) if o)  # last: wins
        for spec in cfg.compare.prerequisites.values():  # the arms' eval rows too
            extra = (SWEEP_QUICK if spec.get("mode") == "sweep" else QUICK)
            extra += f";data.eval_rows={QUICK_EVAL_ROWS}"
            spec.overrides = ";".join(o for o in (spec.overrides, extra) if o)
    return cfg


def method_dir(workdir: str, method: str, quick: bool) -> str:
    return os.path.join(workdir, method + ("_quick" if quick else ""))


def planned_runs(cfg, workdir: str) -> list[tuple[str, str]]:
    """(a key, its run directory) of every run a comparison trains: its arms at each seed and
    its prerequisites. The key is the experiment config as sorted JSON with the comparison's
    directory written <DIR>, then the keys of the prerequisites it reads: two runs with one
    key train alike wherever their comparisons live (DoReMi's arms read its proxy's
    mixture.txt, so an arm is the same run only where the proxy is too)."""
    keys: dict[str, str] = {}

    def key(run_cfg) -> str:
        text = run_cfg.to_json(sort_keys=True).replace(workdir, "<DIR>")
        reads = [keys[n] for n in cfg.compare.prerequisites
                 if re.search(f"<DIR>/prerequisites/{re.escape(n)}(?![\\w.-])", text)]
        return "|".join([text] + reads)

    runs = []
    for name in compare.prerequisite_order(cfg):  # a prerequisite after those it reads
        keys[name] = key(compare.prerequisite_config(cfg, name, workdir))
        runs.append((keys[name], compare.prerequisite_dir(workdir, name)))
    return [(key(compare.run_config(cfg, arm, seed, workdir)), compare.run_dir(workdir, arm, seed))
            for arm in cfg.compare.arms for seed in compare.seeds_of(cfg)] + runs


def reuse_identical_runs(method: str, workdir: str, quick: bool) -> int:
    """Copies in every run of `method` that another method has already finished with the same
    experiment config (the four planted-junk methods share the uniform baseline; DoReMi's
    reference is that baseline's seed 0; cross-entropy difference and MATES share a target
    reference): a run is a function of its config, so training it again only costs time.
    Returns how many were copied."""
    finished = {}
    for other in METHODS:
        if other != method:
            runs = planned_runs(method_config(other, quick, 1), method_dir(workdir, other, quick))
            for key, d in runs:
                if executor.is_done(d):
                    finished.setdefault(key, d)
    copied = 0
    for key, d in planned_runs(method_config(method, quick, 1), method_dir(workdir, method, quick)):
        if key in finished and not os.path.exists(d):  # an attempt of its own resumes
            shutil.copytree(finished[key], d, ignore=shutil.ignore_patterns(LOCK_FILE))
            copied += 1
    return copied


def reproduce(method: str, workdir: str, quick: bool, processes: int) -> dict:
    """Runs (or reads) one method's comparison; returns its summary."""
    copied = reuse_identical_runs(method, workdir, quick)
    if copied:
        print(f"reproduce: {method}: {copied} run(s) copied from other methods' identical runs",
              file=sys.stderr, flush=True)
    return compare.run(method_config(method, quick, processes),
                       method_dir(workdir, method, quick))


def effects(summary: dict, name: str = "") -> dict:
    """Per non-baseline arm: the paired difference of the headline quantity `name` (default:
    the loss; skills: the final mean accuracy over them) and its verdict."""
    name = name or ("accuracy/skills_mean" if summary["skills"] else "loss/train_mean")
    out = {}
    for arm, a in summary["arms"].items():
        q = a["quantities"].get(name, {})
        if "diff" in q:
            d = q["diff"]
            out[arm] = {"effect": d["mean"], "low": d["low"], "high": d["high"], "seeds": d["n"],
                        "verdict": q["verdict"]}
    return out


def composition_effects(method: str, workdir: str, quick: bool) -> dict:
    """The combined arm against each of its parts alone, paired by seed: "<combined>_vs_<part>"
    -> its effect, as `effects` gives one against the baseline."""
    combined, parts = COMPOSED[method]
    cfg, d = method_config(method, quick, 1), method_dir(workdir, method, quick)
    runs = [compare.read_run(compare.run_dir(d, arm, seed), arm, seed)
            for arm in cfg.compare.arms for seed in compare.seeds_of(cfg)]
    headline = [x.strip() for x in cfg.compare.domains.split(",") if x.strip()] or None
    return {f"{combined}_vs_{part}": effects(compare.summarize(
                runs, part, cfg.compare.confidence, headline))[combined] for part in parts}


def transfer(small: dict, large: dict) -> dict:
    """Does the testbed's verdict hold one scale up? Per arm of both comparisons: its effect
    at each scale, whether the verdicts agree, the effect's ratio (large / small); and the
    rank agreement of every arm's final headline loss (baseline included) across the two
    scales: Spearman's rho over the arms (with 2 arms it is +-1: their order)."""
    import scipy.stats
    small_e, large_e = effects(small), effects(large)
    arms = {arm: {"testbed": small_e[arm], "x4": large_e[arm],
                  "verdict_agrees": small_e[arm]["verdict"] == large_e[arm]["verdict"],
                  "effect_ratio": large_e[arm]["effect"] / small_e[arm]["effect"]}
            for arm in small_e if arm in large_e}
    shared = [a for a in small["arms"] if a in large["arms"]]
    loss = lambda summary: [summary["arms"][a]["quantities"]["loss/train_mean"]["mean"]
                            for a in shared]
    rho = scipy.stats.spearmanr(loss(small), loss(large)).statistic if len(shared) > 1 \
        else math.nan
    return {"arms": arms, "rank_spearman": float(rho), "rank_arms": shared}


def train_seconds(summary: dict) -> float:
    """What the comparison's runs took: the sum of their training loops' wall times (resumes
    included, prerequisites not), whenever they ran."""
    return sum(a["quantities"]["seconds"]["mean"] * a["quantities"]["seconds"]["n"]
               for a in summary["arms"].values() if "seconds" in a["quantities"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("methods", nargs="*", help=f"some of {sorted(METHODS)} (default: all)")
    p.add_argument("--workdir", default="workdirs/reproduce")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--processes", type=int, default=1,
                   help="runs of a comparison trained at once (2 on 2 cores: ~1.25x throughput)")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    results = {}
    # one compilation cache for every method's runs (they compile the same programs), this
    # process's and its workers'
    with experiment.compile_cache(args.workdir, environ=True):
        for method in args.methods or list(METHODS):
            start = time.perf_counter()
            summary = reproduce(method, args.workdir, args.quick, args.processes)
            results[method] = {
                "baseline": summary["baseline"], "domains": summary["headline_domains"],
                "arms": effects(summary, HEADLINE.get(method, "")) | sweep_effects(
                    method_dir(args.workdir, method, args.quick)),
                "train_seconds": train_seconds(summary)}
            if method in COMPOSED:
                results[method]["arms"] |= composition_effects(method, args.workdir,
                                                               args.quick)
            if method in SCALED:  # the testbed comparison too (finished runs are not rerun)
                results[method]["transfer"] = transfer(
                    reproduce(SCALED[method], args.workdir, args.quick, args.processes),
                    summary)
            # this invocation's wall time: ~0 where every run had finished before
            results[method]["wall_seconds"] = time.perf_counter() - start
    effect = "effect [CI] (Δ loss; skills: Δ accuracy; *_transfer: Spearman)"
    print(f"{'method':<12} {'arm':<14} {effect:<34} seeds  verdict")
    for method, r in results.items():
        for arm, e in r["arms"].items():
            ci = f"{e['effect']:+.4f} [{e['low']:+.4f}, {e['high']:+.4f}]"
            print(f"{method:<12} {arm:<14} {ci:<34} {e['seeds']:>5}  {e['verdict']}")
    for method, r in results.items():
        if "transfer" in r:
            t = r["transfer"]
            print(f"{method}: from {SCALED[method]} (testbed) to x4, rank Spearman over "
                  f"{len(t['rank_arms'])} arms {t['rank_spearman']:+.2f}")
            for arm, a in t["arms"].items():
                print(f"  {arm:<14} testbed {a['testbed']['effect']:+.4f} "
                      f"({a['testbed']['verdict']}), x4 {a['x4']['effect']:+.4f} "
                      f"({a['x4']['verdict']}): verdict "
                      f"{'holds' if a['verdict_agrees'] else 'changes'}, effect x"
                      f"{a['effect_ratio']:.2f}")
    for method, r in results.items():
        print(f"{method}: this invocation {r['wall_seconds'] / 60:.1f} min, its runs' training "
              f"{r['train_seconds'] / 60:.1f} min")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
