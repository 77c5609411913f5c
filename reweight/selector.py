"""The stage-selector interface: between training stages, choose which candidates to train on.

Training runs in stages; before each later stage the selector scores a candidate pool (drawn
from the mixture, provenance kept) and returns the indices of the examples the next stage
consumes, each once. It may call `probe(candidates)`, which the training side provides: a pure
function of the current state (params and optimizer state) that never touches the live run.
Its state (stage, selected indices, its own model's params, RNG) is a JSON-able dict the
checkpoint stores. The stage loop that calls it arrives with the first selector (MATES).
"""

from typing import Callable, Protocol

import ml_collections
import numpy as np


class StageSelector(Protocol):
    def select(self, stage: int, candidates: dict, probe: Callable[[dict], np.ndarray],
               rng: np.random.Generator) -> np.ndarray:
        """Indices into the candidate rows (`candidates` is a batch dict) for the next stage."""

    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


def make_stage_selector(reweight_cfg: ml_collections.ConfigDict) -> StageSelector | None:
    """The selector named by `config.reweight.selector`; "none" trains on the mixture as drawn."""
    if reweight_cfg.selector == "none":
        return None
    raise ValueError(f"config.reweight.selector={reweight_cfg.selector!r} is not a known stage "
                     "selector; only 'none' exists so far")
