"""Hooks: everything the host loop does between steps, on one protocol.

`lm.loop.train` only steps. Evaluation, checkpointing, the speed meter, the non-finite guard,
the host methods (`reweight.interface.HostMethod`, through `MethodHook`) and any hooks the
caller passes are `Hook`s (the models: OLMo-core's trainer callbacks, Levanter's add_hook).
A new hook is a subclass in the caller's code, passed to `train(..., hooks=[...])`; nothing
under lm/ changes for it.

What the loop does with its hooks:
  - on resume, `set_state` of each hook that has an item in the checkpoint, before the input
    pipeline's own state is restored (a host method may move the pipeline);
  - on a fresh run, `act(loop, 0)` of each hook that acts at step 0, before the first batch;
  - `observe(loop, n, metrics)` of every step n, in step order, once step n+1 is dispatched
    (or at a pause), so the host never waits on the device for it;
  - after each step where some hook `acts_at`, it pauses: nothing is drawn ahead, the host
    waits for the step, and each of those hooks `act`s;
  - at the end of an invocation that did not raise (finished or preempted), `finish(loop)`.

Every call goes to the hooks in one order: the non-finite guard, evaluation, the host methods
(as configured), the caller's hooks (as passed), checkpointing, the speed meter. So the guard
stops at a bad step before any other hook sees it; at a shared step the methods and the
caller's hooks see that step's evaluation and act after every built-in hook but checkpointing,
which saves each state after all have acted (a resumed run redoes nothing); and the meter
restarts its window last.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np

from lm import checkpoint as ckpt_lib
from lm import metrics as metrics_lib
from lm import prefetch
from lm import train as train_lib
from reweight.interface import BatchSource, DomainSums, EvalResult, HostContext, HostMethod


@dataclasses.dataclass
class Loop:
    """The running loop as hooks see it; the loop keeps `state`, `end` and `saved_step`
    current."""
    workdir: str
    domain_names: tuple[str, ...]  # training domains, in domain-id order
    writer: metrics_lib.MetricsWriter  # metrics.jsonl, TensorBoard, notes (process 0 writes)
    state: train_lib.TrainState  # the live train state (at `act`, after its step): read only
    end: int  # the last step this invocation trains (earlier once preempted)
    saved_step: int | None  # the step of the newest checkpoint (None: none yet)
    hooks: tuple[Hook, ...] = ()  # every hook of the run, in calling order
    batches: prefetch.Prefetcher | None = None  # the prefetcher, once the first batch is drawn
    runtime: train_lib.Runtime | None = None  # the run's model, mesh and shardings


class Hook:
    """Something the host loop does between steps. Subclass it and override what it needs."""
    name: str = ""  # unique among a run's hooks and host methods

    def acts_at(self, step: int) -> bool:
        """Whether it acts after `step` (0: before the first batch of a fresh run). The loop
        pauses at these steps, so keep them few. Called from the prefetch thread too."""
        return False

    def observe(self, loop: Loop, step: int, metrics: dict) -> None:
        """Step `step`'s metrics, fetched to the host as numpy (see `finite`)."""

    def observe_eval(self, result: EvalResult) -> None:
        """Every evaluation's result, as soon as it is taken."""

    def act(self, loop: Loop, step: int) -> None:
        """At the steps of `acts_at`, with nothing drawn ahead and `loop.state` after `step`."""

    def get_state(self) -> dict | None:
        """JSON state, saved with each checkpoint as item "host_NAME" (None: no state, no
        item)."""
        return None

    def set_state(self, state: dict) -> None:
        """On resume: what `get_state` returned at the checkpoint."""

    def finish(self, loop: Loop) -> None:
        """At the end of an invocation that did not raise."""


