"""End-of-training upsampling (Blakeney et al. 2024): a base mixture, then for the last
`last_fraction` of training the same with some domains' weights multiplied by `factor`.

A two-phase `reweight.schedule.Schedule`: no state of its own (see schedule.py).
"""

from typing import Sequence

import ml_collections
import numpy as np

from reweight.interface import MethodEnv
from reweight.schedule import Schedule

FIELD = "config.reweight.upsample"


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.upsample: the policy's settings, each with its default (WEIGHTS is
    uniform | natural | name:w,... | file:PATH)."""
    c = ml_collections.ConfigDict()
    c.base = "natural"  # WEIGHTS before the switch
    c.domains = "code,math"  # domains upsampled at the end
    c.factor = 2.0  # their weights times this, renormalised (others keep ratios)
    c.last_fraction = 0.15  # final fraction of train.steps in the upsampled mix
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.upsample, one message each, building nothing (the
    domains and base weights are checked against the data when the policy is built)."""
    up, out = cfg.reweight.upsample, []
    if not _domains(up.domains):
        out.append(f"{FIELD}.domains={up.domains!r} names no domain: give the comma-separated "
                   "domains to upsample")
    if not up.factor > 0:
        out.append(f"{FIELD}.factor must be > 0, got {up.factor}")
    if not 0.0 < up.last_fraction <= 1.0:
        out.append(f"{FIELD}.last_fraction must be in (0, 1], got {up.last_fraction}")
    return out


def _domains(text: str) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()]


def upsampled(base: np.ndarray, names: Sequence[str], domains: Sequence[str],
              factor: float) -> np.ndarray:
    """`base` with the named domains' weights multiplied by `factor` (> 0), renormalised: the
    other domains keep their proportions to one another."""
    unknown = [d for d in domains if d not in names]
    if unknown:
        raise ValueError(f"{FIELD}.domains names {list(domains)}, unknown: {unknown}; choose "
                         f"among {list(names)}")
    w = np.array(base, np.float64)
    w[[names.index(d) for d in domains]] *= factor
    return w / w.sum()


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Schedule:
    """The base mixture, then for the last `last_fraction` of training the upsampled one
    (last_fraction 1: upsampled throughout, the uniform-upsampling control)."""
    if found := problems(cfg):
        raise ValueError("\n".join(found))
    up, names = cfg.reweight.upsample, list(env.domain_names)
    base = env.weights(up.base)
    start = round((1.0 - up.last_fraction) * cfg.train.steps)
    after = upsampled(base, names, _domains(up.domains), up.factor)
    return Schedule([0], [after]) if start == 0 else Schedule([0, start], [base, after])
