"""Probes: how one optimizer step on a single example would move a reference set's loss.

Data-influence methods ask how one candidate would move the model: take the real optax update
(gradient clip, AdamW moments, schedule position, all from the live optimizer state) on that
example alone, then measure the loss on a reference set. Two probes:
  - exact (MATES's oracle, Yu, Das, Xiong, NeurIPS 2024): apply that update, evaluate the
    reference; one candidate forward + backward plus a reference forward per candidate;
  - first order (TracIn-style, Pruthi et al. 2020, with the optimizer's own update): the
    change is, to first order, <grad L_ref, u(x)>, u(x) the update `tx.update` makes from x's
    gradient; the reference gradient is computed once and shared by every candidate, so a
    candidate costs its forward + backward and a dot product.
Everything here is a pure function of (params, opt_state, example), `jax.vmap`ped over a chunk
of candidates and jitted once, so the live train state is read, never changed. The per-example
objective is the example's mean token loss (a batch of one with weight 1), which is what the
training step minimises for a batch holding only that example.

The reference loss is computed only at the reference rows' loss tokens (e.g. cloze answers):
the decoder's hidden states everywhere, the unembedding only at K gathered positions per row
(`reference_positions`, K = the most loss tokens in any row, fixed on the host).
"""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm.train import Batch, example_losses, token_losses


def reference_positions(rows: dict) -> dict:
    """Host rows plus where their loss tokens are: "loss_positions" [R, K] (int32, padded with
    0) and "loss_weights" [R, K] (the loss mask there, 0 on padding), K the most loss tokens in
    a row. The reference functions below read these instead of scoring every position."""
    mask_RxL = np.asarray(rows["loss_mask"])
    count_R = (mask_RxL > 0).sum(-1)
    k = max(int(count_R.max()), 1)
    # Stable sort puts each row's loss positions first, in order.
    order_RxL = np.argsort(mask_RxL <= 0, axis=-1, kind="stable")
    valid_RxK = np.arange(k)[None] < count_R[:, None]
    positions_RxK = np.where(valid_RxK, order_RxL[:, :k], 0).astype(np.int32)
    weights_RxK = np.where(valid_RxK, np.take_along_axis(mask_RxL, positions_RxK, 1), 0)
    return {**rows, "loss_positions": positions_RxK, "loss_weights": weights_RxK.astype(np.float32)}


def reference_loss(params, reference: Batch, model: nn.Module) -> jax.Array:
    """Token-weighted mean loss over the reference set's loss tokens, logits only there
    (`reference` as `reference_positions` returns it)."""
    positions_RxK = reference["loss_positions"]
    logits_RxKxV = model.apply({"params": params}, reference["inputs"], reference["positions"],
                               reference["segment_ids"], positions_RxK)
    targets_RxK = jnp.take_along_axis(reference["targets"], positions_RxK, axis=1)
    loss_RxK = optax.softmax_cross_entropy_with_integer_labels(logits_RxKxV, targets_RxK)
    weights_RxK = reference["loss_weights"]
    return (loss_RxK * weights_RxK).sum() / jnp.maximum(weights_RxK.sum(), 1.0)


def _update(params, opt_state, example: Batch, model: nn.Module,
            tx: optax.GradientTransformation):
    """The optimizer's update from `example`'s gradient alone (one row: arrays of [L])."""
    row = jax.tree.map(lambda x: x[None], example)
    grads = jax.grad(lambda p: example_losses(p, row, model)[0][0])(params)
    updates, _ = tx.update(grads, opt_state, params)
    return updates


def loss_after_step(params, opt_state, example: Batch, reference: Batch, *, model: nn.Module,
                    tx: optax.GradientTransformation) -> jax.Array:
    """The reference loss after one optimizer step on `example` (one row: arrays of [L])."""
    updates = _update(params, opt_state, example, model, tx)
    return reference_loss(optax.apply_updates(params, updates), reference, model)


def first_order_change(params, opt_state, example: Batch, reference_grads, *,
                       model: nn.Module, tx: optax.GradientTransformation) -> jax.Array:
    """<grad L_ref, u(example)>: the first-order change of the reference loss from one
    optimizer step on `example` (negative = the step helps the reference)."""
    updates = _update(params, opt_state, example, model, tx)
    dots = jax.tree.map(lambda g, u: jnp.vdot(g, u.astype(g.dtype)), reference_grads, updates)
    return sum(jax.tree.leaves(dots))


def make_probes(model: nn.Module, tx: optax.GradientTransformation,
                replicated: jax.sharding.Sharding, params_sharding
                ) -> dict[str, Callable[..., jax.Array]]:
    """The jitted pure functions a host method may call on the live state (`params_sharding`:
    the params' shardings, which the reference gradient takes):
      example_loss(params, rows) -> [R] each row's mean token loss;
      reference_loss(params, reference) -> the token-weighted mean loss of the reference;
      reference_grad(params, reference) -> (that loss, its gradient), once per stage;
      loss_after_step(params, opt_state, rows, reference) -> [C] the reference loss after one
        optimizer step on each of the C rows alone (`jax.vmap` of `loss_after_step`);
      first_order_change(params, opt_state, rows, reference_grads) -> [C] the first-order
        change of the reference loss from that step.
    Losses come back replicated on every process. `reference` is `reference_positions`'s."""
    after = functools.partial(loss_after_step, model=model, tx=tx)
    change = functools.partial(first_order_change, model=model, tx=tx)
    ref_loss = functools.partial(reference_loss, model=model)
    return {
        "example_loss": jax.jit(lambda p, rows: example_losses(p, rows, model)[0],
                                out_shardings=replicated),
        "reference_loss": jax.jit(ref_loss, out_shardings=replicated),
        "reference_grad": jax.jit(jax.value_and_grad(ref_loss),
                                  out_shardings=(replicated, params_sharding)),
        "loss_after_step": jax.jit(jax.vmap(after, in_axes=(None, None, 0, None)),
                                   out_shardings=replicated),
        "first_order_change": jax.jit(jax.vmap(change, in_axes=(None, None, 0, None)),
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
