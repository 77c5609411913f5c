"""Compare runs: `python main.py --mode=compare --config=configs/compare/<name>.py --workdir=DIR`.

Trains every (arm, seed) of the config's `compare` section in DIR/runs/<arm>/seed<k>/ through
the ordinary entry point (`experiment.run`), as jobs of the one executor (runs/executor.py),
after the runs they need (`compare.prerequisites`:
a reference model, a DoReMi proxy, a Skill-It graph estimate, a RegMix sweep, each once in
DIR/prerequisites/<name>/, its workdir written `@name` in any overrides), then tables them
against the baseline arm: per arm, the mean over seeds and its confidence interval of the final
eval loss per domain and over the training domains (held-out domains apart), the area under the
eval-loss curve, accuracy where the eval has it, and the steps and the FLOPs (its method's
overhead included) at which the arm reaches the baseline's final loss; beside each,
the paired difference from the baseline (seed by seed) with its interval and a verdict. Each
domain's eval standard error over rows is shown too, so a reader sees whether the eval set or
the seeds limit the comparison.

Finished runs are never rerun, interrupted ones resume from their checkpoints, failed ones are
recorded (DIR/runs/<arm>/seed<k>/run.json) and the rest go on; the next invocation retries
them. With `compare.runs` set, existing workdirs are compared and nothing is trained.
Outputs in DIR: compare.md, compare.csv, compare.json, compare_curves.png,
compare_differences.png and, where a method changes them, compare_weights.png.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import math
import os
import re

import ml_collections
import numpy as np

from data import sources
from runs import executor, experiment, overrides, stats
from runs import jobs as jobs_lib
from lm import downstream
from lm import flops as flops_lib
from lm.metrics import read_metrics
from lm.model import ModelConfig



# The plan: which runs, with which configs.

PREREQUISITE_MODES = tuple(jobs_lib.KINDS)  # main.py modes a prerequisite may run
PREREQUISITE = re.compile(r"@([A-Za-z_]\w*)")  # "@name" in overrides: that prerequisite's workdir


def prerequisite_dir(workdir: str, name: str) -> str:
    return os.path.join(workdir, "prerequisites", name)


def resolve(text: str, cfg: ml_collections.ConfigDict, workdir: str, where: str) -> str:
    """Overrides with each "@name" replaced by prerequisite `name`'s workdir."""
    names = list(cfg.compare.prerequisites.keys())

    def sub(m: re.Match) -> str:
        if m.group(1) not in names:
            raise ValueError(f"{where}: {m.group(0)!r} names no prerequisite; declared: "
                             f"{names or 'none'} (add c.compare.prerequisites."
                             f"{m.group(1)} = base.arm(CONFIG, OVERRIDES))")
        return prerequisite_dir(workdir, m.group(1))
    return PREREQUISITE.sub(sub, text)


def prerequisite_order(cfg: ml_collections.ConfigDict) -> list[str]:
    """The prerequisites, each after those its overrides name (a cycle is an error)."""
    needs = {n: set(PREREQUISITE.findall(p.overrides)) & set(cfg.compare.prerequisites.keys())
             for n, p in cfg.compare.prerequisites.items()}
    order: list[str] = []
    while len(order) < len(needs):
        ready = [n for n in needs if n not in order and needs[n] <= set(order)]
        if not ready:
            raise ValueError("config.compare.prerequisites name each other in a cycle: "
                             f"{sorted(set(needs) - set(order))}")
        order += ready
    return order


def seeds_of(cfg: ml_collections.ConfigDict) -> list[int]:
    try:
        seeds = [int(s) for s in str(cfg.compare.seeds).split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"config.compare.seeds={cfg.compare.seeds!r} must be distinct integers "
                         ">= 0, comma-separated, e.g. '0,1,2'")
    return seeds


