"""Frozen reference models: another run's params, loaded once, evaluated forward only.

Methods that compare the trained model with a fixed one (RHO-1's excess loss, DoReMi's
per-token excess, perplexity and cross-entropy-difference filters) need a second model's loss
on the same tokens. A reference is the workdir of any run of this project: its newest params
that restore (`checkpoint.load_params`), laid out on the run's mesh by the logical-axis rules
of the reference's own model (which may be wider or deeper than the trained one). Its params
are an argument of the jitted functions, never a closed-over constant (a constant would be
copied into every compiled program), and are never checkpointed: a resumed run reloads them.
The caller (runs/experiment.py) checks that the reference shares the vocabulary and row length.
"""

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from lm import checkpoint as ckpt_lib
from lm import model as model_lib
from lm import sharding
from lm import workdir as workdir_lib

RECORD_FILE = "reference.json"  # in the trained run's workdir: each reference's path and step


@dataclasses.dataclass(frozen=True)
class ReferenceSpec:
    """Where a reference lives and the shape of its model (from its own config.json)."""
    field: str  # the config field naming it, for messages: "config.reference.workdir"
    workdir: str
    model: ml_collections.ConfigDict  # the reference run's config.model


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference loaded on a mesh."""
    spec: ReferenceSpec
    model: model_lib.Decoder
    params: Any  # sharded over the run's mesh
    shardings: Any  # of `params`
    step: int  # the checkpoint step the params came from


def load(spec: ReferenceSpec, mesh: jax.sharding.Mesh, rules: tuple, seq_len: int) -> Reference:
    """The reference's newest restorable params, sharded on `mesh` by `rules`."""
    model = model_lib.Decoder(model_lib.ModelConfig.from_config(spec.model))
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, tokens, tokens)["params"])
    shardings = sharding.logical_sharding(boxed, mesh, rules)
    sharding.check_divisible(nn.meta.unbox(boxed), shardings)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            nn.meta.unbox(boxed), shardings)
    params, step = ckpt_lib.load_params(spec.workdir, abstract, spec.field)
    return Reference(spec, model, params, shardings, step)


def newest_step(workdir: str) -> int | None:
    """The newest finished checkpoint step under a workdir (or its checkpoints/ folder)."""
    directory = ckpt_lib.checkpoint_dir(workdir)
    directory = directory if os.path.isdir(directory) else workdir
    if not os.path.isdir(directory):
        return None
    steps = [int(n) for n in os.listdir(directory) if n.isdigit()]
    return max(steps) if steps else None


def record(workdir: str, references: dict[str, Reference]) -> None:
    """Writes each reference's path and loaded step to the run's workdir (reference.json), so a
    resume that finds another reference there can say so."""
    workdir_lib.write_atomic(os.path.join(workdir, RECORD_FILE), json.dumps(
        {name: {"workdir": os.path.abspath(r.spec.workdir), "step": r.step}
         for name, r in references.items()}, indent=2))


def recorded(workdir: str) -> dict:
    """What `record` wrote ({} if nothing)."""
    path = os.path.join(workdir, RECORD_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
