"""Checks a config before any work is done; each error names the field, the value and the fix."""

import math

import ml_collections

from lm import model as model_lib
from lm import sharding


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def validate_config(cfg: ml_collections.ConfigDict, num_devices: int,
                    process_count: int = 1) -> None:
    m, t, mesh = cfg.model, cfg.train, cfg.mesh
    for name in ("vocab_size", "d_model", "num_heads", "num_layers", "mlp_dim", "max_len"):
        _require(m[name] > 0, f"config.model.{name} must be > 0, got {m[name]}")
    _require(m.d_model % m.num_heads == 0,
             f"config.model.d_model={m.d_model} must be divisible by num_heads={m.num_heads}")
    _require((m.d_model // m.num_heads) % 2 == 0,
             f"config.model head size d_model/num_heads={m.d_model // m.num_heads} must be even "
             "for rotary embeddings")
    for name, allowed in (("compute_dtype", model_lib._DTYPES), ("attention", model_lib._ATTENTION),
                          ("remat", ("none", *model_lib._REMAT_POLICIES))):
        _require(m[name] in allowed, f"config.model.{name}={m[name]!r} is unknown; choose one of "
                 f"{sorted(allowed)}")
    _require(0 < cfg.data.seq_len <= m.max_len,
             f"config.data.seq_len={cfg.data.seq_len} must be in (0, config.model.max_len="
             f"{m.max_len}]: raise model.max_len or shorten the sequences")

    _require(t.lr > 0, f"config.train.lr must be > 0, got {t.lr}")
    _require(t.steps > 0, f"config.train.steps must be > 0, got {t.steps}")
    _require(t.run_steps >= 0, f"config.train.run_steps must be >= 0, got {t.run_steps}")
    _require(0 <= t.warmup_steps, f"config.train.warmup_steps must be >= 0, got {t.warmup_steps}")
    _require(t.schedule in ("cosine", "wsd"),
             f"config.train.schedule={t.schedule!r} is unknown; use cosine or wsd")
    _require(0 <= t.decay_fraction <= 1,
             f"config.train.decay_fraction must be in [0, 1], got {t.decay_fraction}")
    _require(0 <= t.min_lr_ratio <= 1,
             f"config.train.min_lr_ratio must be in [0, 1], got {t.min_lr_ratio}")
    _require(0 <= t.b1 < 1 and 0 <= t.b2 < 1,
             f"config.train.b1, b2 must be in [0, 1), got {t.b1}, {t.b2}")
    _require(t.weight_decay >= 0, f"config.train.weight_decay must be >= 0, got {t.weight_decay}")
    _require(t.grad_clip >= 0, f"config.train.grad_clip must be >= 0 (0 = off), got {t.grad_clip}")
    for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
        _require(t[name] > 0, f"config.train.{name} must be > 0, got {t[name]}")
    _require(t.eval_every >= 0, f"config.train.eval_every must be >= 0, got {t.eval_every}")

    _require(len(mesh.shape) == len(mesh.axes),
             f"config.mesh.shape {tuple(mesh.shape)} needs one size per axis of config.mesh.axes "
             f"{tuple(mesh.axes)}")
    for logical, target in mesh.rules:
        targets = target if isinstance(target, (list, tuple)) else (target,)
        for axis in targets:
            _require(axis is None or axis in mesh.axes,
                     f"config.mesh.rules maps {logical!r} to mesh axis {axis!r}, which is not in "
                     f"config.mesh.axes {tuple(mesh.axes)}")
    shape = dict(zip(mesh.axes, sharding.resolve_mesh_shape(mesh.shape, num_devices)))
    (batch_axes,) = [t_ for l_, t_ in mesh.rules if l_ == "batch"] or [None]
    batch_axes = () if batch_axes is None else (
        (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes))
    dp = math.prod(shape[a] for a in batch_axes)

    _require(t.batch_size > 0, f"config.train.batch_size must be > 0, got {t.batch_size}")
    _require(t.microbatches > 0 and t.batch_size % t.microbatches == 0,
             f"config.train.batch_size={t.batch_size} must be divisible by "
             f"config.train.microbatches={t.microbatches}")
    micro = t.batch_size // t.microbatches
    _require(micro % dp == 0,
             f"config.train.batch_size={t.batch_size} (micro-batch {micro} rows) is not divisible "
             f"by the data-parallel size {dp} (mesh axes {batch_axes} of {shape}): make each "
             "micro-batch a multiple of it")
    _require(t.batch_size % process_count == 0,
             f"config.train.batch_size={t.batch_size} is not divisible by the {process_count} "
             "processes")