def check_config(cfg: ml_collections.ConfigDict) -> None:
    """The comparison's own fields, before any training: every problem in one error."""
    c, found = cfg.compare, []

    def need(ok, problem: str) -> None:
        if not ok:
            found.append(problem)

    def attempt(check) -> None:
        try:
            check()
        except ValueError as e:
            found.append(str(e))

    need(0 < c.confidence < 1, f"config.compare.confidence={c.confidence} must be in (0, 1)")
    arms: list = []
    if c.runs:
        attempt(lambda: arms.extend(a for a, _ in _run_globs(c.runs)))
    else:
        arms = list(c.arms.keys())
        need(arms, "config.compare.arms is empty: add arms, e.g. "
                   "c.compare.arms.uniform = base.arm('configs/tiny.py')")
        attempt(lambda: seeds_of(cfg))
        need(c.eval_rows >= 1, f"config.compare.eval_rows={c.eval_rows} must be >= 1")
        need(c.backend in ("local", "ray"), f"config.compare.backend={c.backend!r} is unknown; "
                                            "use local or ray")
        need(c.processes >= 1, f"config.compare.processes={c.processes} must be >= 1")
        specs = {f"config.compare.arms.{n}": c.arms[n] for n in arms}
        specs.update({f"config.compare.prerequisites.{n}": p
                      for n, p in c.prerequisites.items()})
        for where, spec in specs.items():
            attempt(lambda w=where, sp=spec: overrides.parse_overrides(
                resolve(sp.overrides, cfg, "", f"{w}.overrides")))
            attempt(lambda sp=spec: overrides.load_config_file(sp.config))
        attempt(lambda: overrides.parse_overrides(resolve(c.overrides, cfg, "",
                                                          "config.compare.overrides")))
        attempt(lambda: prerequisite_order(cfg))
        for name, p in c.prerequisites.items():
            need(p.get("mode", "train") in PREREQUISITE_MODES,
                 f"config.compare.prerequisites.{name}.mode={p.get('mode')!r} is unknown; use "
                 f"one of {PREREQUISITE_MODES}")
    need(not arms or c.baseline in arms, f"config.compare.baseline={c.baseline!r} is not an "
                                         f"arm; the arms are {arms}")
    if found:
        raise ValueError(f"{len(found)} problem(s) of the comparison before any work:\n  " +
                         "\n  ".join(found))


def run_config(cfg: ml_collections.ConfigDict, arm: str, seed: int,
               workdir: str = "") -> ml_collections.ConfigDict:
    """The experiment config of one run: the arm's file, the comparison's overrides, the arm's
    (`@name` read as the prerequisite's workdir under `workdir`), then the seed, the
    comparison's eval rows and no progress bar."""
    spec = cfg.compare.arms[arm]
    run_cfg = overrides.load_config_file(spec.config)
    for text, where in ((cfg.compare.overrides, "config.compare.overrides"),
                        (spec.overrides, f"config.compare.arms.{arm}.overrides")):
        overrides.apply_overrides(run_cfg, resolve(text, cfg, workdir, where), where)
    run_cfg.seed = seed
    run_cfg.data.eval_rows = cfg.compare.eval_rows
    run_cfg.train.progress_bar = False
    return run_cfg


def prerequisite_config(cfg: ml_collections.ConfigDict, name: str,
                        workdir: str) -> ml_collections.ConfigDict:
    """A prerequisite's experiment config: its file and its own overrides only (not the
    comparison's: a reference has its own data), its file's seed, no progress bar."""
    spec = cfg.compare.prerequisites[name]
    run_cfg = overrides.load_config_file(spec.config)
    where = f"config.compare.prerequisites.{name}.overrides"
    overrides.apply_overrides(run_cfg, resolve(spec.overrides, cfg, workdir, where), where)
    run_cfg.train.progress_bar = False
    return run_cfg


def run_dir(workdir: str, arm: str, seed: int) -> str:
    return os.path.join(workdir, "runs", arm, f"seed{seed}")


# Running: every run and prerequisite is a job of the one executor (runs/executor.py).

def _named(cfg: ml_collections.ConfigDict, text: str) -> set:
    """The prerequisites an overrides text names as "@name"."""
    return set(PREREQUISITE.findall(text)) & set(cfg.compare.prerequisites.keys())


def needed_prerequisites(cfg: ml_collections.ConfigDict, arms: list) -> set:
    """The prerequisites `arms` name, directly or through another prerequisite."""
    c = cfg.compare
    texts = [c.overrides] + [c.arms[a].overrides for a in arms]
    needed: set = set()
    while texts:
        new = _named(cfg, texts.pop()) - needed
        needed |= new
        texts += [c.prerequisites[n].overrides for n in new]
    return needed


def plan(cfg: ml_collections.ConfigDict, workdir: str,
         pairs: list[tuple[str, int]]) -> list[executor.Job]:
    """The jobs of (arm, seed) `pairs` and of the prerequisites they need; a job needs the
    prerequisites its overrides name. Seed by seed: a comparison stopped part-way leaves whole
    pairs to compare."""
    c = cfg.compare
    prerequisite = lambda n: f"prerequisites/{n}"
    jobs, needed = [], needed_prerequisites(cfg, sorted({a for a, _ in pairs}))
    for name in prerequisite_order(cfg):
        if name in needed:
            d, p = prerequisite_dir(workdir, name), c.prerequisites[name]
            jobs.append(executor.Job(
                prerequisite(name), jobs_lib.run_kind,
                (p.get("mode", "train"), prerequisite_config(cfg, name, workdir), d), d,
                needs=tuple(map(prerequisite, sorted(_named(cfg, p.overrides)))),
                cpus=c.ray_cpus_per_run, gpus=c.ray_gpus_per_run))
    arms = list(c.arms.keys())
    for arm, seed in sorted(pairs, key=lambda p: (p[1], arms.index(p[0]))):
        d = run_dir(workdir, arm, seed)
        jobs.append(executor.Job(
            f"runs/{arm}/seed{seed}", jobs_lib.run_kind, ("train", run_config(
                cfg, arm, seed, workdir), d), d,
            needs=tuple(map(prerequisite, sorted(_named(cfg, c.overrides + ";" +
                                                        c.arms[arm].overrides)))),
            cpus=c.ray_cpus_per_run, gpus=c.ray_gpus_per_run))
    return jobs


