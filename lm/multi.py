"""Several small models trained at once in one program: `jax.vmap` over parameters and data.

A proxy of a mixture sweep is so small that one step leaves an accelerator (or the CPU's
threads) mostly idle; stacking P proxies' states and batches along a leading axis and
vmapping `lm.train.train_step` runs P steps as one XLA program. The proxies share the model,
optimizer and seed (so all P start from the same initial state, as P separate runs with that
seed would) and differ only in their data. Built from lm.train's steps, with no checkpoints:
groups are meant to be short, and a killed group restarts from step 0.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm import train as train_lib
from reweight.interface import Weighter


def _stack(batches: Sequence[dict]) -> dict:
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def train_many(cfg: ml_collections.ConfigDict, train_iters: Sequence, eval_batches: dict,
               weighter: Weighter, device=None) -> list[dict]:
    """Trains len(train_iters) models of `cfg` for `cfg.train.steps` steps, model p on
    train_iters[p], on one device; returns each model's final per-domain validation loss
    ({eval domain: loss}) over the shared `eval_batches`."""
    device = device or jax.devices()[0]
    num_domains = len(train_iters[0].domain_names)
    rt = train_lib.build_runtime(cfg, weighter, num_domains, [device],
                                 num_eval_domains=len(eval_batches))
    p = len(train_iters)
    step = jax.jit(jax.vmap(functools.partial(
        train_lib.train_step, model=rt.model, tx=rt.tx, weighter=weighter,
        num_domains=num_domains, microbatches=cfg.train.microbatches)), donate_argnums=0)
    evaluate = jax.jit(jax.vmap(functools.partial(
        train_lib.eval_step, model=rt.model, num_domains=len(eval_batches)),
        in_axes=(0, None)))
    with rt.context():
        state = rt.init_fn(jax.random.key(cfg.seed))
        states = jax.tree.map(lambda x: jnp.broadcast_to(x, (p, *x.shape)), state)
        for _ in range(cfg.train.steps):
            batch = jax.device_put(_stack([next(it) for it in train_iters]), device)
            states, metrics = step(states, batch)
        loss = np.asarray(metrics["loss"])
        if not np.isfinite(loss).all():
            raise FloatingPointError(f"non-finite final loss {loss.tolist()} in a vmapped "
                                     "group: lower train.lr")
        totals = None
        for d, batches in enumerate(eval_batches.values()):
            for local in batches:
                local = {**local, "domain_id": np.full_like(local["domain_id"], d)}
                out = evaluate(states.params, jax.device_put(local, device))
                totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    per_domain = totals["domain_loss_sum"] / np.maximum(totals["domain_tokens"], 1)
    return [{n: float(per_domain[i, d]) for d, n in enumerate(eval_batches)
             if totals["domain_tokens"][i, d] > 0} for i in range(p)]
