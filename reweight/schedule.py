"""Static and scheduled domain mixtures: natural proportions, piecewise-constant schedules over
the fraction of training, and end-of-training upsampling (Blakeney et al. 2024).

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


def _start_step(fraction: float, steps: int, what: str) -> int:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {fraction}: it is a fraction of "
                         "train.steps")
    return round(fraction * steps)


def parse_phases(phases: str, steps: int, env: MethodEnv) -> Schedule:
    """"FRACTION=WEIGHTS;..." (e.g. "0=natural;0.85=code:1,math:1") -> a Schedule."""
    starts, weights = [], []
    for part in (p.strip() for p in phases.split(";") if p.strip()):
        fraction, sep, spec = part.partition("=")
        try:
            f = float(fraction)
        except ValueError:
            f = None
        if not sep or f is None:
            raise ValueError(f"config.reweight.schedule.phases entry {part!r} is not "
                             "FRACTION=WEIGHTS, e.g. '0=natural;0.85=code:1,math:1'")
        starts.append(_start_step(f, steps, f"schedule phase fraction {part!r}"))
        weights.append(env.weights(spec))
    return Schedule(starts, weights)


def upsampled(base: np.ndarray, names: Sequence[str], domains: Sequence[str],
              factor: float) -> np.ndarray:
    """`base` with the named domains' weights multiplied by `factor`, renormalised: the other
    domains keep their proportions to one another."""
    unknown = [d for d in domains if d not in names]
    if unknown or not domains:
        raise ValueError(f"config.reweight.upsample.domains names {list(domains)}, unknown: "
                         f"{unknown}; choose among {list(names)}")
    if factor <= 0:
        raise ValueError(f"config.reweight.upsample.factor must be > 0, got {factor}")
    w = np.array(base, np.float64)
    w[[names.index(d) for d in domains]] *= factor
    return w / w.sum()


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Schedule:
    """The phases of config.reweight.schedule.phases over config.train.steps."""
    return parse_phases(cfg.reweight.schedule.phases, cfg.train.steps, env)


def natural(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Schedule:
    """Each training domain's share of the training tokens, throughout."""
    return Schedule([0], [env.weights("natural")])


def end_upsampling(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Schedule:
    """The base mixture, then for the last `last_fraction` of training the upsampled one
    (last_fraction 1: upsampled throughout, the uniform-upsampling control)."""
    up, names = cfg.reweight.upsample, list(env.domain_names)
    base = env.weights(up.base)
    domains = [d.strip() for d in up.domains.split(",") if d.strip()]
    if not 0.0 < up.last_fraction <= 1.0:
        raise ValueError(f"config.reweight.upsample.last_fraction must be in (0, 1], got "
                         f"{up.last_fraction}")
    start = round((1.0 - up.last_fraction) * cfg.train.steps)
    after = upsampled(base, names, domains, up.factor)
    return Schedule([0], [after]) if start == 0 else Schedule([0, start], [base, after])