def _train_all(cfg: ml_collections.ConfigDict, workdir: str, pairs: list) -> None:
    """Runs the jobs of `pairs` not finished yet. A prerequisite that did not finish, or a run
    stopped by a signal, stops the comparison (its table would be missing them) once the
    other jobs have ended; a failed run is recorded and left out of the table."""
    c = cfg.compare
    backend = "ray" if c.backend == "ray" else "processes" if c.processes > 1 else "local"
    jobs = plan(cfg, workdir, pairs)
    records = executor.run(jobs, backend=backend, processes=c.processes,
                           ray_address=c.ray_address, cache_dir=workdir,
                           on_done=executor.log_done("compare"))
    for job in jobs:
        record = records.get(job.name, {"status": "not started"})
        if job.name.startswith("prerequisites/") and record["status"] != "ok":
            raise SystemExit(f"prerequisite {job.name.split('/', 1)[1]} ({job.outdir}) did not "
                             f"finish: {record.get('error', record['status'])}; fix it and "
                             "rerun the comparison (finished runs are kept)")
    stopped = [j.name for j in jobs if records.get(j.name, {}).get("status") == "preempted"]
    if stopped:
        raise SystemExit(f"{', '.join(stopped)} stopped by a signal; rerun the comparison to "
                         "resume from the checkpoints")


# Reading runs.

@dataclasses.dataclass
class Run:
    """What a comparison reads of one workdir."""
    arm: str
    seed: int
    workdir: str
    status: str  # ok | failed | incomplete
    error: str = ""
    steps: int = 0
    eval_rows: int = 0
    train_domains: list = dataclasses.field(default_factory=list)
    heldout_domains: list = dataclasses.field(default_factory=list)
    evals: list = dataclasses.field(default_factory=list)  # eval lines of metrics.jsonl
    weights: list = dataclasses.field(default_factory=list)  # mixture lines of metrics.jsonl
    tokens: float = math.nan
    flops: float = math.nan
    seconds: float = math.nan
    corpus: str = ""  # the corpus fingerprint of its eval.json ("" for generated data)
    step_flops: float = math.nan  # training FLOPs of one step
    overhead: list = dataclasses.field(default_factory=list)  # (step, a method's own FLOPs)
    tasks: dict = dataclasses.field(default_factory=dict)  # TASK/METRIC[_stderr] -> final value
    higher_is_better: dict = dataclasses.field(default_factory=dict)  # TASK/METRIC -> bool

    def final(self, domain: str, what: str = "loss") -> float:
        return float(self.evals[-1].get(f"eval/{domain}/{what}", math.nan)) if self.evals \
            else math.nan

    def flops_at(self, step: float) -> float:
        """FLOPs spent by `step`: its training steps and every overhead logged by then."""
        return step * self.step_flops + sum(f for s, f in self.overhead if s <= step)

    def curve(self, domains: list | None = None) -> tuple[list, list]:
        """(eval steps, mean eval loss over `domains`, default the run's training domains)."""
        domains = domains or self.train_domains
        return ([e["step"] for e in self.evals],
                [float(np.mean([e.get(f"eval/{d}/loss", math.nan) for d in domains]))
                 for e in self.evals])


def _reference_model(cfg) -> ModelConfig:
    """The model of the run's step reference (config.reference.workdir, as recorded there); the
    run's own model where that workdir is gone."""
    ref = cfg.reference.workdir
    if ref and os.path.exists(os.path.join(ref, "config.json")):
        return ModelConfig.from_config(experiment.recorded_config(ref).model)
    return ModelConfig.from_config(cfg.model)


