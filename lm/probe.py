"""The oracle probe: a reference set's loss after one optimizer step on a single example.

Data-influence methods ask how one candidate would move the model: take the real optax update
(gradient clip, AdamW moments, schedule position, all from the live optimizer state) on that
example alone, then measure the loss on a reference set. Everything here is a pure function of
(params, opt_state, example), `jax.vmap`ped over a chunk of candidates and jitted once, so the
live train state is read, never changed. The per-example objective is the example's mean token
loss (a batch of one with weight 1), which is what the training step minimises for a batch
holding only that example.
"""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lm.train import Batch, example_losses


def reference_loss(params, reference: Batch, model: nn.Module) -> jax.Array:
    """Token-weighted mean loss over the reference set's loss tokens (e.g. cloze answers)."""
    _, loss_sum_R, tokens_R = example_losses(params, reference, model)
    return loss_sum_R.sum() / jnp.maximum(tokens_R.sum(), 1.0)


def loss_after_step(params, opt_state, example: Batch, reference: Batch, *, model: nn.Module,
                    tx: optax.GradientTransformation) -> jax.Array:
    """The reference loss after one optimizer step on `example` (one row: arrays of [L])."""
    row = jax.tree.map(lambda x: x[None], example)
    grads = jax.grad(lambda p: example_losses(p, row, model)[0][0])(params)
    updates, _ = tx.update(grads, opt_state, params)
    return reference_loss(optax.apply_updates(params, updates), reference, model)


def make_probe(model: nn.Module, tx: optax.GradientTransformation
               ) -> tuple[Callable[..., jax.Array], Callable[..., jax.Array]]:
    """(probe, before): jitted `probe(params, opt_state, chunk, reference) -> [C]` post-step
    reference losses of the C candidate rows in `chunk` (arrays of [C, L]), and
    `before(params, reference) -> scalar`, the reference loss of the unchanged params."""
    one = functools.partial(loss_after_step, model=model, tx=tx)
    probe = jax.jit(jax.vmap(one, in_axes=(None, None, 0, None)))
    before = jax.jit(functools.partial(reference_loss, model=model))
    return probe, before


def probe_flops(train_flops_per_token: float, row_len: int, reference_tokens: int) -> float:
    """FLOPs of one probe from the training FLOPs per token (fwd + bwd = 3 forwards): a
    training step on one row of `row_len` tokens, then a forward pass over the reference."""
    return train_flops_per_token * (row_len + reference_tokens / 3.0)