def finite(metrics: dict) -> bool:
    """Whether a step's loss and gradient norm are finite; a non-finite step's update was
    skipped (train.on_nonfinite=skip), and its sums are left out of every average."""
    return bool(np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"]))


class NonFiniteGuard(Hook):
    """A non-finite loss or gradient stops the run (train.on_nonfinite=stop), or its skipped
    update is noted and the run stops after more than `max_skips` in a row (skip)."""
    name = "nonfinite"

    def __init__(self, on_nonfinite: str, max_skips: int):
        self.on_nonfinite, self.max_skips, self.in_a_row = on_nonfinite, max_skips, 0

    def observe(self, loop: Loop, step: int, metrics: dict) -> None:
        if finite(metrics):
            self.in_a_row = 0
            return
        m = metrics
        kept = ("The last checkpoint is kept" if loop.saved_step is not None else
                "No checkpoint was written yet")
        what = (f"non-finite {'loss' if not np.isfinite(m['loss']) else 'gradient'} "
                f"(loss {m['loss']}, grad norm {m['grad_norm']}) at step {step}; domains in the "
                f"batch: {sorted({loop.domain_names[d] for d in m['domain_id']})}")
        self.in_a_row += 1
        if self.on_nonfinite == "stop":
            raise FloatingPointError(f"{what}. {kept}: lower train.lr, check the data, or set "
                                     "train.on_nonfinite=skip")
        if self.in_a_row > self.max_skips:
            raise FloatingPointError(f"{what}: {self.in_a_row} updates in a row skipped "
                                     f"(train.max_nonfinite_skips={self.max_skips}). {kept}: "
                                     "lower train.lr or check the data")
        loop.writer.note(f"{what}: update skipped ({self.in_a_row} in a row)")


class Evaluation(Hook):
    """Per-domain validation loss every `every` steps (0: never), at `last_step` and, with
    `at_start`, before the first step; every hook observes each result."""
    name = "eval"

    def __init__(self, evaluate: Callable[[Any, int], EvalResult], *, every: int,
                 at_start: bool, last_step: int):
        self._evaluate = evaluate  # (params, step) -> the result
        self.every, self.at_start, self.last_step = every, at_start, last_step
        self.last: EvalResult | None = None  # the latest result of this invocation

    def acts_at(self, step: int) -> bool:
        if step == 0:
            return self.at_start
        return step == self.last_step or bool(self.every and step % self.every == 0)

    def act(self, loop: Loop, step: int) -> None:
        self.last = self._evaluate(loop.state.params, step)
        for hook in loop.hooks:
            hook.observe_eval(self.last)
        loop.writer.write(step, self.last.scalars())
        loop.writer.note(metrics_lib.eval_table(f"eval at step {step}", self.last.loss,
                                                loop.domain_names))


class MethodHook(Hook):
    """A host method as a hook: it observes the per-domain sums of each finite step and each
    evaluation, acts with the `HostContext` of its step (logging what it returns), keeps its
    state, and writes its outputs on process 0 at the end."""

    def __init__(self, method: HostMethod, context: Callable[[int, Any], HostContext]):
        self.method, self._context = method, context  # context: (step, state) -> HostContext
        self.name = method.name

    def acts_at(self, step: int) -> bool:
        return self.method.acts_at(step)

    def observe(self, loop: Loop, step: int, metrics: dict) -> None:
        if finite(metrics):
            self.method.observe_train(step, DomainSums(
                loss=metrics["domain_loss_sum"], tokens=metrics["domain_tokens"],
                rows=metrics["domain_rows"], weight=metrics["domain_weight_sum"],
                excess=metrics.get("domain_excess_sum")))

    def observe_eval(self, result: EvalResult) -> None:
        self.method.observe_eval(result)

    def act(self, loop: Loop, step: int) -> None:
        if metrics := self.method.act(self._context(step, loop.state)):
            loop.writer.write(step, metrics)

    def get_state(self) -> dict:
        return self.method.get_state()

    def set_state(self, state: dict) -> None:
        self.method.set_state(state)

    def finish(self, loop: Loop) -> None:
        if jax.process_index() == 0:
            self.method.write_outputs(loop.workdir)


class Checkpointing(Hook):
    """Saves the train state, the input pipeline's state and every hook's `get_state` every
    `every` steps and at the invocation's last step."""
    name = "checkpoint"

    def __init__(self, checkpointer: ckpt_lib.Checkpointer, source: BatchSource, every: int,
                 loop: Loop):
        self._checkpointer, self._source, self.every, self._loop = checkpointer, source, every, loop

    def acts_at(self, step: int) -> bool:
        return step > 0 and (step % self.every == 0 or step == self._loop.end)

    def act(self, loop: Loop, step: int) -> None:
        states = {h.name: s for h in loop.hooks if (s := h.get_state()) is not None}
        self._checkpointer.save(step, loop.state, self._source.get_state(), states)
        loop.saved_step = step


class SpeedMeter(Hook):
    """Every `every` steps and at the last: the step's losses, gradient norm, weighter and
    per-domain metrics, the lr, and tokens/s, MFU and the fraction of time spent waiting for
    data over the window since the last line. It acts wherever another hook does, to restart
    the window after the pause: evaluation and checkpoint time stay out of it."""
    name = "speed"

    def __init__(self, loop: Loop, *, every: int, lr: Callable[[int], Any],
                 flops_per_token: float, peak_flops: float):
        self._loop, self.every, self._lr = loop, every, lr
        self._flops_per_token, self._peak_flops = flops_per_token, peak_flops  # peak: all devices
        self._tokens, self._t0 = 0.0, time.perf_counter()

    def acts_at(self, step: int) -> bool:
        return any(h.acts_at(step) for h in self._loop.hooks if h is not self)

    def act(self, loop: Loop, step: int) -> None:
        self._restart(loop)

    def _restart(self, loop: Loop) -> None:
        self._tokens, self._t0 = 0.0, time.perf_counter()
        if loop.batches is not None:
            loop.batches.wait_seconds = 0.0

    def observe(self, loop: Loop, step: int, metrics: dict) -> None:
        m = metrics
        if finite(m):
            self._tokens += float(m["tokens"])
        if step % self.every and step != loop.end:
            return
        elapsed = time.perf_counter() - self._t0
        tok_s = self._tokens / max(elapsed, 1e-9)
        scalars = {k: m[k] for k in ("loss", "token_loss", "grad_norm")
                   + (("reference_token_loss",) if "reference_token_loss" in m else ())}
        scalars |= {k: v for k, v in m.items() if k.startswith("weighter/")}
        if "nonfinite_skipped" in m:
            scalars["nonfinite_skipped"] = m["nonfinite_skipped"]
        valid_rows = m["domain_rows"].sum()
        for i, n in enumerate(loop.domain_names):
            if m["domain_rows"][i] > 0:  # mean weight relative to uniform (1 = uniform)
                scalars[f"train/{n}/loss"] = m["domain_loss_sum"][i] / m["domain_tokens"][i]
                scalars[f"train/{n}/mean_weight"] = (m["domain_weight_sum"][i] * valid_rows /
                                                     m["domain_rows"][i])
                if "domain_excess_sum" in m:  # mean clipped per-token excess over the reference
                    scalars[f"train/{n}/excess"] = (m["domain_excess_sum"][i] /
                                                    m["domain_tokens"][i])
        scalars |= {"lr": float(self._lr(step - 1)), "tokens_per_s": tok_s,
                    "mfu": tok_s * self._flops_per_token / self._peak_flops,
                    "data_wait_fraction": loop.batches.wait_seconds / max(elapsed, 1e-9),
                    "elapsed_s": loop.writer.elapsed()}
        loop.writer.write(step, scalars, {"losses": m["losses"], "weights": m["weights"]})
        loop.writer.progress(step, {"loss": scalars["token_loss"], "tok/s": tok_s})
        self._restart(loop)