def read_run(workdir: str, arm: str, seed: int | None = None) -> Run:
    """A run's config, eval curve, weights, tokens, FLOPs (with its methods' own overhead) and
    wall time, from its workdir; `seed` defaults to the recorded one."""
    run = Run(arm, -1 if seed is None else seed, workdir, "incomplete")
    record = executor.status(workdir) or {}
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path) or not os.path.exists(
            os.path.join(workdir, "metrics.jsonl")):
        run.status = "failed" if record.get("status") == "failed" else "incomplete"
        run.error = record.get("error", "no config.json or metrics.jsonl: never trained")
        return run
    cfg = experiment.recorded_config(workdir)
    run.seed = cfg.seed if seed is None else seed
    run.steps, run.eval_rows = cfg.train.steps, cfg.data.eval_rows
    metrics = read_metrics(workdir)
    run.evals = [m for m in metrics if any(k.startswith("eval/") and k.endswith("/loss")
                                           and k.count("/") == 2 for k in m)]
    run.weights = [m for m in metrics if any(k.startswith("mixture/") for k in m)]
    run.train_domains = list(sources.domain_names(cfg)[0])
    evaluated = [k.split("/")[1] for k in (run.evals[-1] if run.evals else {})
                 if k.endswith("/loss") and k.count("/") == 2]
    run.heldout_domains = [d for d in evaluated if d not in run.train_domains]
    if record.get("status") == "failed":
        run.status, run.error = "failed", record["error"]
    elif run.evals and run.evals[-1]["step"] == run.steps:
        run.status = "ok"
    else:
        run.error = "not trained to the end"
    run.tokens = float(cfg.train.steps * cfg.train.batch_size * cfg.data.seq_len)
    run.overhead = [(m["step"], v) for m in metrics for k, v in m.items()
                    if k.endswith("/overhead_flops")]
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    run.step_flops = tokens_per_step * flops_lib.flops_per_token(
        ModelConfig.from_config(cfg.model), cfg.data.seq_len)
    if any("reference_token_loss" in m for m in metrics):  # each step ran a reference forward
        run.step_flops += tokens_per_step * flops_lib.flops_per_token(
            _reference_model(cfg), cfg.data.seq_len) / 3.0
    run.flops = run.flops_at(cfg.train.steps)
    elapsed = [m["elapsed_s"] for m in metrics if "elapsed_s" in m]
    run.seconds = float(elapsed[-1]) if elapsed else math.nan
    if os.path.exists(os.path.join(workdir, "eval.json")):
        with open(os.path.join(workdir, "eval.json")) as f:
            run.corpus = json.load(f).get("corpus/fingerprint", "")
    harness = downstream.read(workdir)  # the tasks at the last step (or a later --mode=eval)
    if harness and harness.get("step") == run.steps:
        run.tasks = {k.removeprefix("harness/"): v for k, v in downstream.scalars(harness).items()}
        run.higher_is_better = downstream.higher_is_better(harness)
    return run


def _run_globs(text: str) -> list[tuple[str, str]]:
    out = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        arm, sep, pattern = part.partition("=")
        if not sep:
            raise ValueError(f"config.compare.runs entry {part!r} is not ARM=GLOB")
        out.append((arm.strip(), pattern.strip()))
    return out


def existing_runs(text: str) -> list[Run]:
    """The runs of "arm=glob;..." (each workdir one seed of its arm)."""
    runs = []
    for arm, pattern in _run_globs(text):
        dirs = sorted(d for d in glob.glob(pattern) if os.path.isdir(d))
        if not dirs:
            raise ValueError(f"config.compare.runs: {arm}={pattern!r} matches no directory")
        runs += [read_run(d, arm) for d in dirs]
    return runs


# The comparison.

