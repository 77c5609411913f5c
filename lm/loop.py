"""The host loop: restore or init, then train, evaluate, log and checkpoint.

It dispatches step n before reading step n-1's metrics, so the host never waits on the device
inside the loop. The input pipeline and the instance weighter come from the caller (main.py):
this module names no concrete data source or method.
"""

import time
from typing import Protocol

import jax
import ml_collections
import numpy as np

from lm import checkpoint as ckpt_lib
from lm import flops as flops_lib
from lm import metrics as metrics_lib
from lm import plots
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
    chooses each later stage's rows before its first step. Returns the last eval metrics."""
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

    with rt.context():
        checkpointer = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir),
                                             keep=cfg.train.keep_checkpoints)
        start = checkpointer.latest_step()
        if start is not None:
            state, data_state, host_state = checkpointer.restore(start, rt.abstract)
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
        end = cfg.train.steps if cfg.train.run_steps == 0 else min(
            cfg.train.steps, start + cfg.train.run_steps)
        writer = metrics_lib.MetricsWriter(workdir, start_step=start, total_steps=cfg.train.steps,
                                           enabled=is_main, progress_bar=cfg.train.progress_bar)
        if start == 0 and (weights := mixture.initial_weights()) is not None:
            train_iter.set_weights(np.asarray(weights, np.float64))
            writer.write(0, {f"mixture/{n}/weight": w for n, w in zip(names, weights)})

        mcfg = ModelConfig.from_config(cfg.model)
        flops_tok = flops_lib.flops_per_token(mcfg, cfg.data.seq_len)
        peak = cfg.train.peak_flops or flops_lib.measure_matmul_flops()
        writer.note(f"params {flops_lib.param_count(state.params):,}  FLOPs/token {flops_tok:.3g}  "
                    f"peak {peak / 1e9:.1f} GFLOP/s/device x {rt.mesh.size} devices  "
                    f"steps {start}->{end} of {cfg.train.steps}")

        schedule = train_lib.make_schedule(cfg.train)
        last_eval: dict = {}
        pending = None  # (step, device metrics) of the step dispatched last
        window_tokens, window_t0 = 0.0, time.perf_counter()

        def report(step, device_metrics):
            nonlocal window_tokens, window_t0, window_loss, window_tok
            m = jax.device_get(device_metrics)
            if not np.isfinite(m["loss"]):
                raise FloatingPointError(f"non-finite loss {m['loss']} at step {step} (domains in the "
                                         f"batch: {sorted({names[d] for d in m['domain_id']})}); the last "
                                         "checkpoint is kept: lower train.lr or check the data")
            window_tokens += float(m["tokens"])
            window_loss += m["domain_loss_sum"]
            window_tok += m["domain_tokens"]
            if step % cfg.train.log_every and step != end:
                return
            elapsed = time.perf_counter() - window_t0
            tok_s = window_tokens / max(elapsed, 1e-9)
            scalars = {k: m[k] for k in ("loss", "token_loss", "grad_norm")}
            scalars |= {k: v for k, v in m.items() if k.startswith("weighter/")}
            valid_rows = m["domain_rows"].sum()
            for i, n in enumerate(names):
                if m["domain_rows"][i] > 0:  # mean weight relative to uniform (1 = uniform)
                    scalars[f"train/{n}/loss"] = m["domain_loss_sum"][i] / m["domain_tokens"][i]
                    scalars[f"train/{n}/mean_weight"] = (m["domain_weight_sum"][i] * valid_rows /
                                                         m["domain_rows"][i])
            scalars |= {"lr": float(schedule(step - 1)),
                        "tokens_per_s": tok_s, "mfu": tok_s * flops_tok / (peak * rt.mesh.size)}
            writer.write(step, scalars, {"losses": m["losses"], "weights": m["weights"]})
            writer.progress(step, {"loss": scalars["token_loss"], "tok/s": tok_s})
            window_tokens, window_t0 = 0.0, time.perf_counter()

        for step in range(start + 1, end + 1):
            if selector.stage_steps and step > 1 and (step - 1) % selector.stage_steps == 0:
                if stage_metrics := selector.select(step - 1, state, rt):
                    writer.write(step - 1, stage_metrics)
            state, device_metrics = rt.step_fn(state, rt.global_batch(next(train_iter)))
            if pending is not None:
                report(*pending)
            pending = (step, device_metrics)
            eval_now = step == cfg.train.steps or (cfg.train.eval_every and
                                                   step % cfg.train.eval_every == 0)
            save_now = step % cfg.train.checkpoint_every == 0 or step == end
            update_now = mixture.update_every and step % mixture.update_every == 0
            if eval_now or save_now or update_now:
                report(*pending)
                pending = None
            if eval_now:
                last_eval = _eval(rt, state.params, eval_batches)
                eval_loss = {n: last_eval[f"eval/{n}/loss"] for n in names
                             if f"eval/{n}/loss" in last_eval}
                mixture.observe_eval(step, eval_loss)
                writer.write(step, last_eval)
                writer.note(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in last_eval.items()
                                                         if k.endswith("loss")))
            if update_now:
                seen = window_tok > 0
                train_loss = {n: float(l / t) for n, l, t, s in
                              zip(names, window_loss, window_tok, seen) if s}
                weights = mixture.update(step, train_loss, eval_loss)
                if weights is not None:  # applies from the next batch
                    train_iter.set_weights(np.asarray(weights, np.float64))
                    writer.write(step, {f"mixture/{n}/weight": w for n, w in zip(names, weights)})
                window_loss, window_tok = np.zeros(len(names)), np.zeros(len(names))
            if save_now:
                host_state = {"mixture": {"policy": mixture.get_state(),
                                          "window_loss": window_loss.tolist(),
                                          "window_tokens": window_tok.tolist(),
                                          "eval_loss": eval_loss}}
                checkpointer.save(step, state, train_iter.get_state(), host_state)
            if eval_now or save_now or update_now:  # keep their time out of the tokens/s window
                window_tokens, window_t0 = 0.0, time.perf_counter()
        if pending is not None:
            report(*pending)
        checkpointer.close()
        writer.close()
    if is_main:
        plots.plot_run(workdir)
    return last_eval
