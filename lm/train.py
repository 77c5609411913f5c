"""Train state, optimizer, and the jitted train and eval steps.

The step computes every token's loss, asks the weighter for weights over the global batch
(per example or per token, `reweight.interface.Weighter`), and minimises the weighted loss with
the weights held constant. With gradient accumulation the weights are still normalised over the
whole global batch: the losses of all micro-batches come first (one forward pass), then the
gradients (see `train_step`).
"""

import contextlib
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from lm import model as model_lib
from lm import reference as reference_lib
from lm import sharding
from reweight.interface import StepInputs, Weighter

Batch = dict[str, jax.Array]


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array  # the weighter's RNG: folded with the step, so each step draws anew
    weighter_state: Any


def make_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up, then cosine to min_lr_ratio * lr, or warm-up-stable-decay to 0."""
    if train.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, train.lr, train.warmup_steps, max(train.steps, train.warmup_steps + 1),
            end_value=train.lr * train.min_lr_ratio)
    if train.schedule == "wsd":
        decay = int(train.steps * train.decay_fraction)
        stable = max(train.steps - train.warmup_steps - decay, 0)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, train.lr, train.warmup_steps),
             optax.constant_schedule(train.lr),
             optax.linear_schedule(train.lr, 0.0, max(decay, 1))],
            [train.warmup_steps, train.warmup_steps + stable])
    raise ValueError(f"config.train.schedule={train.schedule!r} is unknown; use cosine or wsd")


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW with decay on matrices only, after an optional global-norm clip; with
    train.on_nonfinite=skip, an update whose gradients are not finite is skipped and counted."""
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    adamw = optax.adamw(make_schedule(train), b1=train.b1, b2=train.b2,
                        weight_decay=train.weight_decay, mask=decay_mask)
    tx = optax.chain(optax.clip_by_global_norm(train.grad_clip), adamw) if train.grad_clip > 0 \
        else adamw
    if train.on_nonfinite == "skip":  # the loop stops after max_nonfinite_skips in a row
        tx = optax.apply_if_finite(tx, max_consecutive_errors=train.max_nonfinite_skips)
    return tx


def _init_boxed(rng, *, model, tx, weighter, seq_len):
    """The initial state with params still wrapped in their logical-axis boxes."""
    init_rng, state_rng = jax.random.split(rng)
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    params = model.init(init_rng, tokens, tokens, tokens)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=state_rng, weighter_state=weighter.init())


def state_layout(model, tx, weighter, seq_len: int, mesh, axis_rules):
    """(abstract state with shardings attached, init function producing it sharded)."""
    init = functools.partial(_init_boxed, model=model, tx=tx, weighter=weighter, seq_len=seq_len)
    boxed = jax.eval_shape(init, jax.random.key(0))
    shardings = sharding.logical_sharding(boxed, mesh, axis_rules)
    sharding.check_divisible(nn.meta.unbox(boxed), shardings)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            nn.meta.unbox(boxed), shardings)
    init_fn = jax.jit(lambda rng: nn.meta.unbox(init(rng)), out_shardings=shardings)
    return abstract, init_fn


def _token_losses(params, batch: Batch, model: nn.Module):
    """(logits [B, L, V], per-token loss [B, L], loss mask as float [B, L])."""
    logits_BxLxV = model.apply({"params": params}, batch["inputs"], batch["positions"],
                               batch["segment_ids"])
    token_loss_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, batch["targets"])
    return logits_BxLxV, token_loss_BxL, batch["loss_mask"].astype(jnp.float32)


def example_losses(params, batch: Batch, model: nn.Module):
    """(per-example mean token loss [B], summed token loss [B], loss-token count [B])."""
    _, token_loss_BxL, mask_BxL = _token_losses(params, batch, model)
    return _per_example(token_loss_BxL, mask_BxL)


def _per_example(token_loss_BxL, mask_BxL):
    loss_sum_B = (token_loss_BxL * mask_BxL).sum(-1)
    tokens_B = mask_BxL.sum(-1)
    return loss_sum_B / jnp.maximum(tokens_B, 1.0), loss_sum_B, tokens_B