def summarize(runs: list[Run], baseline: str, confidence: float,
              domains: list | None = None, accuracy_target: float = 0.9) -> dict:
    """Per arm and quantity, the estimate over ok runs and the paired difference from the
    baseline with its verdict (see the module docstring). The headline mean, its AUC and
    steps-to-target are over `domains` (default: the baseline's training domains). Where evals
    have accuracy, steps_to_accuracy is the first eval step at which every domain with accuracy
    reaches `accuracy_target`, as a fraction of the baseline's steps (inf: never), when every
    headline domain has accuracy."""
    ok = [r for r in runs if r.status == "ok"]
    arms = list(dict.fromkeys([baseline] + [r.arm for r in runs]))
    base_runs = [r for r in ok if r.arm == baseline]
    if not base_runs:
        raise ValueError(f"no run of the baseline arm {baseline!r} finished: nothing to compare "
                         "against (see the failures in its run.json files)")
    train_domains = base_runs[0].train_domains
    headline = list(domains or train_domains)
    missing = [(r.arm, r.seed, d) for r in ok for d in headline
               if not math.isfinite(r.final(d))]
    if domains and missing:
        raise ValueError(f"config.compare.domains: every arm must evaluate {headline}; not "
                         f"evaluated (arm, seed, domain): {missing[:5]}. Add them as eval-only "
                         "domains (config.eval.domains) in the arms that do not train on them")
    # Held out: evaluated, never trained on by the baseline (an arm's eval-only domains that
    # the baseline trains on, e.g. the junk a clean-only arm skips, are training domains here).
    heldout = list(dict.fromkeys(d for r in ok for d in r.heldout_domains
                                 if d not in train_domains))
    with_accuracy = [d for d in train_domains + heldout
                     if any(r.final(d, "accuracy") > 0 for r in ok)]
    # Skills: headline domains that all have accuracy (LEGO); a text domain's occasional
    # exact-match row does not make it one.
    skills = headline if set(headline) <= set(with_accuracy) else []
    target = float(np.mean([r.curve(headline)[1][-1] for r in base_runs]))
    # Downstream metrics the baseline reports (lm/downstream.py), and which way is better.
    tasks = {name: base_runs[0].higher_is_better.get(name, True)
             for name in base_runs[0].tasks if not name.endswith("_stderr")}
    base_steps = base_runs[0].steps
    base_flops = float(np.mean([r.flops for r in base_runs]))

    def quantities(r: Run) -> dict:
        steps, curve = r.curve(headline)
        reached = stats.first_step_at(steps, curve, target)
        q = {"loss/train_mean": float(np.mean([r.final(d) for d in headline])),
             "auc/train_mean": stats.curve_mean(steps, curve),
             "steps_to_target": reached / base_steps,
             # equal compute: a selection's FLOPs count from the step it is made
             "flops_to_target": (r.flops_at(reached) if math.isfinite(reached) else math.nan)
                                / base_flops}
        if heldout:
            q["loss/heldout_mean"] = float(np.mean([r.final(d) for d in heldout]))
        for d in train_domains + heldout:
            q[f"loss/{d}"] = r.final(d)
            q[f"loss_se/{d}"] = r.final(d, "loss_se")
            if math.isfinite(r.final(d, "bits_per_byte")):  # text domains: across tokenizers
                q[f"bpb/{d}"] = r.final(d, "bits_per_byte")
        for d in with_accuracy:
            q[f"accuracy/{d}"] = r.final(d, "accuracy")
        for name in tasks:
            q[f"task/{name}"] = r.tasks.get(name, math.nan)
            q[f"task_se/{name}"] = r.tasks.get(f"{name}_stderr", math.nan)
        if skills:  # the final mean accuracy; the first eval with every skill at the target
            q["accuracy/skills_mean"] = float(np.mean([r.final(d, "accuracy") for d in skills]))
            at = [e["step"] for e in r.evals if all(
                e.get(f"eval/{d}/accuracy", 0.0) >= accuracy_target for d in skills)]
            q["steps_to_accuracy"] = at[0] / base_steps if at else math.inf
        q |= {"tokens": r.tokens, "flops": r.flops, "seconds": r.seconds}
        return q

    per_run = {(r.arm, r.seed): quantities(r) for r in ok}
    names = list(next(iter(per_run.values())))
    out = {"baseline": baseline, "confidence": confidence, "target_loss": target,
           "baseline_steps": base_steps, "eval_rows": base_runs[0].eval_rows,
           "train_domains": train_domains, "headline_domains": headline,
           "heldout_domains": heldout, "accuracy_domains": with_accuracy,
           "accuracy_target": accuracy_target, "skills": skills, "arms": {},
           "tasks": tasks,  # TASK/METRIC -> higher is better
           # corpus fingerprint -> the runs that read it (several: different data)
           "corpora": {fp: [f"{r.arm} seed {r.seed}" for r in ok if r.corpus == fp]
                       for fp in sorted({r.corpus for r in ok if r.corpus})}}
    for arm in arms:
        mine = {seed: q for (a, seed), q in per_run.items() if a == arm}
        base = {seed: q for (a, seed), q in per_run.items() if a == baseline}
        arm_out = {"seeds": sorted(mine), "failed": [
            {"seed": r.seed, "status": r.status, "error": r.error, "workdir": r.workdir}
            for r in runs if r.arm == arm and r.status != "ok"], "quantities": {}}
        for name in names:
            values = {s: q[name] for s, q in mine.items()}
            entry = stats.mean_ci(list(values.values()), confidence).as_dict()
            if name in ("steps_to_target", "flops_to_target", "steps_to_accuracy"):
                entry["reached"] = sum(math.isfinite(v) for v in values.values())
            if arm != baseline and name.split("/")[0] in ("loss", "auc", "accuracy", "bpb",
                                                           "task", "steps_to_target",
                                                           "flops_to_target",
                                                           "steps_to_accuracy"):
                diff = stats.paired_difference(
                    values, {s: q[name] for s, q in base.items()}, confidence)
                entry["diff"] = diff.as_dict()
                higher = (name.startswith("accuracy") or
                          tasks.get(name.removeprefix("task/"), False))
                entry["verdict"] = stats.verdict(diff, lower_is_better=not higher)
            arm_out["quantities"][name] = entry
        out["arms"][arm] = arm_out
    return out


# Outputs.

def _fmt(e: dict, digits: int = 4) -> str:
    if e["n"] == 0 or not math.isfinite(e["mean"]):
        return "—"
    if not math.isfinite(e["low"]):
        return f"{e['mean']:.{digits}f}"
    return f"{e['mean']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def _fmt_diff(entry: dict, digits: int = 4) -> str:
    if "diff" not in entry:
        return ""
    d = entry["diff"]
    if d["n"] == 0:
        return "—"
    text = f"{d['mean']:+.{digits}f}"
    if math.isfinite(d["low"]):
        text += f" [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"
    return f"{text} {entry['verdict']}"


