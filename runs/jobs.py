"""The kinds of job a job set may hold: main.py's modes that write one workdir, each a function
(config, workdir) -> result that resumes what the workdir holds. A comparison's prerequisite
names one by `mode`; the executor runs it (`run_kind` is picklable for workers and Ray)."""

from __future__ import annotations

import ml_collections


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict | None:
    """One training to the end (resuming its checkpoint); {"preempted": step} if stopped."""
    from runs import experiment
    result = experiment.run(cfg, workdir)
    return {"preempted": result["preempted"]} if "preempted" in result else None


def sweep(cfg: ml_collections.ConfigDict, workdir: str) -> None:
    """A RegMix sweep (its mixture.txt); not done until every trial it needs is ok."""
    from runs import sweep as sweep_lib
    result = sweep_lib.run(cfg, workdir)
    short = cfg.sweep.transfer_trials - result.get("transfer", {}).get("n", 0)
    if result["trials_failed"] or short > 0:  # its rerun retries only those
        raise RuntimeError(f"the sweep's trials are not all ok ({result['trials_failed']} "
                           f"failed, {max(short, 0)} missing from the transfer check; each "
                           f"trial's run.json under {workdir} says why)")


def skill_graph(cfg: ml_collections.ConfigDict, workdir: str) -> None:
    """A Skill-It skills graph estimate (its skill_graph.json)."""
    from runs import skill_graph as skill_graph_lib
    skill_graph_lib.estimate(cfg, workdir)


KINDS = {"train": train, "sweep": sweep, "skill_graph": skill_graph}


def run_kind(kind: str, cfg: ml_collections.ConfigDict, workdir: str):
    """The job of kind `kind` (a key of KINDS) on `cfg` in `workdir`."""
    return KINDS[kind](cfg, workdir)
