"""The instance-weighter interface: per-example weights computed inside the jitted step.

A weighter is a pure function of (its state, the global batch's per-example losses, domain
ids, which rows hold any loss tokens, the step). Its weights sum to 1 over the global batch;
the step minimises sum_i w_i * loss_i with w held constant (stop-gradient). Its state is a
pytree that lives in the train state, so the checkpoint saves it with the model.
"""

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections

from reweight.loss_based import LossBased

PyTree = Any


class InstanceWeighter(Protocol):
    # False when the weights never look at the losses: gradient accumulation then skips the
    # extra forward pass that global-batch normalisation needs, and `losses_B` is None.
    needs_losses: bool

    def init(self) -> PyTree:
        """The weighter's initial state (any pytree of arrays; () if stateless)."""

    def __call__(self, state: PyTree, losses_B: jax.Array | None, domain_B: jax.Array,
                 valid_B: jax.Array, step: jax.Array) -> tuple[jax.Array, PyTree, dict]:
        """Returns (weights_B summing to 1 over valid rows, new state, scalar metrics)."""


class Uniform:
    """Every row with loss tokens weighs the same: the plain mean of per-example losses."""

    needs_losses = False

    def init(self) -> PyTree:
        return ()

    def __call__(self, state, losses_B, domain_B, valid_B, step):
        valid = valid_B.astype(jnp.float32)
        return valid / jnp.maximum(valid.sum(), 1.0), state, {}


_WEIGHTERS = {
    "uniform": lambda cfg: Uniform(),
    "loss_based": LossBased.from_config,  # strategy, r, d, warmup_steps, r_schedule*
}


def make_instance_weighter(reweight_cfg: ml_collections.ConfigDict) -> InstanceWeighter:
    """Builds the weighter named by `config.reweight.instance`."""
    name = reweight_cfg.instance
    if name not in _WEIGHTERS:
        raise ValueError(f"config.reweight.instance={name!r} is not a known instance weighter; "
                         f"choose one of {sorted(_WEIGHTERS)}")
    return _WEIGHTERS[name](reweight_cfg)
