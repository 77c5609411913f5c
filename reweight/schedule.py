"""Static and scheduled domain mixtures: natural proportions and piecewise-constant schedules
over the fraction of training (end-of-training upsampling, one such schedule, is upsample.py).

A schedule needs no state of its own: the weights at step s depend only on s, and the input
pipeline checkpoints the weights it is using. Its `update_every` is the gcd of its switch steps,
so the loop (which syncs with the device at every update step) calls it only where it can
switch.
"""

import math
from typing import Sequence

import ml_collections
import numpy as np

from reweight.interface import MethodEnv, MixturePolicy


class Schedule(MixturePolicy):
    """Piecewise-constant weights: phase k is used for the batches after step `starts[k]`
    (starts[0] = 0, the first batch)."""

    def __init__(self, starts: Sequence[int], weights: Sequence[np.ndarray]):
        if not starts or starts[0] != 0 or list(starts) != sorted(set(starts)):
            raise ValueError(f"schedule start steps must begin at 0 and increase, got "
                             f"{list(starts)}: phases closer than one step collapse; use more "
                             "train.steps or fewer phases")
        self.starts = [int(s) for s in starts]
        self.weights = [np.asarray(w, np.float64) for w in weights]
        self.update_every = math.gcd(*self.starts[1:]) if len(self.starts) > 1 else 0

    def initial_weights(self) -> np.ndarray:
        return self.weights[0]

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        """The next phase's weights at its start step (None elsewhere: the pipeline keeps
        the current ones)."""
        if step in self.starts[1:]:
            return self.weights[self.starts.index(step)]
        return None


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.schedule: the schedule's settings, each with its default (WEIGHTS is
    uniform | natural | name:w,... | file:PATH)."""
    c = ml_collections.ConfigDict()
    c.phases = "0=natural"  # "FRACTION=WEIGHTS;..." over the fraction of steps
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every malformed entry of config.reweight.schedule.phases, building nothing (the
    weights are parsed against the domains when the schedule is built)."""
    return _phases(cfg.reweight.schedule.phases)[1]


def _phases(phases: str) -> tuple[list[tuple[float, str]], list[str]]:
    """("FRACTION=WEIGHTS;..." as (fraction, WEIGHTS) pairs, a message per bad entry)."""
    entries, out = [], []
    for part in (p.strip() for p in phases.split(";") if p.strip()):
        fraction, sep, spec = part.partition("=")
        try:
            f = float(fraction)
        except ValueError:
            f = None
        if not sep or f is None:
            out.append(f"config.reweight.schedule.phases entry {part!r} is not "
                       "FRACTION=WEIGHTS, e.g. '0=natural;0.85=code:1,math:1'")
        elif not 0.0 <= f < 1.0:
            out.append(f"config.reweight.schedule.phases entry {part!r}: the fraction must be "
                       f"in [0, 1), got {f}: it is a fraction of train.steps")
        else:
            entries.append((f, spec))
    return entries, out


def parse_phases(phases: str, steps: int, env: MethodEnv) -> Schedule:
    """"FRACTION=WEIGHTS;..." (e.g. "0=natural;0.85=code:1,math:1") -> a Schedule."""
    entries, found = _phases(phases)
    if found:
        raise ValueError("\n".join(found))
    return Schedule([round(f * steps) for f, _ in entries], [env.weights(w) for _, w in entries])


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Schedule:
    """The phases of config.reweight.schedule.phases over config.train.steps."""
    return parse_phases(cfg.reweight.schedule.phases, cfg.train.steps, env)


def natural(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Schedule:
    """Each training domain's share of the training tokens, throughout."""
    return Schedule([0], [env.weights("natural")])