def _microbatched(batch: Batch, k: int) -> Batch:
    """[B, ...] -> [k, B/k, ...]; micro-batch j takes rows j, j+k, ... so each data shard keeps
    its own rows (no communication)."""
    return jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)


def _unmicrobatched(x_KxBk: jax.Array) -> jax.Array:
    return x_KxBk.swapaxes(0, 1).reshape(-1, *x_KxBk.shape[2:])


def _domain_sums(values_B, domain_B, num_domains: int):
    return jax.ops.segment_sum(values_B, domain_B, num_segments=num_domains)


def token_losses(params, batch: Batch, model: nn.Module) -> jax.Array:
    """Per-token loss [B, L] of `params` on `batch`, held out of any gradient: a frozen
    reference model's forward (the same computation as the trained model's)."""
    return jax.lax.stop_gradient(_token_losses(params, batch, model)[1])


def train_step(state: TrainState, batch: Batch, reference_params=None, *, model: nn.Module,
               tx: optax.GradientTransformation, weighter: Weighter, num_domains: int,
               microbatches: int = 1, reference_model: nn.Module | None = None
               ) -> tuple[TrainState, dict]:
    """One optimizer step on the global batch; returns the new state and device metrics.

    With a `reference_model` (its params an argument, never a constant), the reference's
    per-token losses on the same batch reach the weighter and the metrics carry each domain's
    summed clipped excess max(loss - reference loss, 0) over its loss tokens."""
    k = microbatches
    domain_B = batch["domain_id"]
    mask_BxL = batch["loss_mask"].astype(jnp.float32)
    valid_B = mask_BxL.sum(-1) > 0
    ref_BxL = None
    if reference_model is not None:  # forward only, micro-batch by micro-batch like training
        ref_BxL = token_losses(reference_params, batch, reference_model) if k == 1 else \
            _unmicrobatched(jax.lax.map(lambda mb: token_losses(reference_params, mb,
                                                                reference_model),
                                        _microbatched(batch, k)))
    inputs = StepInputs(domain_B=domain_B, valid_B=valid_B, loss_mask_BxL=mask_BxL,
                        step=state.step, rng=jax.random.fold_in(state.rng, state.step),
                        reference_token_loss_BxL=ref_BxL)

    def weigh(token_loss_BxL):
        """The weighter on the detached losses of the global batch (None: it reads none)."""
        if token_loss_BxL is not None:
            token_loss_BxL = jax.lax.stop_gradient(token_loss_BxL)
            example_loss_B = _per_example(token_loss_BxL, mask_BxL)[0]
            return weighter(state.weighter_state, inputs.replace(
                token_loss_BxL=token_loss_BxL, example_loss_B=example_loss_B))
        return weighter(state.weighter_state, inputs)

    def weighted_loss(params, mb, w, ref_mb):
        """sum w * loss on micro-batch `mb`: w [b] weighs each row's mean token loss, w [b, L]
        each token's loss. w is None in a single pass: it is computed here, on these losses.
        `ref_mb` is the reference's token losses on `mb` (None: no reference)."""
        _, token_loss_BxL, mb_mask_BxL = _token_losses(params, mb, model)
        losses_B, loss_sum_B, tokens_B = _per_example(token_loss_BxL, mb_mask_BxL)
        excess_B = None if ref_mb is None else (jnp.maximum(
            jax.lax.stop_gradient(token_loss_BxL) - ref_mb, 0.0) * mb_mask_BxL).sum(-1)
        wstate = wmetrics = None
        if w is None:
            w, wstate, wmetrics = weigh(token_loss_BxL if weighter.needs_losses else None)
        w = jax.lax.stop_gradient(w)
        if w.ndim == 1:
            loss, w_B = (w * losses_B).sum(), w
        else:  # per-token weights; padding never trains whatever the weighter returned
            w = w * mb_mask_BxL
            loss, w_B = (w * token_loss_BxL).sum(), w.sum(-1)
        return loss, (losses_B, loss_sum_B, tokens_B, w_B, excess_B, wstate, wmetrics)

    grad_fn = jax.value_and_grad(weighted_loss, has_aux=True)
    if k == 1:
        (loss, (losses_B, loss_sum_B, tokens_B, w_B, excess_B, wstate, wmetrics)), grads = \
            grad_fn(state.params, batch, None, ref_BxL)
    else:
        mbs = _microbatched(batch, k)
        if weighter.needs_losses:  # weights need every micro-batch's losses first
            pre = jax.lax.map(lambda mb: _token_losses(state.params, mb, model)[1], mbs)
            w, wstate, wmetrics = weigh(_unmicrobatched(pre))
        else:
            w, wstate, wmetrics = weigh(None)
        w_mbs = _microbatched({"w": w}, k)["w"]
        ref_mbs = None if ref_BxL is None else _microbatched({"r": ref_BxL}, k)["r"]

        def accumulate(grads, xs):
            mb, w, ref_mb = xs
            (loss, aux), g = grad_fn(state.params, mb, w, ref_mb)
            return jax.tree.map(jnp.add, grads, g), (loss,) + aux[:5]

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (mb_loss, *per_example) = jax.lax.scan(accumulate, zeros, (mbs, w_mbs, ref_mbs))
        loss = mb_loss.sum()
        losses_B, loss_sum_B, tokens_B, w_B, excess_B = (
            None if x is None else _unmicrobatched(x) for x in per_example)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if isinstance(opt_state, optax.ApplyIfFiniteState):  # a skipped step moves no state:
        wstate = jax.tree.map(  # the weighter's (e.g. DoReMi's alpha) stays with the params
            lambda new, old: jnp.where(opt_state.last_finite, new, old), wstate,
            state.weighter_state)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              weighter_state=wstate)
    metrics = {
        "loss": loss,  # the weighted objective
        "token_loss": loss_sum_B.sum() / jnp.maximum(tokens_B.sum(), 1.0),
        "grad_norm": optax.global_norm(grads),
        "tokens": tokens_B.sum(),
        "losses": losses_B,
        "weights": w_B,  # each row's total weight
        "domain_id": domain_B,
        "domain_loss_sum": _domain_sums(loss_sum_B, domain_B, num_domains),
        "domain_tokens": _domain_sums(tokens_B, domain_B, num_domains),
        "domain_weight_sum": _domain_sums(w_B, domain_B, num_domains),
        "domain_rows": _domain_sums(valid_B.astype(jnp.float32), domain_B, num_domains),
        **{f"weighter/{n}": v for n, v in wmetrics.items()},
    }
    if excess_B is not None:
        metrics["domain_excess_sum"] = _domain_sums(excess_B, domain_B, num_domains)
        ref_sum_B = (ref_BxL * mask_BxL).sum(-1)
        metrics["reference_token_loss"] = ref_sum_B.sum() / jnp.maximum(tokens_B.sum(), 1.0)
    if isinstance(opt_state, optax.ApplyIfFiniteState):
        metrics["nonfinite_skipped"] = opt_state.total_notfinite
    return new_state, metrics


