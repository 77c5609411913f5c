"""RHO-1 selective language modelling (Lin et al., NeurIPS 2024, "Not All Tokens Are What You
Need"; code: github.com/microsoft/rho): train only on the tokens whose excess loss over a frozen
reference model is highest.

Each step, on the global batch: excess = l_model - l_reference per loss token (the reference,
config.reference.workdir, is trained on high-quality or target data: configs/reference_target.py);
the floor(keep * n_valid) tokens of the n_valid loss tokens with the highest excess are kept,
ties broken by position in the batch (row-major: the earlier token first), and the loss is
the mean over the kept tokens (per-token weights 1 / kept on them, 0 elsewhere). The paper
keeps 60-70%. `keep` is read as a fraction with a denominator of at most 10^4 so that the
count is exact integer arithmetic at any batch size.

Metrics (weighter/...): kept_fraction over the batch and per domain (0 for a domain with no
tokens in the batch), kept_share per domain (its part of the kept tokens), the excess
threshold (the lowest kept excess) and a summary of the excess over the valid tokens: mean and
the 0, 10, 25, 50, 75, 90 and 100th percentiles (nearest rank).
"""

from __future__ import annotations

import fractions
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from reweight.interface import MethodEnv, PyTree, StepInputs

QUANTILES = (0, 10, 25, 50, 75, 90, 100)  # percentiles of the excess logged each step
DENOMINATOR = 10_000  # `keep` is read as p / q with q <= this


def kept_count(n_valid: jax.Array, keep: float) -> jax.Array:
    """floor(keep * n_valid) exactly, in int32, for any n_valid < 2^31."""
    f = fractions.Fraction(keep).limit_denominator(DENOMINATOR)
    p, q = f.numerator, f.denominator
    return p * (n_valid // q) + (p * (n_valid % q)) // q


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.rho1: the weighter's settings, each with its default."""
    c = ml_collections.ConfigDict()
    c.keep = 0.6  # fraction of the global batch's loss tokens kept (paper: 0.6-0.7)
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.rho1, one message each, building nothing."""
    return _problems(cfg.reweight.rho1.keep)


def _problems(keep: float) -> list[str]:
    if 0.0 < keep <= 1.0:
        return []
    return [f"config.reweight.rho1.keep must be in (0, 1], got {keep}: the fraction of loss "
            "tokens trained on (the paper: 0.6-0.7)"]


class Rho1:
    """Top-`keep` tokens of the global batch by excess loss over the reference."""

    needs_losses = True
    needs_reference = True

    def __init__(self, keep: float, domain_names: Sequence[str]):
        if found := _problems(keep):
            raise ValueError("\n".join(found))
        self.keep, self.domain_names = keep, tuple(domain_names)

    def init(self) -> PyTree:
        return ()

    def __call__(self, state: PyTree, inputs: StepInputs) -> tuple[jax.Array, PyTree, dict]:
        mask_BxL = inputs.loss_mask_BxL > 0
        excess_BxL = inputs.token_loss_BxL - inputs.reference_token_loss_BxL
        ok_BxL = mask_BxL & jnp.isfinite(excess_BxL)
        n_valid = ok_BxL.sum()
        k = kept_count(n_valid, self.keep)
        # Descending by excess, invalid tokens last; a stable sort breaks ties by position.
        flat = jnp.where(ok_BxL, excess_BxL, -jnp.inf).reshape(-1)
        order = jnp.argsort(-flat, stable=True)
        rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
        kept_BxL = (rank < k).reshape(mask_BxL.shape) & ok_BxL
        weights_BxL = kept_BxL.astype(jnp.float32) / jnp.maximum(k, 1).astype(jnp.float32)

        sorted_desc = flat[order]
        last = jnp.maximum(n_valid - 1, 0)
        metrics = {"kept_fraction": k / jnp.maximum(n_valid, 1),
                   "excess_threshold": jnp.where(k > 0, sorted_desc[jnp.maximum(k - 1, 0)], 0.0),
                   "excess_mean": jnp.where(ok_BxL, excess_BxL, 0.0).sum() / jnp.maximum(
                       n_valid, 1)}
        for q in QUANTILES:  # nearest rank from the bottom of the valid tokens
            i = last - jnp.round(q / 100 * last).astype(last.dtype)
            metrics[f"excess_p{q}"] = jnp.where(n_valid > 0, sorted_desc[i], 0.0)
        d = len(self.domain_names)
        domain_BxL = jnp.broadcast_to(inputs.domain_B[:, None], mask_BxL.shape).reshape(-1)
        kept_D = jax.ops.segment_sum(kept_BxL.reshape(-1).astype(jnp.float32), domain_BxL, d)
        valid_D = jax.ops.segment_sum(ok_BxL.reshape(-1).astype(jnp.float32), domain_BxL, d)
        for i, name in enumerate(self.domain_names):
            metrics[f"kept_fraction/{name}"] = kept_D[i] / jnp.maximum(valid_D[i], 1.0)
            metrics[f"kept_share/{name}"] = kept_D[i] / jnp.maximum(kept_D.sum(), 1.0)
        return weights_BxL, state, metrics


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Rho1:
    return Rho1(cfg.reweight.rho1.keep, env.domain_names)
