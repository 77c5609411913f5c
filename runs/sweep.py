"""A RegMix-style mixture sweep: `python main.py --config=configs/sweep_regmix.py --mode=sweep
--workdir=DIR`.

Draws `sweep.num_trials` mixtures (reweight/regmix.py), trains the config's (tiny) model on each
with the ordinary entry point (`experiment.build(...).train`), each trial in
DIR/trials/NNNN with the same steps and seed, then fits the regression and writes the chosen
mixture to DIR/mixture.txt (use it with `--config.data.weights=file:DIR/mixture.txt`).

Resumable: each trial is a job of the one executor (runs/executor.py), its row in its status
file DIR/trials/NNNN/run.json; finished trials are never rerun, a failed one is recorded (status
"failed", the error) and retried by the next invocation, and the table DIR/results.jsonl
(+ .csv) is rebuilt from the rows after every trial. Backends: `local` runs trials in this
process (`sweep.vmap_trials > 1` trains that many at once with jax.vmap, lm/multi.py); `ray`
sends each trial to a Ray cluster as a task. `sweep.trial=i` runs
trial i alone (array jobs) and fits nothing.

RegMix rests on rank invariance: mixtures rank the same at the proxy's scale and at the scale
the mixture is for. `sweep.transfer_trials=N` checks it here: the first N trials' mixtures are
trained again at the target scale (`sweep.transfer_overrides`, e.g. a wider model and more
steps) in DIR/transfer/, and regmix.json's "transfer" holds the Spearman of the two scales'
target losses over those mixtures, with its interval.
"""

import csv
import glob
import json
import os
import sys
import time

import ml_collections
import numpy as np

from data import sources
from runs import executor, experiment, overrides
from reweight import mixture, regmix


def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Fails early, with the fix, on settings that would waste a sweep: every problem in one
    error."""
    s, found = cfg.sweep, []
    checks = (
        (s.num_trials >= 2, f"config.sweep.num_trials must be >= 2, got {s.num_trials}: the "
                            "regression needs several mixtures"),
        (s.dirichlet in ("regmix", "scaled"), f"config.sweep.dirichlet={s.dirichlet!r} is "
                                              "unknown; use regmix (the reference's draws) or "
                                              "scaled"),
        (s.backend in ("local", "ray"), f"config.sweep.backend={s.backend!r} is unknown; use "
                                        "local or ray"),
        (-1 <= s.trial < s.num_trials, f"config.sweep.trial={s.trial} is outside [-1, "
                                       f"{s.num_trials}): -1 runs every trial, i runs trial i"),
        (min(s.vmap_trials, s.top_k, s.num_simulations) >= 1,
         f"config.sweep.vmap_trials={s.vmap_trials}, top_k={s.top_k} and num_simulations="
         f"{s.num_simulations} must all be >= 1"),
        (s.sample_multiplier >= 1, f"config.sweep.sample_multiplier={s.sample_multiplier} must "
                                   "be >= 1: trials are drawn from that many times as many "
                                   "candidates (the reference's 100)"),
        (s.regression in ("ridge", "gbm"), f"config.sweep.regression={s.regression!r} is "
                                           "unknown; use ridge or gbm"),
        (not s.transfer_trials or 4 <= s.transfer_trials <= s.num_trials,
         f"config.sweep.transfer_trials={s.transfer_trials} must be 0 (off) or in [4, "
         f"num_trials={s.num_trials}]: a rank correlation needs 4 or more mixtures for an "
         "interval (RegMix's check: >= 6)"))
    found += [problem for ok, problem in checks if not ok]
    parsers = [lambda: regmix.parse_strengths(s.dirichlet_strengths),
               lambda: regmix.parse_range(s.strength_range),
               lambda: regmix.tempered(np.ones(2), s.temperature), lambda: _target(cfg)]
    if s.transfer_trials:
        parsers.append(lambda: transfer_config(cfg))
    for parse in parsers:
        try:
            parse()
        except ValueError as e:
            found.append(str(e))
    if found:
        raise ValueError(f"{len(found)} problem(s) of the sweep before any work:\n  " +
                         "\n  ".join(found))


def _target(cfg: ml_collections.ConfigDict) -> None:
    _, eval_names = sources.domain_names(cfg)
    if cfg.sweep.target != "average" and cfg.sweep.target not in eval_names:
        raise ValueError(f"config.sweep.target={cfg.sweep.target!r} is not an eval domain; "
                         f"choose 'average' or one of {eval_names}")


def _caps(cfg, env):
    """Epoch caps for the run the mixture is for: sweep.target_tokens of it, or (0) as many
    tokens as the domains hold, the reference's assumption (a weight may then be at most
    max_epochs times the domain's natural share)."""
    counts = env.token_counts()
    if counts is None:
        return None
    return regmix.epoch_caps(counts, cfg.sweep.target_tokens or float(np.sum(counts)),
                             cfg.sweep.max_epochs)


