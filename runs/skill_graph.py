"""Brute-force estimate of a Skill-It skills graph: `main.py --mode=skill_graph`.

From one shared start, train on skill i alone for H steps and measure every skill's eval loss:
A[i, j] = (L_j(start) - L_j(after H steps on i)) / L_j(start). The start is config.init_from
or, with `skill_graph.start_steps` > 0, a run of that many steps on the config's own mix
(LEGO from scratch: every skill is at chance at init, so the graph would only say "anything
helps a bit"). Each training is an ordinary run (`experiment.build(...).train`) of a derived
config in its own sub-directory, each a job of the one executor (runs/executor.py), so an
interrupted estimate resumes where it stopped and a finished training is never rerun.

Outputs in the workdir: skill_graph.json ({"skills", "graph", "start_loss", "after_loss",
"steps"}; `config.reweight.skill_it.graph` reads it) and skill_graph.png (a heatmap).
"""

import json
import os

import ml_collections
import numpy as np

from data import sources
from runs import executor, experiment


def _derived(cfg: ml_collections.ConfigDict, **changes) -> ml_collections.ConfigDict:
    """A copy of the config with dotted-path changes, e.g. {"train.steps": 100}."""
    out = cfg.copy_and_resolve_references()
    out.update_from_flattened_dict(changes)
    return out


def _train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str,
                        make_data: sources.MakeData, devices) -> dict:
    """One training of the estimate, to the end (resuming), then its eval loss per domain;
    {"preempted": step} if stopped by a signal."""
    exp = experiment.build(cfg, data=make_data(cfg))
    result = exp.train(workdir, devices)
    if result.preempted:
        return {"preempted": result.step}
    # A finished run (a resumed estimate) trains nothing and has no eval: evaluate it.
    return {"loss": (result.eval or exp.evaluate(workdir, devices)).loss}


def _skill_losses(loss: dict, names: list) -> np.ndarray:
    missing = [n for n in names if n not in loss]
    if missing:
        raise ValueError(f"no eval loss for skills {missing}: the skills graph needs an eval "
                         "domain named like each training domain")
    return np.array([loss[n] for n in names])


def estimate(cfg: ml_collections.ConfigDict, workdir: str, *,
             make_data: sources.MakeData = sources.build_data, devices=None) -> dict:
    """Trains the start and one H-step run per skill (skipping finished ones), writes
    skill_graph.json and skill_graph.png in the workdir, returns the JSON dict."""
    g = cfg.skill_graph
    if g.steps < 1:
        raise ValueError(f"config.skill_graph.steps must be >= 1, got {g.steps}: it is H, the "
                         "steps trained on each skill alone")
    if g.start_steps < 0 or (g.start_steps == 0 and not cfg.init_from):
        raise ValueError(f"config.skill_graph.start_steps={g.start_steps} with no "
                         "config.init_from: give the shared start, either steps on the config's "
                         "mix (> 0) or a checkpoint to start from")
    os.makedirs(workdir, exist_ok=True)
    quiet = {"train.progress_bar": False, "reweight.mixture": "fixed"}
    exp = experiment.build(cfg, train=False, data=make_data(cfg))
    names = list(exp.data.domain_names)
    start, jobs = cfg.init_from, []
    if g.start_steps:
        start = os.path.join(workdir, "start")
        jobs.append(executor.Job("start", _train_and_evaluate, (_derived(
            cfg, **quiet, **{"train.steps": g.start_steps, "train.run_steps": 0}), start,
            make_data, devices), start))
    for name in names:
        sub_cfg = _derived(cfg, **quiet, init_from=start, **{
            "data.weights": f"{name}:1", "train.steps": g.steps, "train.run_steps": 0,
            "train.eval_every": g.steps, "train.checkpoint_every": g.steps,
            "train.warmup_steps": min(cfg.train.warmup_steps, g.steps // 10)})
        sub = os.path.join(workdir, f"on_{name}")
        jobs.append(executor.Job(f"on_{name}", _train_and_evaluate,
                                 (sub_cfg, sub, make_data, devices), sub,
                                 needs=("start",) if g.start_steps else ()))
    records = executor.run(jobs, on_done=executor.log_done("skill_graph"))
    for job in jobs:
        record = records.get(job.name, {"status": "not started"})
        if record["status"] == "preempted":
            raise executor.Preempted(f"the skill-graph training {job.name} stopped by a signal; "
                                     "rerun the estimate to resume it")
        if record["status"] != "ok":
            raise RuntimeError(f"the skill-graph training {job.name} ({job.outdir}) did not "
                               f"finish: {record.get('error', record['status'])}")
    start_loss = _skill_losses(exp.evaluate(start, devices).loss, names)
    after = [_skill_losses(records[f"on_{n}"]["result"]["loss"], names) for n in names]
    after = np.stack(after)
    graph = (start_loss[None, :] - after) / start_loss[None, :]
    result = {"skills": names, "graph": graph.tolist(), "start_loss": start_loss.tolist(),
              "after_loss": after.tolist(), "steps": g.steps}
    with open(os.path.join(workdir, "skill_graph.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot_graph(graph, names, os.path.join(workdir, "skill_graph.png"))
    return result


def plot_graph(graph: np.ndarray, names: list, path: str) -> None:
    """Heatmap of A[i, j] (row: trained on, column: helped), values written in the cells."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
    im = ax.imshow(graph, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("skill j (eval loss drop)")
    ax.set_ylabel("skill i (trained on alone)")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{graph[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="A[i, j] = relative loss drop")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