def headline_sentences(summary: dict) -> list[str]:
    """One plain sentence per arm: its paired difference on the headline loss and what the
    interval says (the line a reader should take away)."""
    b, level = summary["baseline"], round(100 * summary["confidence"])
    where = ("the training domains" if summary["headline_domains"] == summary["train_domains"]
             else ", ".join(summary["headline_domains"]))
    out = []
    for arm, a in summary["arms"].items():
        entry = a["quantities"].get("loss/train_mean", {})
        d = entry.get("diff")
        if arm == b or not d or d["n"] == 0:
            continue
        change = (f"leaves the mean final loss on {where} unchanged against `{b}`"
                  if d["mean"] == 0 else
                  f"{'lowers' if d['mean'] < 0 else 'raises'} the mean final loss on {where} by "
                  f"{abs(d['mean']):.3f} nats against `{b}`")
        if d["n"] < 2 or not math.isfinite(d["low"]):
            out.append(f"`{arm}` {change} on one seed: too few seeds for an interval.")
            continue
        meaning = {"better": "better, the interval excludes 0",
                   "worse": "worse, the interval excludes 0",
                   "no clear difference": "no clear difference, the interval includes 0"}
        out.append(f"`{arm}` {change} ({level}% interval {d['low']:+.3f} to {d['high']:+.3f} "
                   f"over {d['n']} paired seeds): {meaning[entry['verdict']]}.")
    return out