def eval_step(params, batch: Batch, *, model: nn.Module, num_domains: int) -> dict:
    """Per-domain sums over one batch (add them up over batches): token loss, loss tokens, rows
    with any loss token, and exact-match rows; and each row's loss sum and tokens (for the
    eval's standard error). A row is an exact match when the argmax at every loss token is its
    target, which is when greedy decoding reproduces the target continuation (for cloze or
    question-answer rows whose loss mask covers only the answer)."""
    logits_BxLxV, token_loss_BxL, mask_BxL = _token_losses(params, batch, model)
    wrong_BxL = (logits_BxLxV.argmax(-1) != batch["targets"]) & (mask_BxL > 0)
    rows_B = (mask_BxL.sum(-1) > 0).astype(jnp.float32)
    domain_B = batch["domain_id"]
    loss_sum_B, tokens_B = (token_loss_BxL * mask_BxL).sum(-1), mask_BxL.sum(-1)
    return {"domain_loss_sum": _domain_sums(loss_sum_B, domain_B, num_domains),
            "domain_tokens": _domain_sums(tokens_B, domain_B, num_domains),
            "domain_rows": _domain_sums(rows_B, domain_B, num_domains),
            "domain_exact": _domain_sums(rows_B * (~wrong_BxL.any(-1)), domain_B, num_domains),
            "row_loss_sum": loss_sum_B, "row_tokens": tokens_B}