def _draw(cfg: ml_collections.ConfigDict, n: int, stream: int) -> np.ndarray:
    env, s = experiment.Env(cfg), cfg.sweep
    rng = np.random.default_rng([cfg.seed, stream])
    if s.dirichlet == "regmix":
        return regmix.draw_regmix(rng, env.weights(s.center), n, temperature=s.temperature,
                                  strength_range=regmix.parse_range(s.strength_range),
                                  min_weight=s.min_weight, caps=_caps(cfg, env))
    return regmix.draw_mixtures(rng, env.weights(s.center),
                                regmix.parse_strengths(s.dirichlet_strengths), n,
                                min_weight=s.min_weight, caps=_caps(cfg, env))


def draw_trials(cfg: ml_collections.ConfigDict) -> np.ndarray:
    """The sweep's [num_trials, K] mixtures, distinct, from sample_multiplier times as many
    draws (the reference's): a function of the config alone, so every process and every rerun
    agrees on trial i's mixture."""
    n = cfg.sweep.num_trials
    candidates = _draw(cfg, n * cfg.sweep.sample_multiplier, 7_000)
    return regmix.distinct_sample(np.random.default_rng([cfg.seed, 7_002]), candidates, n)


def trial_config(cfg: ml_collections.ConfigDict, names: list,
                 weights: np.ndarray) -> ml_collections.ConfigDict:
    """The proxy's config: the sweep config with this fixed mixture (same steps and seed)."""
    t = cfg.copy_and_resolve_references()
    t.update_from_flattened_dict({
        "data.weights": ",".join(f"{n}:{w:.17g}" for n, w in zip(names, weights)),
        "reweight.mixture": "fixed", "train.progress_bar": False})
    return t


