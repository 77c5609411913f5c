"""The host loop: restore or init, then step; what happens between steps is hooks (`lm.hooks`):
evaluation, host methods, the caller's hooks, checkpointing, the speed meter, the non-finite
guard.

It dispatches step n before hooks observe step n-1's metrics, so the host never waits on the
device inside the loop, except after the steps where some hook acts (an evaluation, a
checkpoint, a host method's turn): there it pauses, and the prefetcher draws nothing ahead. The
input pipeline, the weighter, the host methods and extra hooks come from the caller; this module
knows only their interfaces (`reweight.interface`, `lm.hooks`).
"""

import contextlib
import math
import dataclasses
from typing import Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from lm import checkpoint as ckpt_lib
from lm import flops as flops_lib
from lm import hooks as hooks_lib
from lm import metrics as metrics_lib
from lm import plots, prefetch, preemption, probe
from lm import reference as reference_lib
from lm import train as train_lib
from lm import workdir as workdir_lib
from lm.model import ModelConfig
from reweight.interface import (BatchSource, EvalResult, HostContext, HostMethod, Uniform,
                                Weighter)


STEP_REFERENCE = "workdir"  # the reference the step runs: config.reference.workdir


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int  # the last step trained, or the restored one if nothing was left to train
    eval: EvalResult | None  # the last evaluation of this invocation (None: none ran)
    preempted: bool  # stopped early by SIGTERM / SIGINT, after saving at `step`


def _eval(rt: train_lib.Runtime, params, eval_sets: dict, step: int,
          eval_bytes: dict | None = None) -> EvalResult:
    """Token-weighted validation loss, its standard error over rows, and the exact-match rate
    per eval domain; bits per byte where `eval_bytes` has the domain's scored text bytes."""
    names = list(eval_sets)
    totals, rows = None, {n: ([], []) for n in names}
    for d, (name, batches) in enumerate(eval_sets.items()):
        for local in batches:
            local = {**local, "domain_id": np.full_like(local["domain_id"], d)}
            out = jax.device_get(rt.eval_fn(params, rt.global_batch(local)))
            rows[name][0].append(out.pop("row_loss_sum"))
            rows[name][1].append(out.pop("row_tokens"))
            totals = out if totals is None else jax.tree.map(np.add, totals, out)
    per_domain = totals["domain_loss_sum"] / np.maximum(totals["domain_tokens"], 1)
    accuracy = totals["domain_exact"] / np.maximum(totals["domain_rows"], 1)
    seen = totals["domain_tokens"] > 0
    return EvalResult(
        step=step, loss={n: float(l) for n, l, s in zip(names, per_domain, seen) if s},
        accuracy={n: float(a) for n, a, s in zip(names, accuracy, seen) if s},
        overall_loss=float(totals["domain_loss_sum"].sum() / max(totals["domain_tokens"].sum(), 1)),
        loss_se={n: _ratio_se(*map(np.concatenate, rows[n])) for n, s in zip(names, seen) if s},
        bits_per_byte={n: float(totals["domain_loss_sum"][d] / (eval_bytes[n] * math.log(2)))
                       for d, n in enumerate(names) if seen[d] and (eval_bytes or {}).get(n)})


def _ratio_se(loss_sum_R: np.ndarray, tokens_R: np.ndarray) -> float:
    """Standard error over rows of the token-weighted mean loss sum(s) / sum(n) (the ratio
    estimator's linearisation; rows without loss tokens drop out)."""
    s, n = loss_sum_R[tokens_R > 0].astype(np.float64), tokens_R[tokens_R > 0].astype(np.float64)
    if len(s) < 2:
        return float("nan")
    mean = s.sum() / n.sum()
    return float(np.sqrt(len(s) / (len(s) - 1) * ((s - mean * n) ** 2).sum()) / n.sum())


def evaluate(cfg: ml_collections.ConfigDict, checkpoint: str, *, eval_sets: dict,
             devices=None, field: str = "the checkpoint",
             eval_bytes: dict | None = None) -> EvalResult:
    """Per-domain validation loss of the params of `checkpoint`'s latest step that restores (a
    workdir or its checkpoints/ folder); only the model config has to match the run that wrote
    it. `field` is what error messages call `checkpoint`."""
    # The runtime's step needs a weighter; evaluation never runs it.
    rt = train_lib.build_runtime(cfg, Uniform(), len(eval_sets), devices,
                                 num_eval_domains=len(eval_sets))
    with rt.context():
        params, step = ckpt_lib.load_params(checkpoint, rt.abstract.params, field)
        return _eval(rt, params, eval_sets, step, eval_bytes)