def make_model(cfg: ml_collections.ConfigDict) -> model_lib.Decoder:
    return model_lib.Decoder(model_lib.ModelConfig.from_config(cfg.model))


@dataclasses.dataclass
class Runtime:
    """What one config compiles to on one mesh; built once per run."""
    cfg: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    rules: tuple
    model: model_lib.Decoder
    tx: optax.GradientTransformation
    abstract: Any  # the TrainState as ShapeDtypeStructs with shardings: a restore target
    init_fn: Any  # rng -> sharded initial TrainState
    batch_shard: jax.sharding.NamedSharding
    step_fn: Any  # (state, global batch) -> (state, metrics); donates the state
    eval_fn: Any  # (params, global batch) -> per-domain loss sums and token counts
    # name -> frozen reference model (lm.reference.Reference) on this mesh; the step's own, if
    # it runs one, is bound into step_fn
    references: dict = dataclasses.field(default_factory=dict)

    def context(self) -> contextlib.ExitStack:
        """The mesh and logical-axis rules under which the steps trace."""
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(nn.logical_axis_rules(self.rules))
        return stack

    def global_batch(self, local_batch: dict) -> Batch:
        return sharding.to_global(local_batch, self.batch_shard, self.cfg.train.batch_size)


def build_runtime(cfg: ml_collections.ConfigDict, weighter: Weighter, num_domains: int,
                  devices=None, tx: optax.GradientTransformation | None = None,
                  num_eval_domains: int | None = None, references: dict | None = None,
                  step_reference: str | None = None) -> Runtime:
    """Mesh, model, optimizer (AdamW from the config unless `tx` is given), state layout and
    the jitted steps with explicit shardings. `references` (name -> lm.reference.ReferenceSpec)
    are loaded on the mesh; the step runs the forward of the one named `step_reference`."""
    mesh = sharding.make_mesh(cfg.mesh, devices)
    rules = sharding.rules(cfg.mesh)
    model = make_model(cfg)
    tx = tx or make_optimizer(cfg.train)
    abstract, init_fn = state_layout(model, tx, weighter, cfg.data.seq_len, mesh, rules)
    state_shardings = jax.tree.map(lambda a: a.sharding, abstract)
    batch_shard = sharding.batch_sharding(mesh, rules)
    loaded = {name: reference_lib.load(spec, mesh, rules, cfg.data.seq_len)
              for name, spec in (references or {}).items()}
    ref = loaded[step_reference] if step_reference else None
    # Metrics are small; every process gets all of them (per-example ones too) to read.
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    jitted = jax.jit(
        functools.partial(train_step, model=model, tx=tx, weighter=weighter,
                          num_domains=num_domains, microbatches=cfg.train.microbatches,
                          reference_model=ref.model if ref else None),
        in_shardings=(state_shardings, batch_shard, ref.shardings if ref else None),
        out_shardings=(state_shardings, replicated), donate_argnums=0)
    ref_params = ref.params if ref else None
    step_fn = functools.partial(_bound_step, jitted, ref_params)
    eval_fn = jax.jit(functools.partial(eval_step, model=model,
                                        num_domains=num_eval_domains or num_domains),
                      in_shardings=(state_shardings.params, batch_shard),
                      out_shardings=replicated)
    return Runtime(cfg, mesh, rules, model, tx, abstract, init_fn, batch_shard, step_fn, eval_fn,
                   loaded)


def _bound_step(jitted, reference_params, state, batch):
    """The jitted step with the reference's params passed as an argument."""
    return jitted(state, batch, reference_params)