def write_markdown(summary: dict, path: str, title: str) -> str:
    b, level = summary["baseline"], round(100 * summary["confidence"])
    arms = summary["arms"]
    seeds = sorted({s for a in arms.values() for s in a["seeds"]})
    lines = [f"# {title}", "",
             f"Baseline `{b}`; seeds {', '.join(map(str, seeds))}; {level}% t-intervals over "
             "seeds in brackets; Δ = arm − baseline, paired seed by seed (better / worse when "
             "its interval excludes 0). Losses are nats per token on the final evaluation.", ""]
    lines += [" ".join(headline_sentences(summary)), ""] if headline_sentences(summary) else []

    def q(arm, name):
        return arms[arm]["quantities"].get(name, {"n": 0, "mean": math.nan})

    corpora = summary.get("corpora", {})
    if len(corpora) == 1:
        lines += [f"Every run read the corpus with fingerprint `{next(iter(corpora))}`.", ""]
    elif corpora:
        lines += [f"**Warning: these runs read {len(corpora)} different corpora** (corpus "
                  "fingerprints, data/fingerprint.py), so a difference between arms may be the "
                  "data's, not the method's; rerun them on one corpus: " + "; ".join(
                      f"`{fp}`: {', '.join(runs)}" for fp, runs in corpora.items()) + ".", ""]
    if summary["headline_domains"] != summary["train_domains"]:
        lines += [f"The headline loss, its AUC and steps-to-target are the mean over "
                  f"{', '.join(summary['headline_domains'])} (config.compare.domains).", ""]
    what = ("loss, training domains" if summary["headline_domains"] == summary["train_domains"]
            else "loss, headline domains")
    lines += [f"| arm | runs | {what} | Δ | AUC of eval loss | Δ AUC | "
              "steps to baseline's final loss | FLOPs to it | tokens | FLOPs | train wall s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        s, f = q(arm, "steps_to_target"), q(arm, "flops_to_target")
        reach = (f"{s['mean']:.2f} of the baseline's ({s['reached']}/{len(arms[arm]['seeds'])}"
                 " reached)" if s.get("n") else f"not reached (0/{len(arms[arm]['seeds'])})")
        reach += f" | {f['mean']:.2f}" if f.get("n") else " | —"
        reach = "(the target) | (the target)" if arm == b else reach
        failed = len(arms[arm]["failed"])
        lines.append(
            f"| {arm} | {len(arms[arm]['seeds'])} ok" + (f", {failed} failed" if failed else "")
            + f" | {_fmt(q(arm, 'loss/train_mean'))} | {_fmt_diff(q(arm, 'loss/train_mean'))} | "
            f"{_fmt(q(arm, 'auc/train_mean'))} | {_fmt_diff(q(arm, 'auc/train_mean'))} | {reach}"
            f" | {q(arm, 'tokens')['mean']:.3g} | {q(arm, 'flops')['mean']:.3g} | "
            f"{q(arm, 'seconds')['mean']:.0f} |")
    lines += ["", f"Steps to the baseline's final loss ({summary['target_loss']:.4f}, mean over "
              f"its seeds) are a fraction of its {summary['baseline_steps']} steps, interpolated "
              "between evaluations (mean over the seeds that reach it): 0.5 is a 2x speed-up. "
              "FLOPs to it: the same point in FLOPs spent by then (training, and each selection "
              "from the step it is made), as a fraction of the baseline's total: equal compute. "
              "FLOPs include a method's own overhead and a step reference's forward; train wall "
              "s is the training loop's time, resumes included.", ""]

    def domain_table(heading, domains, what="loss", digits=4):
        if not domains:
            return []
        out = [f"## {heading}", "", "| domain | eval SE (over rows) | " + " | ".join(
            f"{a}" + ("" if a == b else f" (Δ vs {b})") for a in arms) + " |",
               "|---|---|" + "---|" * len(arms)]
        for d in domains:
            se = q(b, f"loss_se/{d}")["mean"] if what == "loss" else math.nan
            cells = [_fmt(q(a, f"{what}/{d}"), digits) if a == b else
                     _fmt_diff(q(a, f"{what}/{d}"), digits) for a in arms]
            se_text = f"{se:.4f}" if math.isfinite(se) else "—"
            out.append(f"| {d} | {se_text} | " + " | ".join(cells) + " |")
        return out + [""]

    lines += domain_table("Final eval loss per training domain", summary["train_domains"])
    lines += domain_table("Held-out domains (never trained on)", summary["heldout_domains"])
    with_bpb = [d for d in summary["train_domains"] + summary["heldout_domains"]
                if q(b, f"bpb/{d}").get("n")]
    lines += domain_table("Bits per byte (comparable across tokenizers)", with_bpb, "bpb")
    lines += domain_table("Exact-match accuracy", summary["accuracy_domains"], "accuracy", 3)
    if summary.get("tasks"):
        lines += ["## Downstream tasks (lm-evaluation-harness, at the last step)", "",
                  "| task / metric | better | stderr (over documents) | " + " | ".join(
                      a + ("" if a == b else f" (Δ vs {b})") for a in arms) + " |",
                  "|---|---|---|" + "---|" * len(arms)]
        for name, higher in summary["tasks"].items():
            cells = [_fmt(q(a, f"task/{name}")) if a == b else _fmt_diff(q(a, f"task/{name}"))
                     for a in arms]
            se = q(b, f"task_se/{name}")["mean"]
            lines.append(f"| {name} | {'higher' if higher else 'lower'} | "
                         + (f"{se:.4f}" if math.isfinite(se) else "—") + " | "
                         + " | ".join(cells) + " |")
        lines += ["", "The stderr is lm-eval's over the task's documents (the baseline's, mean "
                  "over seeds); the Δ intervals are over seeds, paired seed by seed.", ""]
    if summary["skills"]:
        lines += [f"Steps until every headline domain is at {summary['accuracy_target']:g} accuracy"
                  f", as a fraction of the baseline's {summary['baseline_steps']} steps (mean "
                  "over the seeds that get there):", ""]
        for arm in arms:
            s, m = q(arm, "steps_to_accuracy"), q(arm, "accuracy/skills_mean")
            got = f"{s.get('reached', 0)}/{len(arms[arm]['seeds'])} reached"
            lines.append(f"- {arm}: " + (f"{_fmt(s, 3)} ({got})" if s.get("n") else
                                         f"never ({got})") + (
                f"; Δ {_fmt_diff(s, 3)}" if arm != b and s.get("n") else "") +
                f"; final mean accuracy {_fmt(m, 3)}" + (
                f", Δ {_fmt_diff(m, 3)}" if arm != b else ""))
        lines.append("")
    lines += [f"Eval SE: the standard error of the baseline's loss over a domain's "
              f"eval rows (up to {summary['eval_rows']}; mean over seeds), beside the interval "
              "over seeds. Every arm is evaluated on the same rows, so row noise cancels from the "
              "paired Δ in part; where the eval SE is small beside the seed interval, more seeds "
              "rather than more eval rows would sharpen the comparison.", ""]
    failures = [(a, f) for a in arms for f in arms[a]["failed"]]
    if failures:
        lines += ["## Runs left out", ""] + [
            f"- {a} seed {f['seed']}: {f['status']}: {f['error']} (`{f['workdir']}`)"
            for a, f in failures] + [""]
    text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)
    return text


def write_csv(summary: dict, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "quantity", "mean", "low", "high", "n", "diff_mean", "diff_low",
                    "diff_high", "verdict"])
        for arm, a in summary["arms"].items():
            for name, e in a["quantities"].items():
                d = e.get("diff", {})
                w.writerow([arm, name, e["mean"], e["low"], e["high"], e["n"],
                            d.get("mean", ""), d.get("low", ""), d.get("high", ""),
                            e.get("verdict", "")])