def transfer_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The sweep at the target scale: `sweep.transfer_overrides` applied; the same mixtures."""
    if not cfg.sweep.transfer_overrides.strip():
        raise ValueError("config.sweep.transfer_trials is set but transfer_overrides is empty: "
                         "name the target scale, e.g. 'model.d_model=128;train.steps=500'")
    changed = [f for f, _ in overrides.parse_overrides(cfg.sweep.transfer_overrides)
               if f.split(".")[0] not in ("model", "train")]
    if changed:
        raise ValueError(f"config.sweep.transfer_overrides changes {changed}: the target scale "
                         "may change only model.* and train.* fields, so that its mixtures and "
                         "data are the proxies'")
    t = cfg.copy_and_resolve_references()
    overrides.apply_overrides(t, cfg.sweep.transfer_overrides, "config.sweep.transfer_overrides")
    t.sweep.update(transfer_trials=0, trial=-1)
    return t


def rank_transfer(proxy: dict, target: dict, confidence: float = 0.95) -> dict:
    """Spearman of the target losses at the two scales over the trials ok at both, with a
    Fisher-z interval (Bonett & Wright 2000: SE = sqrt((1 + r^2 / 2) / (n - 3)))."""
    import scipy.stats
    both = sorted(i for i in target if target[i]["status"] == "ok"
                  and proxy.get(i, {}).get("status") == "ok")
    a = [proxy[i]["target"] for i in both]
    b = [target[i]["target"] for i in both]
    r, n = regmix.spearman(a, b), len(both)
    low = high = float("nan")
    if n > 3 and np.isfinite(r) and abs(r) < 1:
        half = scipy.stats.norm.ppf(0.5 + confidence / 2) * np.sqrt((1 + r * r / 2) / (n - 3))
        low, high = float(np.tanh(np.arctanh(r) - half)), float(np.tanh(np.arctanh(r) + half))
    return {"trials": both, "spearman": r, "low": low, "high": high, "n": n,
            "confidence": confidence, "proxy_target": a, "target_scale_target": b}


def target_loss(cfg: ml_collections.ConfigDict, names: list, losses: dict) -> float:
    if cfg.sweep.target == "average":
        return float(np.mean([losses[n] for n in names]))
    return float(losses[cfg.sweep.target])


def trial_dir(workdir: str, index: int) -> str:
    return os.path.join(workdir, "trials", f"{index:04d}")


class RewoundData:
    """The data of trials that differ only in `data.weights`: builds each slot's sources once
    per process, then for every trial rewinds them to their freshly built state and sets the
    trial's weights. A trial then reads exactly the batches freshly built data would give (the
    streams restart, the mixer's draws restart from the seed), without rebuilding seqio
    pipelines: that build was 75-100 s of a ~80-130 s tiny trial on this shared machine."""

    def __init__(self, make_data: sources.MakeData = sources.build_data):
        self.make_data = make_data
        self.key, self.built = None, {}

    def __call__(self, cfg: ml_collections.ConfigDict, slot: int = 0) -> sources.Data:
        from data.mixing import parse_weights
        key = cfg.copy_and_resolve_references()
        key.data.weights = "uniform"
        key = key.to_json()
        if key != self.key:
            self.key, self.built = key, {}
        if slot not in self.built:
            data = self.make_data(cfg)
            self.built[slot] = (data, data.source.get_state())
        data, fresh = self.built[slot]
        data.source.set_state(fresh)
        data.source.set_weights(parse_weights(cfg.data.weights, data.domain_names))
        return data


def trial_job(cfg: ml_collections.ConfigDict, index: int, workdir: str,
              make_data: sources.MakeData | None = None) -> dict:
    """Trial `index` of the sweep in `workdir`, trained (resuming its checkpoint) on one
    device: its row (trial, weights, target, eval), or {"preempted": step} if stopped."""
    import jax
    from lm import validation

    names, _ = sources.domain_names(cfg)
    weights = draw_trials(cfg)[index]
    out = trial_dir(workdir, index)
    tcfg = trial_config(cfg, names, weights)
    validation.validate_config(tcfg, 1, 1)
    exp = experiment.build(tcfg, data=(make_data or sources.build_data)(tcfg))
    result = exp.train(out, devices=jax.devices()[:1])
    if result.preempted:  # not a result: the rerun resumes the trial
        return {"preempted": result.step}
    # Trained to the end before, stopped before its status was written: evaluate it.
    evaluation = result.eval or exp.evaluate(out, devices=jax.devices()[:1])
    return {"trial": index, "weights": dict(zip(names, weights.tolist())),
            "target": target_loss(cfg, names, evaluation.loss), "eval": evaluation.loss}


def read_rows(workdir: str, names: list, mixtures: np.ndarray) -> dict:
    """trial index -> its row: a finished trial's result, or its failure (from the trial's
    run.json; a sweep written before the executor kept its rows in result.json)."""
    rows = {}
    for d in sorted(glob.glob(os.path.join(workdir, "trials", "*"))):
        index, record = int(os.path.basename(d)), executor.status(d)
        if record is None and os.path.exists(os.path.join(d, "result.json")):
            with open(os.path.join(d, "result.json")) as f:
                rows[index] = json.load(f)
            continue
        if record is None:
            continue
        row = {"trial": index, "weights": dict(zip(names, mixtures[index].tolist()))}
        if record["status"] == "ok":
            row |= record["result"]
        else:
            row["error"] = record.get("error", record["status"])
        rows[index] = row | {"status": record["status"], "seconds": record["seconds"]}
    return rows


def write_table(workdir: str, rows: dict, names: list) -> None:
    """results.jsonl and results.csv (one line per trial, in trial order)."""
    ordered = [rows[i] for i in sorted(rows)]
    with open(os.path.join(workdir, "results.jsonl"), "w") as f:
        for r in ordered:
            f.write(json.dumps({k: v for k, v in r.items() if k != "traceback"}) + "\n")
    eval_names = sorted({n for r in ordered for n in r.get("eval", {})})
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "status", "target", "seconds"] + [f"w_{n}" for n in names] +
                   [f"loss_{n}" for n in eval_names] + ["error"])
        for r in ordered:
            w.writerow([r["trial"], r["status"], r.get("target", ""), f"{r['seconds']:.1f}"] +
                       [r["weights"][n] for n in names] +
                       [r.get("eval", {}).get(n, "") for n in eval_names] + [r.get("error", "")])




def group_job(cfg: ml_collections.ConfigDict, indices: list, workdir: str,
              make_data: RewoundData) -> None:
    """Trials `indices` trained together (lm/multi.py: one vmapped program, same seed); each
    trial's run.json gets its row (or the group's failure, which is raised)."""
    import jax
    from lm import multi

    names, _ = sources.domain_names(cfg)
    mixtures = draw_trials(cfg)
    t0 = time.perf_counter()
    try:
        configs = [trial_config(cfg, names, mixtures[i]) for i in indices]
        exps = [experiment.build(c, data=make_data(c, slot)) for slot, c in enumerate(configs)]
        if names_of := [m.name for m in exps[0].methods]:
            raise ValueError(f"config.sweep.vmap_trials={cfg.sweep.vmap_trials} trains no host "
                             f"method, but the trials have {names_of}: use vmap_trials=1")
        results = multi.train_many(configs[0], [e.data.source for e in exps],
                                   exps[0].data.eval_sets, exps[0].weighter, jax.devices()[0])
    except Exception as e:
        for i in indices:
            executor.write_status(trial_dir(workdir, i), {
                "status": "failed", "error": f"{type(e).__name__}: {e}",
                "seconds": (time.perf_counter() - t0) / len(indices)})
        raise
    seconds = (time.perf_counter() - t0) / len(indices)  # each trial's share of the group
    for i, losses in zip(indices, results):
        row = {"trial": i, "weights": dict(zip(names, mixtures[i].tolist())),
               "target": target_loss(cfg, names, losses), "eval": losses}
        executor.write_status(trial_dir(workdir, i), {"status": "ok", "seconds": seconds,
                                                      "result": row})


def fit_and_choose(cfg: ml_collections.ConfigDict, rows: dict, names: list,
                   workdir: str) -> dict:
    """The regression, its held-out Spearman, the chosen mixture (mixture.txt) and plots."""
    ok = [rows[i] for i in sorted(rows) if rows[i]["status"] == "ok"]
    if len(ok) < 2:
        raise ValueError(f"only {len(ok)} trial(s) finished in {workdir}; the regression needs "
                         "2 or more (see results.csv for the failures)")
    s = cfg.sweep
    x = np.asarray([[r["weights"][n] for n in names] for r in ok])
    y = np.asarray([r["target"] for r in ok])
    fit_idx, held_idx = regmix.holdout_split(len(ok), s.holdout_fraction, cfg.seed)
    held_pred = np.zeros(0)
    if len(held_idx):
        held_pred = regmix.fit(s.regression, x[fit_idx], y[fit_idx], ridge_alpha=s.ridge_alpha,
                               seed=cfg.seed)(x[held_idx])
    predict = regmix.fit(s.regression, x, y, ridge_alpha=s.ridge_alpha, seed=cfg.seed)
    simulated = _draw(cfg, s.num_simulations, 7_001)
    chosen, best_pred = regmix.top_k_mixture(predict, simulated, s.top_k)
    text = mixture.write_mixture(os.path.join(workdir, "mixture.txt"), names, chosen)
    summary = {"trials_ok": len(ok), "trials_failed": len(rows) - len(ok),
               "target": s.target, "regression": s.regression,
               "heldout_trials": len(held_idx),
               "heldout_spearman": regmix.spearman(held_pred, y[held_idx]),
               "fit_spearman": regmix.spearman(predict(x), y),
               "best_trial_target": float(y.min()), "chosen_predicted": float(predict(
                   chosen[None])[0]), "topk_predicted_mean": float(best_pred.mean()),
               "chosen": dict(zip(names, chosen.tolist())), "mixture": text}
    with open(os.path.join(workdir, "regmix.json"), "w") as f:
        json.dump(summary, f, indent=1)
    _plot(workdir, names, x, y, predict(x), held_idx, held_pred, chosen,
          experiment.Env(cfg).weights(s.center))
    return summary


def _plot(workdir, names, x, y, fit_pred, held_idx, held_pred, chosen, center):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, fit_pred, s=12, alpha=0.6, label="fit on all trials")
    if len(held_idx):
        ax.scatter(y[held_idx], held_pred, s=24, marker="x", label="held out (fit without)")
    lo, hi = float(min(y.min(), fit_pred.min())), float(max(y.max(), fit_pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("actual target loss")
    ax.set_ylabel("predicted target loss")
    ax.legend(fontsize="small")
    fig.savefig(os.path.join(workdir, "predicted_vs_actual.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, center, 0.4, label="sweep centre")
    ax.bar(pos + 0.2, chosen, 0.4, label="chosen (top-k mean)")
    ax.set_xticks(pos, names, rotation=30)
    ax.set_ylabel("domain weight")
    ax.legend(fontsize="small")
    fig.savefig(os.path.join(workdir, "chosen_mixture.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)


def run(cfg: ml_collections.ConfigDict, workdir: str,
        make_data: sources.MakeData = sources.build_data) -> dict:
    """Runs the missing trials (or only `sweep.trial`), then fits; returns the summary
    ({"trial": row} when one trial ran alone)."""
    check_config(cfg)
    names, _ = sources.domain_names(cfg)
    os.makedirs(workdir, exist_ok=True)
    mixtures = draw_trials(cfg)
    with open(os.path.join(workdir, "mixtures.json"), "w") as f:
        json.dump({"domains": names, "mixtures": mixtures.tolist()}, f)
    if cfg.sweep.trial >= 0:
        rows, _ = _train_missing(cfg, [cfg.sweep.trial], workdir, names, make_data, "trial")
        return {"trial": rows[cfg.sweep.trial]}
    t0 = time.perf_counter()
    rows, ran = _train_missing(cfg, range(cfg.sweep.num_trials), workdir, names, make_data,
                               "trial")
    summary = fit_and_choose(cfg, rows, names, workdir)
    if cfg.sweep.transfer_trials:
        summary["transfer"] = _transfer(cfg, rows, names, workdir, make_data)
        with open(os.path.join(workdir, "regmix.json"), "w") as f:
            json.dump(summary, f, indent=1)
    summary |= {"trials_run": ran, "sweep_seconds": time.perf_counter() - t0}
    return summary


def jobs(cfg: ml_collections.ConfigDict, todo: list, workdir: str, label: str,
         make_data: sources.MakeData = sources.build_data) -> list[executor.Job]:
    """The trials `todo` of the sweep in `workdir` as jobs: one a trial, or (vmap_trials > 1)
    one a group of trials trained together in DIR/groups/. Local jobs share one RewoundData,
    so a process builds the pipelines once."""
    s = cfg.sweep
    if s.backend == "ray":  # plain values travel; each task builds its own data
        frozen = ml_collections.ConfigDict(cfg.to_dict())
        return [executor.Job(f"{label} {i}", trial_job, (frozen, i, os.path.abspath(workdir)),
                             trial_dir(workdir, i), cpus=s.ray_cpus_per_trial,
                             gpus=s.ray_gpus_per_trial) for i in todo]
    rewound = RewoundData(make_data)
    if s.vmap_trials > 1:
        groups = [todo[k:k + s.vmap_trials] for k in range(0, len(todo), s.vmap_trials)]
        return [executor.Job(f"{label}s {g[0]}-{g[-1]}", group_job, (cfg, g, workdir, rewound),
                             os.path.join(workdir, "groups", f"{g[0]:04d}-{g[-1]:04d}"))
                for g in groups]
    return [executor.Job(f"{label} {i}", trial_job, (cfg, i, workdir, rewound),
                         trial_dir(workdir, i)) for i in todo]


def _train_missing(cfg, indices, workdir, names, make_data, label) -> tuple[dict, int]:
    """Trains the trials `indices` of `workdir` not yet ok (the table rebuilt after each);
    returns (every row, how many ran). A trial stopped by a signal stops the sweep."""
    mixtures = draw_trials(cfg)
    rows = read_rows(workdir, names, mixtures)
    todo = [i for i in indices if rows.get(i, {}).get("status") != "ok"]

    def on_done(job, record):
        now = read_rows(workdir, names, mixtures)
        write_table(workdir, now, names)
        print(executor.describe(job, record) + "".join(
            f"; trial {i} target {now[i]['target']:.4f}" for i in _indices(job)
            if now.get(i, {}).get("status") == "ok"), file=sys.stderr, flush=True)

    records = executor.run(jobs(cfg, todo, workdir, label, make_data),
                           backend="ray" if cfg.sweep.backend == "ray" else "local",
                           ray_address=cfg.sweep.ray_address, cache_dir=workdir,
                           on_done=on_done)
    stopped = [name for name, r in records.items() if r["status"] == "preempted"]
    if stopped:
        raise executor.Preempted(f"{', '.join(stopped)} stopped by a signal; rerun the sweep to "
                                 "resume from the checkpoints")
    rows = read_rows(workdir, names, mixtures)
    write_table(workdir, rows, names)
    return rows, len(todo)


def _indices(job: executor.Job) -> list:
    """The trials a job of `jobs` trains."""
    return list(job.args[1]) if isinstance(job.args[1], list) else [job.args[1]]


def _transfer(cfg, rows, names, workdir, make_data) -> dict:
    """The first transfer_trials mixtures at the target scale, in DIR/transfer; the rank
    correlation of the two scales' target losses."""
    tcfg, tdir = transfer_config(cfg), os.path.join(workdir, "transfer")
    trows, _ = _train_missing(tcfg, range(cfg.sweep.transfer_trials), tdir, names, make_data,
                              "transfer trial")
    out = rank_transfer({i: rows[i] for i in range(cfg.sweep.transfer_trials) if i in rows},
                        trows)
    return out | {"overrides": cfg.sweep.transfer_overrides}
