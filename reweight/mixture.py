"""The mixture-policy interface: host-side domain sampling weights, updated every N steps.

The training loop sums each domain's training loss and token count over the steps since the
last update and keeps the latest per-domain validation losses; every `update_every` steps it
hands them to the policy, and new weights go to the input pipeline for the very next batch.
A policy's state is a JSON-able dict that the checkpoint stores with the model, so a resumed
run makes the same updates as an unbroken one.
"""

from typing import Protocol, Sequence

import ml_collections
import numpy as np

from reweight import doremi, odm, schedule, skill_it


class MixturePolicy(Protocol):
    update_every: int  # steps between updates; 0 = never (the pipeline keeps its weights)

    def initial_weights(self) -> np.ndarray | None:
        """Weights for the first batch of a fresh run (None = the data config's weights)."""

    def observe_eval(self, step: int, eval_loss: dict) -> None:
        """Called after every evaluation with domain -> validation loss (for policies that
        keep a window of evaluations; the `eval_loss` given to `update` is only the latest)."""

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        """New sampling weights in domain order (None = keep the current ones).

        train_loss: domain -> mean token loss over the steps since the last update (domains
        drawn in that window only); eval_loss: domain -> the latest validation loss ({} before
        the first evaluation)."""

    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


class Fixed:
    """Keeps the weights the data config gives (`config.data.weights`): the default."""

    update_every = 0

    def initial_weights(self):
        return None

    def observe_eval(self, step, eval_loss):
        pass

    def update(self, step, train_loss, eval_loss):
        return None

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


_POLICIES = {
    "fixed": lambda cfg, names: Fixed(),
    "natural": lambda cfg, names: schedule.Schedule([0], [schedule.natural_weights(cfg, names)]),
    "schedule": lambda cfg, names: schedule.parse_phases(cfg.reweight.schedule.phases, cfg, names),
    "upsample": schedule.end_upsampling,
    "doremi": doremi.from_config,
    "odm": odm.from_config,
    "skill_it": skill_it.from_config,
}


def make_mixture_policy(cfg: ml_collections.ConfigDict,
                        domain_names: Sequence[str]) -> MixturePolicy:
    """Builds the policy named by `config.reweight.mixture` over the training domains, from
    the whole experiment config (a policy may need train.steps, the seed or data.weights)."""
    name = cfg.reweight.mixture
    if name not in _POLICIES:
        raise ValueError(f"config.reweight.mixture={name!r} is not a known mixture policy; "
                         f"choose one of {sorted(_POLICIES)}")
    return _POLICIES[name](cfg, list(domain_names))
