"""Selection by frozen reference models: keep the candidate rows they score best.

Two scorers, one path (the stage-selector interface of `reweight.staged`, as MATES):
- perplexity filter (CCNet-style, Wenzek et al. 2020): score = -l_ref(x), the row's mean token
  loss under config.reference.workdir; the lowest-loss rows are kept;
- cross-entropy difference (Moore & Lewis 2010): score = l_general(x) - l_target(x), from a
  model trained on the general mixture (config.reference.general) and one trained on the
  target domain (config.reference.target); the rows the target model likes most relative to
  the general one are kept.
At step 0 (and, with `stage_steps` > 0, before every later stage) a pool of stage rows /
`selection_ratio` is drawn from the mixture, every row scored with
`HostContext.reference_row_loss` (a forward of each reference), and the top rows kept, ties
broken by pool order; the stage trains on them, each once, in pool order. With several
processes each keeps the top 1 / P of its own rows (as MATES does), so every process feeds its
share of each batch; with one process this is exactly the method.

Accounting: each pool token costs one reference forward (1/3 of a training step's FLOPs at the
reference's size, estimated with the trained model's FLOPs per token), logged as
ref_select/overhead_flops.
"""

from __future__ import annotations

import math
import time

import ml_collections
import numpy as np

from reweight.interface import BatchSource, HostContext, HostMethod, MethodEnv
from reweight.staged import StagedSource

MODES = {"perplexity": ("workdir",), "xent_diff": ("general", "target")}  # references read


class RefSelect(HostMethod):
    """Draw a pool, score it with the reference models, keep the best rows (module docstring)."""
    name = "ref_select"

    def __init__(self, mode: str, selection_ratio: float, stage_steps: int, total_steps: int,
                 batch_size: int, score_batch: int):
        self.mode, self.ratio = mode, selection_ratio
        self.stage_steps = stage_steps or total_steps
        self.total_steps, self.batch_size, self.score_batch = total_steps, batch_size, score_batch
        self.source: StagedSource | None = None
        self.stage = 0

    def wrap(self, source: BatchSource) -> StagedSource:
        self.source = StagedSource(source)
        return self.source

    def acts_at(self, step: int) -> bool:
        return step < self.total_steps and step % self.stage_steps == 0

    def scores(self, ctx: HostContext, pool: dict) -> tuple[np.ndarray, dict]:
        """(score per pool row of this process, per-reference mean losses)."""
        if self.score_batch % ctx.process_count:
            raise ValueError(f"config.reweight.ref_select.score_batch={self.score_batch} must "
                             f"be a multiple of the {ctx.process_count} processes")
        chunk = self.score_batch // ctx.process_count
        losses = {name: [] for name in MODES[self.mode]}
        rows = len(pool["domain_id"])
        for start in range(0, rows, chunk):
            part = {k: v[start:start + chunk] for k, v in pool.items()}
            pad = chunk - len(part["domain_id"])  # one compiled shape; padding rows dropped
            part = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
                    for k, v in part.items()}
            for name in losses:
                everyone = np.asarray(ctx.reference_row_loss(name, ctx.to_global(part)))
                mine = everyone.reshape(ctx.process_count, chunk)[ctx.process_index]
                losses[name].append(mine[:chunk - pad])
        losses = {n: np.concatenate(v).astype(np.float64) for n, v in losses.items()}
        if self.mode == "perplexity":
            return -losses["workdir"], losses
        return losses["general"] - losses["target"], losses

    def act(self, ctx: HostContext) -> dict:
        t0 = time.perf_counter()
        steps = min(self.stage_steps, self.total_steps - ctx.step)
        keep = steps * self.batch_size // ctx.process_count
        pool = self.source.draw_pool(math.ceil(steps / self.ratio))
        score, losses = self.scores(ctx, pool)
        if keep > len(score):
            raise ValueError(f"the pool has {len(score)} rows and the stage needs {keep}: "
                             "config.reweight.ref_select.selection_ratio must be <= 1")
        chosen = np.sort(np.argsort(-score, kind="stable")[:keep])
        self.source.serve(chosen)
        self.stage += 1
        valid = pool["loss_mask"].sum(-1) > 0
        tokens = float(pool["loss_mask"].size) * ctx.process_count
        metrics = {"ref_select/stage": self.stage,
                   "ref_select/pool_score": score[valid].mean(),
                   "ref_select/kept_score": score[chosen][valid[chosen]].mean(),
                   "ref_select/overhead_flops": len(losses) * tokens *
                   ctx.train_flops_per_token / 3.0}
        for name, l in losses.items():
            metrics[f"ref_select/{name}/pool_loss"] = l[valid].mean()
            metrics[f"ref_select/{name}/kept_loss"] = l[chosen][valid[chosen]].mean()
        for d, name in enumerate(ctx.domain_names):
            in_pool = pool["domain_id"] == d
            metrics[f"ref_select/pool/{name}/share"] = in_pool.mean()
            metrics[f"ref_select/selected/{name}/share"] = in_pool[chosen].mean()
        metrics["ref_select/seconds"] = time.perf_counter() - t0
        return metrics

    def get_state(self) -> dict:
        return {"stage": self.stage, "selection": self.source.selection_state()}

    def set_state(self, state: dict) -> None:
        self.stage = int(state["stage"])
        self.source.restore_selection(state["selection"])


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.ref_select: the selector's settings, each with its default."""
    c = ml_collections.ConfigDict()
    # perplexity (lowest loss under config.reference.workdir) | xent_diff (highest
    # l_general - l_target, Moore & Lewis 2010: config.reference.general and .target)
    c.mode = "perplexity"
    c.selection_ratio = 0.5  # rows kept of the candidate pool
    c.stage_steps = 0  # steps per stage, each selected anew (0 = once, at step 0)
    c.score_batch = 32  # pool rows scored per reference forward (global)
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.ref_select, and each reference its mode reads that
    is not set, one message each, building nothing."""
    r, out = cfg.reweight.ref_select, []
    field = "config.reweight.ref_select"
    if r.mode not in MODES:
        out.append(f"{field}.mode={r.mode!r} is unknown: use one of {sorted(MODES)}")
    if not 0.0 < r.selection_ratio <= 1.0:
        out.append(f"{field}.selection_ratio must be in (0, 1], got {r.selection_ratio}: the "
                   "fraction of the candidate pool kept")
    if not 0 <= r.stage_steps < cfg.train.steps:
        out.append(f"{field}.stage_steps must be in [0, config.train.steps={cfg.train.steps}), "
                   f"got {r.stage_steps}: 0 selects once, at step 0")
    if r.score_batch < 1:
        out.append(f"{field}.score_batch must be >= 1, got {r.score_batch}")
    unset = [n for n in MODES.get(r.mode, ()) if not cfg.reference[n]]
    if unset:
        out.append(f"{field}.mode={r.mode!r} reads the reference model(s) "
                   f"{', '.join(f'config.reference.{n}' for n in unset)}, which are not set: "
                   "give each the --workdir of a reference run (configs/reference_target.py "
                   "trains one on a target domain)")
    return out


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> RefSelect:
    """The selector of config.reweight.ref_select (every bad field in one error)."""
    if found := problems(cfg):
        raise ValueError("\n".join(found))
    r = cfg.reweight.ref_select
    return RefSelect(r.mode, r.selection_ratio, r.stage_steps, cfg.train.steps,
                     cfg.train.batch_size, r.score_batch)