def plot(runs: list[Run], summary: dict, workdir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in runs if r.status == "ok"]
    arms, baseline = list(summary["arms"]), summary["baseline"]
    written = []
    curves = {arm: {r.seed: r.curve(summary["headline_domains"]) for r in ok if r.arm == arm}
              for arm in arms}
    fig, (ax, dax) = plt.subplots(1, 2, figsize=(12, 4))
    for i, arm in enumerate(arms):
        if not curves[arm]:
            continue
        steps = next(iter(curves[arm].values()))[0]
        values = np.array([c[1] for c in curves[arm].values() if c[0] == steps])
        ax.plot(steps, values.mean(0), color=f"C{i}", label=f"{arm} (mean of {len(values)})")
        ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i}", alpha=0.2)
        paired = [np.array(c[1]) - np.array(curves[baseline][s][1]) for s, c in
                  curves[arm].items() if s in curves[baseline] and c[0] ==
                  curves[baseline][s][0] == steps]
        if arm != baseline and paired:
            est = [stats.mean_ci(col, summary["confidence"]) for col in zip(*paired)]
            dax.plot(steps, [e.mean for e in est], color=f"C{i}", label=arm)
            dax.fill_between(steps, [e.low for e in est], [e.high for e in est],
                             color=f"C{i}", alpha=0.2)
    over = ("training domains" if summary["headline_domains"] == summary["train_domains"] else
            ", ".join(summary["headline_domains"]))
    ax.set(xlabel="step", ylabel=f"eval loss, mean over {over}",
           title="band: min to max over seeds")
    dax.axhline(0, color="k", lw=0.8)
    dax.set(xlabel="step", ylabel=f"minus {baseline}, paired by seed",
            title=f"band: {round(100 * summary['confidence'])}% interval over seeds")
    for a in (ax, dax):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize="small")
    written.append(os.path.join(workdir, "compare_curves.png"))
    fig.savefig(written[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    others = [a for a in arms if a != summary["baseline"]]
    domains = summary["train_domains"] + summary["heldout_domains"]
    if others:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(domains) * len(others) + 2), 4))
        width = 0.8 / len(others)
        for i, arm in enumerate(others):
            diffs = [summary["arms"][arm]["quantities"].get(f"loss/{d}", {}).get("diff") for d in
                     domains]
            x = np.arange(len(domains)) + (i - (len(others) - 1) / 2) * width
            mean = np.array([d["mean"] if d else np.nan for d in diffs])
            low = np.array([d["low"] if d else np.nan for d in diffs])
            high = np.array([d["high"] if d else np.nan for d in diffs])
            err = np.nan_to_num(np.stack([mean - low, high - mean]))
            ax.errorbar(x, mean, yerr=err, fmt="o", capsize=3, label=arm, color=f"C{i + 1}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(domains)), domains, rotation=30)
        ax.set_ylabel(f"final eval loss − {summary['baseline']} (paired)")
        seeds = max(len(a["seeds"]) for a in summary["arms"].values())
        ax.set_title(f"{round(100 * summary['confidence'])}% intervals over {seeds} seeds"
                     if seeds > 1 else "one seed: no interval")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        written.append(os.path.join(workdir, "compare_differences.png"))
        fig.savefig(written[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)

    weighted = [a for a in arms if any(r.weights for r in ok if r.arm == a)]
    if weighted:
        fig, axes = plt.subplots(1, len(weighted), figsize=(5 * len(weighted), 3.5),
                                 squeeze=False, sharey=True)
        for ax, arm in zip(axes[0], weighted):
            arm_runs = [r for r in ok if r.arm == arm and r.weights]
            keys = sorted({k for m in arm_runs[0].weights for k in m if k.startswith("mixture/")})
            for k in keys:  # each weight holds until the next change, to the last step
                steps = [m["step"] for m in arm_runs[0].weights if k in m] + [arm_runs[0].steps]
                mean = np.mean([[m[k] for m in r.weights if k in m] for r in arm_runs], axis=0)
                ax.step(steps, np.append(mean, mean[-1]), where="post", label=k.split("/")[1])
            ax.set_title(f"{arm} (mean of {len(arm_runs)} seeds)")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("domain sampling weight")
        axes[0][-1].legend(fontsize="small")
        written.append(os.path.join(workdir, "compare_weights.png"))
        fig.savefig(written[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return written


def run(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the missing runs (none with compare.runs), then writes the outputs; returns the
    summary."""
    check_config(cfg)
    os.makedirs(workdir, exist_ok=True)
    c = cfg.compare
    if c.runs:
        runs = existing_runs(c.runs)
        title = f"Comparison of existing runs: {', '.join(dict.fromkeys(r.arm for r in runs))}"
    else:
        pairs = [(arm, seed) for arm in c.arms.keys() for seed in seeds_of(cfg)]
        todo = [(a, s) for a, s in pairs if not executor.is_done(run_dir(workdir, a, s))]
        if todo:
            _train_all(cfg, workdir, todo)
        runs = [read_run(run_dir(workdir, a, s), a, s) for a, s in pairs]
        title = f"Comparison: {', '.join(c.arms.keys())}"
    headline = [d.strip() for d in c.domains.split(",") if d.strip()]
    summary = summarize(runs, c.baseline, c.confidence, headline or None, c.accuracy_target)
    write_markdown(summary, os.path.join(workdir, "compare.md"), title)
    write_csv(summary, os.path.join(workdir, "compare.csv"))
    with open(os.path.join(workdir, "compare.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot(runs, summary, workdir)
    return summary
