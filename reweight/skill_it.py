"""Skill-It (Chen et al., NeurIPS 2023): online skill mixing along a skills graph.

A[i, j] says how much training on skill i helps skill j. The first round samples
p_1 ∝ exp(eta * A 1); every `update_every` steps the weights are recomputed from scratch as

    p_i ∝ exp(eta * sum_j A[i, j] * sum_{last w evaluations} L_j)

so skills feeding the skills that are still bad get more data. The window counts evaluations
(the loop evaluates every `train.eval_every` steps), not rounds. Options from the paper:
a target-skill mask (fine-tuning: only the losses of target skills j count) and loss
normalisation ("initial": each L_j divided by its value at the first evaluation, so skills
with different loss scales weigh alike). Skills are the training domains, whatever they are:
LEGO depths or corpus domains.

The graph comes from the config: "" (identity: no transfer), a matrix literal with rows
separated by ';' ("1,0;1,1"), or a JSON file {"skills": [...], "graph": [[...]]} such as
`main.py --mode=skill_graph` writes. As the reference trainer does (HazyResearch/skill-it,
`trainer/mw_trainer.py`, for a literal and a loaded graph alike), every off-diagonal entry equal
to 1 becomes `off_diagonal_ones` (default 0.5; 1 keeps the graph as written): the paper's
graphs are written with 1s, and with 1s the first round of the LEGO graph gives skill 2 0.53 of
the data instead of the reference's 0.35. Its trainer also evaluates before the first round's
data counts (`train.eval_at_start`, which the Skill-It configs set), so that evaluation is in
the first window.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import ml_collections
import numpy as np

from reweight.interface import MethodEnv, MixturePolicy

NORMALIZE = ("none", "initial")
FIELD = "config.reweight.skill_it"


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.skill_it: the policy's settings, each with its default."""
    c = ml_collections.ConfigDict()
    # Skills graph A[i, j] (training on i helps j): "" = identity, rows of a matrix literal
    # "1,0;1,1", or a .json file written by `main.py --mode=skill_graph`.
    c.graph = ""
    c.off_diagonal_ones = 0.5  # written off-diagonal 1s become this (reference: 0.5)
    c.eta = 0.5  # softmax temperature on A @ (summed eval losses)
    c.window = 3  # evaluations summed per update (counts evals, not rounds)
    c.update_every = 1000  # steps per round; weights recomputed each round
    c.target = ""  # comma-separated target skills ("" = every skill)
    c.normalize = "none"  # none | initial (each loss / its first eval)
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.skill_it, one message each, building nothing (the
    graph and the target skills are checked against the domains when the policy is built)."""
    s, out = cfg.reweight.skill_it, []
    if not 0 < s.off_diagonal_ones <= 1:
        out.append(f"{FIELD}.off_diagonal_ones must be in (0, 1], got {s.off_diagonal_ones}: "
                   "the weight of a written edge (the reference trainer's 0.5; 1 = the graph "
                   "as written)")
    return out + _problems(s.eta, s.window, s.update_every, s.normalize)


def _problems(eta: float, window: int, update_every: int, normalize: str) -> list[str]:
    out = []
    if not eta > 0:
        out.append(f"{FIELD}.eta must be > 0, got {eta}: it scales the losses in the softmax; "
                   "larger moves weight faster")
    if window < 1:
        out.append(f"{FIELD}.window must be >= 1 evaluation, got {window}")
    if update_every < 1:
        out.append(f"{FIELD}.update_every must be >= 1 step, got {update_every}")
    if normalize not in NORMALIZE:
        out.append(f"{FIELD}.normalize={normalize!r} is unknown; use one of {NORMALIZE}")
    return out


def parse_graph(spec: str, names: Sequence[str]) -> np.ndarray:
    """The skills graph [n, n] from a config string (see the module docstring)."""
    n = len(names)
    if not spec.strip():
        return np.eye(n)
    if spec.strip().endswith(".json"):
        if not os.path.exists(spec):
            raise ValueError(f"config.reweight.skill_it.graph={spec!r} does not exist; write it "
                             "with `main.py --mode=skill_graph` or give a matrix literal")
        with open(spec) as f:
            saved = json.load(f)
        if list(saved["skills"]) != list(names):
            raise ValueError(f"skills graph {spec!r} is over skills {saved['skills']}, but the "
                             f"training domains are {list(names)}: estimate it for these")
        graph = np.asarray(saved["graph"], np.float64)
    else:
        try:
            graph = np.asarray([[float(x) for x in row.split(",")]
                                for row in spec.strip().split(";")], np.float64)
        except ValueError:
            raise ValueError(f"config.reweight.skill_it.graph={spec!r} is not a matrix literal: "
                             "write rows of comma-separated numbers separated by ';'") from None
    if graph.shape != (n, n) or not np.all(np.isfinite(graph)):
        raise ValueError(f"config.reweight.skill_it.graph={spec!r}: the skills graph must be a "
                         f"finite {n}x{n} matrix over {list(names)}, got shape {graph.shape}: "
                         f"{graph.tolist()}")
    return graph


def reference_edges(graph: np.ndarray, off_diagonal_ones: float) -> np.ndarray:
    """The graph with every off-diagonal entry equal to 1 set to `off_diagonal_ones`."""
    graph = np.array(graph, np.float64)
    ones = (graph == 1.0) & ~np.eye(len(graph), dtype=bool)
    graph[ones] = off_diagonal_ones
    return graph


class SkillIt(MixturePolicy):
    """The online Skill-It mixture policy over `names` (domain order)."""

    def __init__(self, names: Sequence[str], graph: np.ndarray, *, eta: float, window: int,
                 update_every: int, target: Sequence[str] = (), normalize: str = "none"):
        found = _problems(eta, window, update_every, normalize)
        unknown = [t for t in target if t not in names]
        if unknown:
            found.append(f"{FIELD}.target names unknown skills {unknown}; the skills are "
                         f"{list(names)}")
        if found:
            raise ValueError("\n".join(found))
        self.names = list(names)
        self.graph = np.asarray(graph, np.float64)
        self.eta, self.window, self.update_every = eta, window, update_every
        self.normalize = normalize
        self.mask = np.array([not target or n in target for n in self.names], np.float64)
        self.history: list[list[float]] = []  # the last `window` evals' losses, domain order
        self.initial: list[float] | None = None  # the first eval's losses (normalisation)

    def _softmax(self, scores: np.ndarray) -> np.ndarray:
        z = np.exp(self.eta * (scores - scores.max()))
        return z / z.sum()

    def initial_weights(self) -> np.ndarray:
        """p_1 ∝ exp(eta * A m), m the target mask (all ones without targets)."""
        return self._softmax(self.graph @ self.mask)

    def observe_eval(self, step: int, eval_loss: dict) -> None:
        missing = [n for n in self.names if n not in eval_loss]
        if missing:
            raise ValueError(f"Skill-It needs an eval loss for every skill; none for {missing} "
                             f"at step {step}: give each training domain an eval domain of "
                             "the same name")
        losses = [float(eval_loss[n]) for n in self.names]
        if self.initial is None:
            self.initial = losses
        self.history = (self.history + [losses])[-self.window:]

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        """Weights from the last `window` evaluations (None before the first one)."""
        if not self.history:
            return None
        losses = np.sum(self.history, axis=0)
        if self.normalize == "initial":
            losses = losses / np.maximum(np.asarray(self.initial), 1e-12)
        return self._softmax(self.graph @ (self.mask * losses))

    def get_state(self) -> dict:
        return {"history": self.history, "initial": self.initial}

    def set_state(self, state: dict) -> None:
        self.history = [list(map(float, h)) for h in state["history"]]
        self.initial = None if state["initial"] is None else list(map(float, state["initial"]))


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> SkillIt:
    """The policy from `config.reweight.skill_it` over the training domains."""
    if found := problems(cfg):
        raise ValueError("\n".join(found))
    s, names = cfg.reweight.skill_it, list(env.domain_names)
    target = [t.strip() for t in s.target.split(",") if t.strip()]
    graph = reference_edges(parse_graph(s.graph, names), s.off_diagonal_ones)
    return SkillIt(names, graph, eta=s.eta, window=s.window,
                   update_every=s.update_every, target=target, normalize=s.normalize)
