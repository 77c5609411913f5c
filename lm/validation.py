"""Checks a config before any work is done.

Every problem found is reported, one line each, naming the field, the value and the fix, in
one ValueError: a researcher fixes a config once, not once per run. Checks of a method's own
fields live with the method (its module's `problems`; the builder lists them in the same
error as these); these are the ones the core owns.
"""

import math
import numbers

import ml_collections

from lm import model as model_lib
from lm import sharding


def problems(cfg: ml_collections.ConfigDict, num_devices: int, process_count: int = 1) -> list:
    """Every problem of the core config fields, one line each."""
    problems = []

    def need(ok, message):
        if not ok:
            problems.append(message)
        return ok

    def number(section, name, low, high=math.inf, *, integer=False, low_open=False):
        value = cfg[section][name]
        kind = numbers.Integral if integer else numbers.Real
        field = f"config.{section}.{name}"
        if not need(isinstance(value, kind) and not isinstance(value, bool),
                    f"{field} must be {'an integer' if integer else 'a number'}, got "
                    f"{value!r} ({type(value).__name__})"):
            return False
        inside = (value > low if low_open else value >= low) and value <= high
        bounds = f"{'(' if low_open else '['}{low}, {high}{']' if high != math.inf else ')'}"
        return need(inside and math.isfinite(value), f"{field} must be in {bounds}, got {value}")

    def choice(section, name, allowed):
        value = cfg[section][name]
        return need(value in allowed, f"config.{section}.{name}={value!r} is unknown; choose one "
                    f"of {sorted(allowed)}")

    m, t, mesh = cfg.model, cfg.train, cfg.mesh
    need(isinstance(cfg.seed, int) and cfg.seed >= 0, f"config.seed must be an integer >= 0, got "
         f"{cfg.seed!r}")
    model_ok = all([number("model", n, 0, integer=True, low_open=True)
                    for n in ("vocab_size", "d_model", "num_heads", "num_layers", "mlp_dim",
                              "max_len")])
    number("model", "rope_base", 1, low_open=True)
    if model_ok and need(m.d_model % m.num_heads == 0,
                         f"config.model.d_model={m.d_model} must be divisible by "
                         f"config.model.num_heads={m.num_heads}: change either"):
        need((m.d_model // m.num_heads) % 2 == 0,
             f"config.model head size d_model/num_heads={m.d_model // m.num_heads} must be even "
             "for rotary embeddings: change d_model or num_heads")
    choice("model", "compute_dtype", model_lib._DTYPES)
    choice("model", "attention", model_lib._ATTENTION)
    choice("model", "remat", ("none", *model_lib._REMAT_POLICIES))

    if number("data", "seq_len", 0, integer=True, low_open=True) and model_ok:
        need(cfg.data.seq_len <= m.max_len,
             f"config.data.seq_len={cfg.data.seq_len} is longer than config.model.max_len="
             f"{m.max_len}: raise model.max_len or shorten the sequences")
    number("data", "eval_rows", 0, integer=True, low_open=True)
    number("data", "shuffle_buffer_size", 1, integer=True)
    number("data", "prefetch", 1, 64, integer=True)
    number("data", "num_domains", 1, integer=True)

    number("train", "lr", 0, low_open=True)
    number("train", "steps", 0, integer=True, low_open=True)
    number("train", "run_steps", 0, integer=True)
    number("train", "warmup_steps", 0, integer=True)
    choice("train", "schedule", ("cosine", "wsd"))
    number("train", "decay_fraction", 0, 1)
    number("train", "min_lr_ratio", 0, 1)
    for name in ("b1", "b2"):
        if number("train", name, 0, 1):
            need(t[name] < 1, f"config.train.{name} must be < 1, got {t[name]}")
    number("train", "weight_decay", 0)
    number("train", "grad_clip", 0)
    for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
        number("train", name, 0, integer=True, low_open=True)
    number("train", "eval_every", 0, integer=True)
    number("train", "peak_flops", 0)
    choice("train", "on_nonfinite", ("stop", "skip"))
    number("train", "max_nonfinite_skips", 0, integer=True)

    if not need(len(mesh.shape) == len(mesh.axes),
                f"config.mesh.shape {tuple(mesh.shape)} needs one size per axis of "
                f"config.mesh.axes {tuple(mesh.axes)}"):
        return problems
    rules_ok = True
    for logical, target in mesh.rules:
        targets = target if isinstance(target, (list, tuple)) else (target,)
        for axis in targets:
            rules_ok &= need(axis is None or axis in mesh.axes,
                             f"config.mesh.rules maps {logical!r} to mesh axis {axis!r}, which is "
                             f"not in config.mesh.axes {tuple(mesh.axes)}: fix the rule or add "
                             "the axis")
    try:
        shape = dict(zip(mesh.axes, sharding.resolve_mesh_shape(mesh.shape, num_devices)))
    except ValueError as e:
        problems.append(str(e))
        return problems
    batch_ok = number("train", "batch_size", 0, integer=True, low_open=True)
    micro_ok = number("train", "microbatches", 0, integer=True, low_open=True)
    if not (batch_ok and micro_ok and rules_ok):
        return problems
    if not need(t.batch_size % t.microbatches == 0,
                f"config.train.batch_size={t.batch_size} must be divisible by "
                f"config.train.microbatches={t.microbatches}"):
        return problems
    (batch_axes,) = [t_ for l_, t_ in mesh.rules if l_ == "batch"] or [None]
    batch_axes = () if batch_axes is None else (
        (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes))
    dp = math.prod(shape[a] for a in batch_axes)
    micro = t.batch_size // t.microbatches
    need(micro % dp == 0,
         f"config.train.batch_size={t.batch_size} (micro-batch {micro} rows) is not divisible "
         f"by the data-parallel size {dp} (mesh axes {batch_axes} of {shape}): make each "
         "micro-batch a multiple of it")
    need(t.batch_size % process_count == 0,
         f"config.train.batch_size={t.batch_size} is not divisible by the {process_count} "
         "processes: each process feeds an equal share of rows")
    h = cfg.eval.harness
    need(not h.tasks.strip() or h.batch_size % math.lcm(dp, process_count) == 0,
         f"config.eval.harness.batch_size={h.batch_size} is not divisible by the data-parallel "
         f"size {dp} and the {process_count} processes: make it a multiple of "
         f"{math.lcm(dp, process_count)}")
    return problems


def validate_config(cfg: ml_collections.ConfigDict, num_devices: int,
                    process_count: int = 1) -> None:
    """Raises one ValueError listing every problem of the core config fields."""
    found = problems(cfg, num_devices, process_count)
    if found:
        raise ValueError(f"{len(found)} problem(s) in the config:\n  " + "\n  ".join(found))
