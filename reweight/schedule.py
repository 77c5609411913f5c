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

from data import pipeline


def token_counts(cfg: ml_collections.ConfigDict, names: Sequence[str]) -> np.ndarray | None:
    """Estimated training tokens per domain (None for synthetic domains, which are endless)."""
    if cfg.data.source == "synthetic":
        return None
    specs = pipeline.specs_from_config(cfg.data)
    if [s.name for s in specs] != list(names):
        raise ValueError(f"domain names {list(names)} differ from config.data.domains "
                         f"{[s.name for s in specs]}: natural weights follow the data config")
    if cfg.data.vocab == "builtin":
        from data import tokenizer
        vocab = str(tokenizer.model_path(cfg.data.data_dir, cfg.model.vocab_size))
    else:
        vocab = None if cfg.data.vocab == "byte" else cfg.data.vocab
    return pipeline.natural_token_counts(specs, vocab)


def natural_weights(cfg: ml_collections.ConfigDict, names: Sequence[str]) -> np.ndarray:
    """Each training domain's share of the training tokens (synthetic domains are endless and
    alike, so theirs is uniform)."""
    counts = token_counts(cfg, names)
    if counts is None:
        return np.full(len(names), 1.0 / len(names))
    return counts / counts.sum()


def resolve_weights(spec, cfg: ml_collections.ConfigDict, names: Sequence[str]) -> np.ndarray:
    """"natural", or anything `data.pipeline.parse_weights` reads ("uniform", "name:w,...",
    floats, "file:PATH") -> probabilities in domain order."""
    if isinstance(spec, str) and spec.strip() == "natural":
        return natural_weights(cfg, names)
    return pipeline.parse_weights(spec, names)


class Schedule:
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

    def observe_eval(self, step: int, eval_loss: dict) -> None:
        pass

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        """The next phase's weights at its start step (None elsewhere: the pipeline keeps
        the current ones)."""
        if step in self.starts[1:]:
            return self.weights[self.starts.index(step)]
        return None

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


def _start_step(fraction: float, steps: int, what: str) -> int:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {fraction}: it is a fraction of "
                         "train.steps")
    return round(fraction * steps)


def parse_phases(phases: str, cfg: ml_collections.ConfigDict,
                 names: Sequence[str]) -> Schedule:
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
        starts.append(_start_step(f, cfg.train.steps, f"schedule phase fraction {part!r}"))
        weights.append(resolve_weights(spec, cfg, names))
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


def end_upsampling(cfg: ml_collections.ConfigDict, names: Sequence[str]) -> Schedule:
    """The base mixture, then for the last `last_fraction` of training the upsampled one."""
    up = cfg.reweight.upsample
    base = resolve_weights(up.base, cfg, names)
    domains = [d.strip() for d in up.domains.split(",") if d.strip()]
    if not 0.0 < up.last_fraction < 1.0:
        raise ValueError(f"config.reweight.upsample.last_fraction must be in (0, 1), got "
                         f"{up.last_fraction}")
    start = round((1.0 - up.last_fraction) * cfg.train.steps)
    return Schedule([0, start], [base, upsampled(base, names, domains, up.factor)])


def write_mixture(path: str, names: Sequence[str], weights: np.ndarray) -> str:
    """Writes "name:w,..." to `path`, which any config loads with data.weights="file:PATH"
    (or a schedule phase "F=file:PATH"); returns the string."""
    text = ",".join(f"{n}:{w:.6g}" for n, w in zip(names, np.asarray(weights, np.float64)))
    with open(path, "w") as f:
        f.write(text + "\n")
    return text
