"""Statistics of runs compared seed by seed: the seed is the unit, intervals are Student t.

A comparison trains every arm with the same seeds, so run k of each arm starts from the same
params and, where the mixtures agree, reads the same batches. The paired difference of a
quantity (arm minus baseline, seed by seed) then cancels what the seed alone decides, and its
interval is what says whether a difference is real.
"""

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
import scipy.stats


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean over seeds and its confidence interval (nan bounds below 2 values)."""
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean and t interval of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if len(v) < 2:
        return Estimate(mean, math.nan, math.nan, 1)
    sem = float(scipy.stats.sem(v))
    if sem == 0:  # identical values: the interval is the point
        return Estimate(mean, mean, mean, len(v))
    low, high = scipy.stats.t.interval(confidence, len(v) - 1, loc=mean, scale=sem)
    return Estimate(mean, float(low), float(high), len(v))


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float],
                      confidence: float = 0.95) -> Estimate:
    """arm - baseline over the seeds both have (finite on both sides)."""
    seeds = sorted(set(arm) & set(baseline))
    return mean_ci([arm[s] - baseline[s] for s in seeds
                    if math.isfinite(arm[s]) and math.isfinite(baseline[s])], confidence)


def verdict(diff: Estimate, lower_is_better: bool = True) -> str:
    """better / worse when the interval of the difference excludes 0, else no clear difference
    (too few seeds below 2 pairs)."""
    if diff.n < 2 or not (math.isfinite(diff.low) and math.isfinite(diff.high)):
        return "too few seeds"
    if diff.high < 0:
        return "better" if lower_is_better else "worse"
    if diff.low > 0:
        return "worse" if lower_is_better else "better"
    return "no clear difference"


def curve_mean(steps: Sequence[float], values: Sequence[float]) -> float:
    """The area under a curve over its step range, divided by that range: the curve's mean
    value (its only value when it has one point)."""
    steps, values = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    if len(steps) == 1:
        return float(values[0])
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def first_step_at(steps: Sequence[float], values: Sequence[float], target: float) -> float:
    """The first step at which a falling curve reaches `target`, linearly interpolated between
    the evaluated steps (nan if it never does)."""
    for i, (s, v) in enumerate(zip(steps, values)):
        if v <= target:
            if i == 0:
                return float(s)
            s0, v0 = steps[i - 1], values[i - 1]
            return float(s0 + (v0 - target) / (v0 - v) * (s - s0))
    return math.nan