def _context_maker(rt: train_lib.Runtime, source: BatchSource, names: tuple, flops_tok: float):
    """step, state -> the HostContext of a method acting after `step`."""
    replicated = jax.sharding.NamedSharding(rt.mesh, jax.sharding.PartitionSpec())
    probes = probe.make_probes(rt.model, rt.tx, replicated,
                               jax.tree.map(lambda a: a.sharding, rt.abstract.params))
    reference_row_loss = probe.make_reference_row_loss(rt.references, replicated)
    count = jax.process_count()

    def to_global(rows: dict) -> dict:
        return {k: jax.make_array_from_process_local_data(
            rt.batch_shard, np.asarray(v), (len(v) * count,) + np.shape(v)[1:])
            for k, v in rows.items()}

    def replicate(rows: dict) -> dict:
        return {k: jax.make_array_from_process_local_data(replicated, np.asarray(v))
                for k, v in rows.items()}

    def all_gather(x: np.ndarray) -> np.ndarray:
        return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))

    def make(step: int, state: train_lib.TrainState) -> HostContext:
        return HostContext(
            step=step, domain_names=names, params=state.params, opt_state=state.opt_state,
            set_weights=lambda w: source.set_weights(np.asarray(w, np.float64)),
            to_global=to_global, replicated=replicate, all_gather=all_gather,
            reference_set=lambda rows: replicate(probe.reference_positions(rows)),
            reference_row_loss=reference_row_loss, train_flops_per_token=flops_tok,
            process_index=jax.process_index(), process_count=count, **probes)
    return make


