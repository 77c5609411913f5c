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

from lm.train import Batch, example_losses, token_losses


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


def make_probes(model: nn.Module, tx: optax.GradientTransformation,
                replicated: jax.sharding.Sharding) -> dict[str, Callable[..., jax.Array]]:
    """The jitted pure functions a host method may call on the live state, each returning an
    array replicated on every process:
      example_loss(params, rows) -> [R] each row's mean token loss;
      reference_loss(params, reference) -> the token-weighted mean loss of the reference;
      loss_after_step(params, opt_state, rows, reference) -> [C] the reference loss after one
        optimizer step on each of the C rows alone (`jax.vmap` of `loss_after_step`)."""
    one = functools.partial(loss_after_step, model=model, tx=tx)
    return {
        "example_loss": jax.jit(lambda p, rows: example_losses(p, rows, model)[0],
                                out_shardings=replicated),
        "reference_loss": jax.jit(functools.partial(reference_loss, model=model),
                                  out_shardings=replicated),
        "loss_after_step": jax.jit(jax.vmap(one, in_axes=(None, None, 0, None)),
                                   out_shardings=replicated),
    }


def make_reference_row_loss(references: dict, replicated: jax.sharding.Sharding
                            ) -> Callable[[str, Batch], jax.Array]:
    """(name, global rows) -> [R] each row's mean token loss under the frozen reference model
    `references[name]` (an lm.reference.Reference), replicated; one jitted function per
    reference, its params passed as an argument."""
    def mean_loss(params, rows, model):
        mask_RxL = rows["loss_mask"].astype(jnp.float32)
        return (token_losses(params, rows, model) * mask_RxL).sum(-1) / jnp.maximum(
            mask_RxL.sum(-1), 1.0)

    fns = {name: jax.jit(functools.partial(mean_loss, model=r.model),
                         in_shardings=(r.shardings, None), out_shardings=replicated)
           for name, r in references.items()}

    def row_loss(name: str, rows: Batch) -> jax.Array:
        if name not in fns:
            raise ValueError(f"no reference model named {name!r} is loaded (loaded: "
                             f"{sorted(fns)}): set config.reference.{name} to a reference "
                             "run's workdir")
        return fns[name](references[name].params, rows)
    return row_loss
