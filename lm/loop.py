"""The host loop: restore or init, then train, evaluate, log and checkpoint.

It dispatches step n before reading step n-1's metrics, so the host never waits on the device
inside the loop. The input pipeline and the instance weighter come from the caller (main.py):
this module names no concrete data source or method.
"""

import time
from typing import Protocol

import jax
import ml_collections
from jax.experimental import multihost_utils
import numpy as np

from lm import checkpoint as ckpt_lib
from lm import flops as flops_lib
from lm import metrics as metrics_lib
from lm import plots, prefetch, preemption
from lm import train as train_lib
from lm.model import ModelConfig
from reweight.instance import InstanceWeighter
from reweight.mixture import Fixed, MixturePolicy
from reweight.selector import NoSelection, StageSelector


class BatchSource(Protocol):
    """What the loop needs from an input pipeline (process-local numpy rows per batch)."""
    domain_names: list

    def __next__(self) -> dict: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...
    def set_weights(self, weights) -> None: ...


def _eval(rt: train_lib.Runtime, params, eval_sets: dict) -> dict:
    """Token-weighted validation loss per eval domain, plus the overall and per-domain means."""
    names = list(eval_sets)
    totals = None
    for d, batches in enumerate(eval_sets.values()):
        for local in batches:
            local = {**local, "domain_id": np.full_like(local["domain_id"], d)}
            out = rt.eval_fn(params, rt.global_batch(local))
            totals = out if totals is None else jax.tree.map(np.add, totals, out)
    totals = jax.device_get(totals)
    per_domain = totals["domain_loss_sum"] / np.maximum(totals["domain_tokens"], 1)
    seen = totals["domain_tokens"] > 0
    accuracy = totals["domain_exact"] / np.maximum(totals["domain_rows"], 1)
    result = {f"eval/{n}/loss": float(l) for n, l, s in zip(names, per_domain, seen) if s}
    result |= {f"eval/{n}/accuracy": float(a) for n, a, s in zip(names, accuracy, seen) if s}
    result["eval/loss"] = float(totals["domain_loss_sum"].sum() / max(totals["domain_tokens"].sum(), 1))
    result["eval/loss_domain_mean"] = float(per_domain[seen].mean())
    return result


def evaluate(cfg: ml_collections.ConfigDict, workdir: str, *, eval_batches: dict,
             weighter: InstanceWeighter, devices=None) -> dict:
    """Per-domain validation loss of the workdir's latest checkpoint (or of cfg.init_from)."""
    rt = train_lib.build_runtime(cfg, weighter, len(eval_batches), devices,
                                 num_eval_domains=len(eval_batches))
    with rt.context():
        params = ckpt_lib.load_params(cfg.init_from or workdir, rt.abstract)
        return _eval(rt, params, eval_batches)