def train(cfg: ml_collections.ConfigDict, workdir: str, *, source: BatchSource,
          eval_sets: dict, weighter: Weighter, methods: Sequence[HostMethod] = (),
          hooks: Sequence[hooks_lib.Hook] = (), devices=None,
          references: dict | None = None, eval_bytes: dict | None = None) -> TrainResult:
    """Trains to `cfg.train.steps` (or `run_steps` more), resuming from the workdir's latest
    checkpoint. `eval_sets` maps each eval domain to this process's rows of its batches.
    Between steps it runs hooks (`lm.hooks`): evaluation, host methods (which act at the steps
    they name, see `reweight.interface.HostMethod`), the caller's `hooks`, checkpointing and
    the speed meter. SIGTERM or SIGINT saves at the next step boundary and returns early
    (preempted). `references` (name -> lm.reference.ReferenceSpec) are frozen models loaded for
    the run (never checkpointed); the step runs the one named "workdir" when the weighter or a
    host method `needs_reference`. `eval_bytes` (eval domain -> UTF-8 bytes of the text its eval
    rows score) adds each text domain's bits per byte to the evaluations."""
    names = tuple(source.domain_names)
    methods = list(methods)
    named = [m.name for m in methods] + [h.name for h in hooks]
    if len(set(named)) != len(named):
        raise ValueError("host methods and hooks need distinct names (each one's state is "
                         f"checkpoint item host_NAME), got {named}")
    for m in methods:
        source = m.wrap(source)
    references = dict(references or {})
    in_step = getattr(weighter, "needs_reference", False) or any(m.needs_reference
                                                                  for m in methods)
    if in_step and STEP_REFERENCE not in references:
        raise ValueError("the weighter or a host method needs a reference model in the step: "
                         f"set config.reference.{STEP_REFERENCE} to a reference run's workdir")
    rt = train_lib.build_runtime(cfg, weighter, len(names), devices,
                                 num_eval_domains=len(eval_sets), references=references,
                                 step_reference=STEP_REFERENCE if in_step else None)
    flops_tok = flops_lib.flops_per_token(ModelConfig.from_config(cfg.model), cfg.data.seq_len)
    context = _context_maker(rt, source, names, flops_tok)
    stateful = [*(hooks_lib.MethodHook(m, context) for m in methods), *hooks]  # may hold state
    is_main = jax.process_index() == 0
    t = cfg.train

    def apply(state, data_state, host_states):
        for h in stateful:  # before the pipeline: a method may move it (see HostMethod)
            if h.name in host_states:
                h.set_state(host_states[h.name])
        source.set_state(data_state)

    with rt.context(), preemption.PreemptionGuard() as guard, _hold(workdir):
        checkpointer = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir),
                                             keep=t.keep_checkpoints)
        restored = checkpointer.restore_latest(rt.abstract, apply=apply)
        if restored is not None:
            start, state, _, _ = restored
        else:
            start = 0
            state = rt.init_fn(jax.random.key(cfg.seed))
            if cfg.init_from:
                state = state.replace(params=ckpt_lib.load_params(cfg.init_from,
                                                                   rt.abstract.params)[0])
        if is_main:  # only now: a config whose checkpoint does not restore is not recorded
            workdir_lib.record(cfg, workdir)
            if rt.references:
                reference_lib.record(workdir, rt.references)
        end = t.steps if t.run_steps == 0 else min(t.steps, start + t.run_steps)
        writer = metrics_lib.MetricsWriter(workdir, start_step=start, total_steps=t.steps,
                                           enabled=is_main, progress_bar=t.progress_bar)
        loop = hooks_lib.Loop(workdir, names, writer, state, end,
                              saved_step=start if restored is not None else None, runtime=rt)
        peak, peak_source = flops_lib.peak_flops(t.peak_flops)
        evaluation = hooks_lib.Evaluation(lambda params, step: _eval(rt, params, eval_sets, step,
                                                                       eval_bytes),
                                          every=t.eval_every, at_start=t.eval_at_start,
                                          last_step=t.steps)
        loop.hooks = (hooks_lib.NonFiniteGuard(t.on_nonfinite, t.max_nonfinite_skips),
                      evaluation, *stateful,
                      hooks_lib.Checkpointing(checkpointer, source, t.checkpoint_every, loop),
                      hooks_lib.SpeedMeter(loop, every=t.log_every,
                                           lr=train_lib.make_schedule(t),
                                           flops_per_token=flops_tok,
                                           peak_flops=peak * rt.mesh.size))
        if start == 0:
            _act(loop, 0)
        writer.note(f"params {flops_lib.param_count(state.params):,}  FLOPs/token {flops_tok:.3g}  "
                    f"peak {peak / 1e12:.3g} TFLOP/s/device ({peak_source}) x {rt.mesh.size} "
                    f"devices  steps {start}->{end} of {t.steps}")

        def pauses_at(step):  # the prefetcher draws nothing past these steps until released
            return any(h.acts_at(step) for h in loop.hooks)

        batches = loop.batches = prefetch.Prefetcher(
            source, rt.global_batch, depth=cfg.data.prefetch, first_step=start + 1,
            last_step=end, barrier=pauses_at)
        pending = None  # (step, device metrics) of the step dispatched last
        step = start
        try:
            for step, batch in batches:
                loop.state, device_metrics = rt.step_fn(loop.state, batch)
                if pending is not None:
                    _observe(loop, *pending)
                pending = (step, device_metrics)
                if step < loop.end and _agreed(guard.requested, step, t.log_every):
                    # Train on what the thread already drew, so the saved data state is exact.
                    loop.end = min(loop.end, step + batches.depth + 1)
                    batches.stop_after(loop.end)
                if pauses_at(step):
                    _observe(loop, *pending)
                    pending = None
                    _act(loop, step)
                    batches.release(step)
            if pending is not None:
                _observe(loop, *pending)
            for h in loop.hooks:
                h.finish(loop)
            if guard.requested:
                writer.note(f"stopped by {guard.signal_name} after step {step}; its checkpoint "
                            "is saved: run the same command to resume")
        finally:
            batches.close()
            checkpointer.close()
            writer.close()
    if is_main:
        plots.plot_run(workdir)
    return TrainResult(step=step, eval=evaluation.last, preempted=guard.requested)


def _observe(loop: hooks_lib.Loop, step: int, device_metrics: dict) -> None:
    """Every hook observes `step`'s metrics (this waits for that step on the device)."""
    metrics = jax.device_get(device_metrics)
    for h in loop.hooks:
        h.observe(loop, step, metrics)


def _act(loop: hooks_lib.Loop, step: int) -> None:
    """The hooks that act at `step` act, in the loop's order."""
    for h in loop.hooks:
        if h.acts_at(step):
            h.act(loop, step)


@contextlib.contextmanager
def _hold(workdir: str):
    """The workdir's lock, taken by process 0; if it cannot be, every process fails alike."""
    with contextlib.ExitStack() as stack:
        error = None
        if jax.process_index() == 0:
            try:
                stack.enter_context(workdir_lib.lock(workdir))
            except RuntimeError as e:
                error = e
        if jax.process_count() > 1:
            failed = bool(multihost_utils.process_allgather(np.asarray(error is not None)).any())
            if failed and error is None:
                error = RuntimeError(f"process 0 could not take the lock of --workdir={workdir}")
        if error is not None:
            raise error
        yield


def _agreed(requested: bool, step: int, every: int) -> bool:
    """Whether any process was asked to stop. One process reads its flag every step; several
    agree on it every `every` steps (a host collective), so all stop at the same step."""
    if jax.process_count() == 1:
        return requested
    if step % every:
        return False
    return bool(multihost_utils.process_allgather(np.asarray(requested)).any())
