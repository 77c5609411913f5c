"""The stage-selector interface: between training stages, choose which candidates to train on.

Training runs in stages of `stage_steps` steps. The selector wraps the input pipeline: the loop
draws every batch from `wrap(source)`, so the selector can draw a candidate pool from the
mixture (provenance kept) and serve only the rows it chose, each once. Before the first batch
of each later stage the loop calls `select(step, state, runtime)`: the selector may probe the
live train state (params and optimizer state) through pure functions of the runtime, which
never change the run. Everything it needs to resume (stage, pool, chosen indices, its own
model's params, RNG) goes into the wrapped source's `get_state()`, which the checkpoint stores;
a `select` that the checkpoint already covers must be a no-op.
"""

from typing import Any, Protocol

import ml_collections


class StageSelector(Protocol):
    stage_steps: int  # steps per stage; 0 = a single stage (no selection)

    def wrap(self, source: Any) -> Any:
        """The BatchSource the loop trains from (the selected rows of each stage)."""

    def select(self, step: int, state: Any, runtime: Any) -> dict:
        """Chooses the data of the stage that starts after `step`; returns scalar metrics."""


class NoSelection:
    """Trains on the mixture as drawn: the default."""

    stage_steps = 0

    def wrap(self, source):
        return source

    def select(self, step, state, runtime):
        return {}


def _mates(cfg):
    from reweight.mates import MatesSelector  # flax and the probe, only when chosen
    return MatesSelector(cfg)


_SELECTORS = {"none": lambda cfg: NoSelection(), "mates": _mates}


def make_stage_selector(cfg: ml_collections.ConfigDict) -> StageSelector:
    """The selector named by `config.reweight.selector`, from the whole experiment config."""
    name = cfg.reweight.selector
    if name not in _SELECTORS:
        raise ValueError(f"config.reweight.selector={name!r} is not a known stage selector; "
                         f"choose one of {sorted(_SELECTORS)}")
    return _SELECTORS[name](cfg)