def train(cfg: ml_collections.ConfigDict, workdir: str, *, train_iter: BatchSource,
          eval_batches: dict, weighter: InstanceWeighter, mixture: MixturePolicy | None = None,
          selector: StageSelector | None = None, devices=None) -> dict:
    """Trains to `cfg.train.steps` (or `run_steps` more), resuming from the workdir's latest
    checkpoint. `eval_batches` maps each eval domain to this process's rows of its batches.
    The mixture policy (default: keep the pipeline's weights) is updated every
    `mixture.update_every` steps from the per-domain losses; the stage selector (default: none)
    chooses each later stage's rows before its first step. SIGTERM or SIGINT saves at the next
    step boundary and returns early ({"preempted": step}). Returns the last eval metrics."""
    names = list(train_iter.domain_names)
    mixture = mixture or Fixed()
    selector = selector or NoSelection()
    train_iter = selector.wrap(train_iter)
    # What the policy sees: per-domain train loss sums since its last update, latest eval loss.
    window_loss, window_tok = np.zeros(len(names)), np.zeros(len(names))
    eval_loss: dict = {}
    rt = train_lib.build_runtime(cfg, weighter, len(names), devices,
                                 num_eval_domains=len(eval_batches))
    is_main = jax.process_index() == 0
    t = cfg.train

    with rt.context(), preemption.PreemptionGuard() as guard:
        checkpointer = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir),
                                             keep=t.keep_checkpoints)
        restored = checkpointer.restore_latest(rt.abstract)
        if restored is not None:
            start, state, data_state, host_state = restored
            train_iter.set_state(data_state)
            mixture.set_state(host_state["mixture"]["policy"])
            window_loss = np.asarray(host_state["mixture"]["window_loss"])
            window_tok = np.asarray(host_state["mixture"]["window_tokens"])
            eval_loss = host_state["mixture"]["eval_loss"]
        else:
            start = 0
            state = rt.init_fn(jax.random.key(cfg.seed))
            if cfg.init_from:
                state = state.replace(params=ckpt_lib.load_params(cfg.init_from, rt.abstract))
        end = t.steps if t.run_steps == 0 else min(t.steps, start + t.run_steps)
        writer = metrics_lib.MetricsWriter(workdir, start_step=start, total_steps=t.steps,
                                           enabled=is_main, progress_bar=t.progress_bar)
        if start == 0 and (weights := mixture.initial_weights()) is not None:
            train_iter.set_weights(np.asarray(weights, np.float64))
            writer.write(0, {f"mixture/{n}/weight": w for n, w in zip(names, weights)})

        mcfg = ModelConfig.from_config(cfg.model)
        flops_tok = flops_lib.flops_per_token(mcfg, cfg.data.seq_len)
        peak, peak_source = flops_lib.peak_flops(t.peak_flops)
        writer.note(f"params {flops_lib.param_count(state.params):,}  FLOPs/token {flops_tok:.3g}  "
                    f"peak {peak / 1e12:.3g} TFLOP/s/device ({peak_source}) x {rt.mesh.size} "
                    f"devices  steps {start}->{end} of {t.steps}")

        def stage_boundary(step):
            return bool(selector.stage_steps) and step % selector.stage_steps == 0

        def barrier(step):  # steps after which the loop reads or changes the source
            return (step % t.checkpoint_every == 0 or step == end or stage_boundary(step)
                    or bool(mixture.update_every and step % mixture.update_every == 0))

        schedule = train_lib.make_schedule(t)
        last_eval: dict = {}
        pending = None  # (step, device metrics) of the step dispatched last
        window_tokens, window_t0, nonfinite_run = 0.0, time.perf_counter(), 0
        batches = prefetch.Prefetcher(train_iter, rt.global_batch, depth=cfg.data.prefetch,
                                      first_step=start + 1, last_step=end, barrier=barrier)

        def report(step, device_metrics):
            nonlocal window_tokens, window_t0, window_loss, window_tok, nonfinite_run
            m = jax.device_get(device_metrics)
            if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
                what = (f"non-finite {'loss' if not np.isfinite(m['loss']) else 'gradient'} "
                        f"(loss {m['loss']}, grad norm {m['grad_norm']}) at step {step}; domains "
                        f"in the batch: {sorted({names[d] for d in m['domain_id']})}")
                nonfinite_run += 1
                if t.on_nonfinite == "stop":
                    raise FloatingPointError(f"{what}. The last checkpoint is kept: lower train.lr, "
                                             "check the data, or set train.on_nonfinite=skip")
                if nonfinite_run > t.max_nonfinite_skips:
                    raise FloatingPointError(f"{what}: {nonfinite_run} updates in a row skipped "
                                             f"(train.max_nonfinite_skips={t.max_nonfinite_skips})"
                                             ". The last checkpoint is kept: lower train.lr or "
                                             "check the data")
                writer.note(f"{what}: update skipped ({nonfinite_run} in a row)")
            else:
                nonfinite_run = 0
                window_tokens += float(m["tokens"])
                window_loss += m["domain_loss_sum"]
                window_tok += m["domain_tokens"]
            if step % t.log_every and step != end:
                return
            elapsed = time.perf_counter() - window_t0
            tok_s = window_tokens / max(elapsed, 1e-9)
            scalars = {k: m[k] for k in ("loss", "token_loss", "grad_norm")}
            scalars |= {k: v for k, v in m.items() if k.startswith("weighter/")}
            if "nonfinite_skipped" in m:
                scalars["nonfinite_skipped"] = m["nonfinite_skipped"]
            valid_rows = m["domain_rows"].sum()
            for i, n in enumerate(names):
                if m["domain_rows"][i] > 0:  # mean weight relative to uniform (1 = uniform)
                    scalars[f"train/{n}/loss"] = m["domain_loss_sum"][i] / m["domain_tokens"][i]
                    scalars[f"train/{n}/mean_weight"] = (m["domain_weight_sum"][i] * valid_rows /
                                                         m["domain_rows"][i])
            scalars |= {"lr": float(schedule(step - 1)), "tokens_per_s": tok_s,
                        "mfu": tok_s * flops_tok / (peak * rt.mesh.size),
                        "data_wait_fraction": batches.wait_seconds / max(elapsed, 1e-9)}
            writer.write(step, scalars, {"losses": m["losses"], "weights": m["weights"]})
            writer.progress(step, {"loss": scalars["token_loss"], "tok/s": tok_s})
            window_tokens, window_t0, batches.wait_seconds = 0.0, time.perf_counter(), 0.0

        step = start
        try:
            for step, batch in batches:
                state, device_metrics = rt.step_fn(state, batch)
                if pending is not None:
                    report(*pending)
                pending = (step, device_metrics)
                if step < end and _agreed(guard.requested, step, t.log_every):
                    # Train on what the thread already drew, so the saved data state is exact.
                    end = min(end, step + batches.depth + 1)
                    batches.stop_after(end)
                eval_now = step == t.steps or (t.eval_every and step % t.eval_every == 0)
                update_now = mixture.update_every and step % mixture.update_every == 0
                save_now = step % t.checkpoint_every == 0 or step == end
                if not (eval_now or save_now or update_now or stage_boundary(step)):
                    continue
                report(*pending)
                pending = None
                if eval_now:
                    last_eval = _eval(rt, state.params, eval_batches)
                    eval_loss = {n: last_eval[f"eval/{n}/loss"] for n in names
                                 if f"eval/{n}/loss" in last_eval}
                    mixture.observe_eval(step, eval_loss)
                    writer.write(step, last_eval)
                    writer.note(f"step {step}: " + "  ".join(
                        f"{k} {v:.4f}" for k, v in last_eval.items() if k.endswith("loss")))
                if update_now:
                    train_loss = {n: float(l / k) for n, l, k in zip(names, window_loss, window_tok)
                                  if k > 0}
                    weights = mixture.update(step, train_loss, eval_loss)
                    if weights is not None:  # applies from the next batch
                        train_iter.set_weights(np.asarray(weights, np.float64))
                        writer.write(step, {f"mixture/{n}/weight": w
                                            for n, w in zip(names, weights)})
                    window_loss, window_tok = np.zeros(len(names)), np.zeros(len(names))
                if stage_boundary(step) and step < t.steps:
                    if stage_metrics := selector.select(step, state, rt):
                        writer.write(step, stage_metrics)
                if save_now:
                    host_state = {"mixture": {"policy": mixture.get_state(),
                                              "window_loss": window_loss.tolist(),
                                              "window_tokens": window_tok.tolist(),
                                              "eval_loss": eval_loss}}
                    checkpointer.save(step, state, train_iter.get_state(), host_state)
                batches.release(step)
                # Keep eval and save time out of the tokens/s window.
                window_tokens, window_t0, batches.wait_seconds = 0.0, time.perf_counter(), 0.0
            if pending is not None:
                report(*pending)
            if guard.requested:
                writer.note(f"stopped by {guard.signal_name} after step {step}; its checkpoint "
                            "is saved: run the same command to resume")
                last_eval = {**last_eval, "preempted": step}
        finally:
            batches.close()
            checkpointer.close()
            writer.close()
    if is_main:
        plots.plot_run(workdir)
    return last_eval


def _agreed(requested: bool, step: int, every: int) -> bool:
    """Whether any process was asked to stop. One process reads its flag every step; several
    agree on it every `every` steps (a host collective), so all stop at the same step."""
    if jax.process_count() == 1:
        return requested
    if step % every:
        return False
    return bool(multihost_utils.process_allgather(np.asarray(requested)).any())
