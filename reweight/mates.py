"""MATES (Yu, Das, Xiong, NeurIPS 2024): staged selection with a data influence model.

Training runs in stages of `stage_steps`; stage 0 trains on the mixture as drawn. Before each
later stage, `select`:
  1. draws a candidate pool from the mixture (its current domain weights): stage rows /
     `selection_ratio` rows, domain provenance kept;
  2. probes a sample of the pool: the change of the reference loss from one real optimizer
     step (optimizer state included) on each candidate alone, either exactly (`probe="exact"`,
     `HostContext.loss_after_step`: the step applied, the reference evaluated) or to first
     order (`probe="first_order"`, `HostContext.first_order_change`: <grad L_ref, update(x)>,
     one reference gradient per stage; TracIn-style, Pruthi et al. 2020). The influence is
     the paper's  I(x) = L_ref(before) - L_ref(after a step on x): higher = more helpful;
  3. fits the data influence model (a small Flax encoder: embeddings, a width-3 convolution
     for local n-gram features, 1-2 pre-norm transformer layers, mean pooling, a linear head)
     on the z-scored influences with MSE, holding out a split to report Spearman and Pearson
     against the oracle; optionally warm-started from the previous stage's model;
  4. scores the whole pool and keeps k rows by Gumbel-top-k: the top k of
     score / tau + Gumbel(0, 1), an exact sample without replacement with probabilities
     proportional to exp(score / tau) (tau -> 0 gives plain top-k);
  5. serves the chosen rows, each once, in pool order, for the stage.
mode="random" runs the same path with equal scores (a uniform random subset, no probing).

Accounting: probing, fitting and scoring FLOPs are logged per stage as fractions of the stage's
training FLOPs (PaLM-style per-token counts from `HostContext.train_flops_per_token`), and the
selection's wall time as a fraction of the stage's training wall time: the mean time between
`observe_train` calls since the last act (the previous stage's steps; each call follows one
step's completion) times `stage_steps`.

Resume: MATES's checkpoint item holds the stage, the influence model's params and the
selection (`reweight.staged`: the pool is redrawn exactly from the inner source's state it was
drawn at); the pipeline's own item holds only the inner source's state. Every random choice
of a stage comes from a numpy Generator seeded by (seed, stage, process), so the stage is the
RNG's whole state.

Multiple processes: each process draws, probes and scores its own pool rows; the probes of all
processes are gathered so every process fits the same influence model, but each process then
keeps the top k / P of its own rows (Gumbel-top-k within each process's shard of the pool), so
every process still feeds B / P rows per step. With one process this is exactly the method.
"""

from __future__ import annotations

import base64
import concurrent.futures
import math
import os
import time
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.stats

from reweight.interface import BatchSource, HostContext, HostMethod, MethodEnv
from reweight.staged import StagedSource

MODES = ("mates", "random")
PROBES = ("exact", "first_order")
REFERENCES = ("cloze", "validation")
_SELECT, _FIT, _DIAGNOSTIC = 0, 2, 3  # RNG streams: a process's draws, the fit, diagnostics


def stage_rng(seed: int, stage: int, process: int, stream: int = _SELECT) -> np.random.Generator:
    """One stage's generator of one stream. The stream is a 4th entry: numpy pads a shorter
    seed with zeros, so [seed, stage, 2] would be process 2's draws and the fit's alike."""
    return np.random.default_rng([seed, stage, process, stream])


def gumbel_top_k(scores: np.ndarray, k: int, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of a size-k sample without replacement, P ∝ exp(scores / tau)."""
    if not 0 < k <= len(scores):
        raise ValueError(f"cannot keep k={k} of {len(scores)} candidates")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}: it is the sampling temperature")
    keys = np.asarray(scores, np.float64) / tau + rng.gumbel(size=len(scores))
    return np.sort(np.argpartition(-keys, k - 1)[:k])


class InfluenceModel(nn.Module):
    """Tokens [B, L] and a validity mask [B, L] -> predicted (z-scored) influence [B]."""
    vocab_size: int
    dim: int = 64
    heads: int = 4
    layers: int = 1
    max_len: int = 512

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
        length = tokens_BxL.shape[1]
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, self.dim))
        x_BxLxD = nn.Embed(self.vocab_size, self.dim)(tokens_BxL) + pos[:length]
        x_BxLxD = x_BxLxD + nn.gelu(nn.Conv(self.dim, (3,), padding="SAME")(x_BxLxD))
        attn_mask = nn.make_attention_mask(mask_BxL, mask_BxL)
        for _ in range(self.layers):
            h = nn.LayerNorm()(x_BxLxD)
            x_BxLxD = x_BxLxD + nn.MultiHeadDotProductAttention(self.heads)(h, h, mask=attn_mask)
            h = nn.LayerNorm()(x_BxLxD)
            x_BxLxD = x_BxLxD + nn.Dense(self.dim)(nn.gelu(nn.Dense(4 * self.dim)(h)))
        m_BxLx1 = mask_BxL[..., None].astype(jnp.float32)
        pooled_BxD = (nn.LayerNorm()(x_BxLxD) * m_BxLx1).sum(1) / jnp.maximum(m_BxLx1.sum(1), 1.0)
        return nn.Dense(1)(pooled_BxD)[:, 0]

    def forward_flops_per_token(self, params, length: int) -> float:
        """2 per matmul weight (embedding lookups excluded) plus attention scores and values."""
        weights = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(params)
                      if path[-1].key == "kernel")
        return 2.0 * weights + 4.0 * self.layers * self.dim * length


def model_inputs(rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the influence model reads of a row: its tokens and which positions hold text."""
    return rows["targets"], rows["segment_ids"] > 0


class InfluenceFitter:
    """Fits the influence model (MSE on z-scored targets) and predicts with it. The whole fit
    is one jitted `lax.scan` over every minibatch of every epoch. Prediction runs in chunks of
    one compiled shape, small enough that a chunk's attention scores stay in cache: on the
    2-core CPU 16,000 rows of 128 tokens took 4.8 s in chunks of 16 against 19.3 s in chunks of
    1,024 (the width-32 model's [chunk, heads, L, L] scores are memory-bound there)."""

    def __init__(self, model: InfluenceModel, lr: float, epochs: int, batch_size: int,
                 predict_chunk: int = 16):
        self.model, self.epochs, self.batch_size = model, epochs, batch_size
        self.predict_chunk = predict_chunk
        self.tx = optax.adamw(lr, weight_decay=0.01)

        def loss_fn(params, tokens, mask, y):
            return jnp.mean((model.apply({"params": params}, tokens, mask) - y) ** 2)

        def fit(params, tokens_NxL, mask_NxL, y_N, batches_SxB):
            """S minibatches (row indices [S, B]) in order; (params, loss of each)."""
            def update(carry, idx_B):
                params, opt_state = carry
                loss, grads = jax.value_and_grad(loss_fn)(params, tokens_NxL[idx_B],
                                                          mask_NxL[idx_B], y_N[idx_B])
                updates, opt_state = self.tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss
            (params, _), losses_S = jax.lax.scan(update, (params, self.tx.init(params)),
                                                 batches_SxB)
            return params, losses_S

        self._fit = jax.jit(fit)
        self._predict = jax.jit(lambda p, t, m: model.apply({"params": p}, t, m))
        self._init = jax.jit(lambda key, t, m: model.init(key, t, m)["params"])

    def batches_per_epoch(self, rows: int) -> int:
        """Whole minibatches per epoch (one compiled shape; the remainder sits out)."""
        return rows // min(self.batch_size, rows)

    def predict_rows(self, rows: int) -> int:
        """Rows `predict` computes for `rows`: whole chunks, the last one padded."""
        return math.ceil(rows / self.predict_chunk) * self.predict_chunk

    def init(self, key: jax.Array, tokens: np.ndarray, mask: np.ndarray):
        """Fresh params, as host arrays like warm-started ones (so `fit` compiles once)."""
        return jax.device_get(self._init(key, tokens[:1], mask[:1]))

    def fit(self, params, tokens: np.ndarray, mask: np.ndarray, y: np.ndarray,
            rng: np.random.Generator) -> tuple[Any, float]:
        """`epochs` passes of shuffled whole minibatches; (params, last epoch's mean loss)."""
        n = len(y)
        size, per_epoch = min(self.batch_size, n), self.batches_per_epoch(n)
        batches = np.stack([rng.permutation(n)[:per_epoch * size].reshape(per_epoch, size)
                            for _ in range(self.epochs)]).reshape(-1, size)
        params, losses = self._fit(params, tokens, mask, np.asarray(y, np.float32),
                                   batches.astype(np.int32))
        return jax.device_get(params), float(np.mean(np.asarray(losses)[-per_epoch:]))

    def predict(self, params, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Predictions over any number of rows, in chunks of `predict_chunk` (one shape),
        dispatched from a thread per host core: XLA runs so small a program on one core, and
        the chunks are independent (16,000 rows: 2.6 s from 2 threads, 4.6 s from one)."""
        n, size = len(tokens), self.predict_chunk
        pad = self.predict_rows(n) - n
        tokens, mask = np.pad(tokens, ((0, pad), (0, 0))), np.pad(mask, ((0, pad), (0, 0)))
        chunk = lambda i: np.asarray(self._predict(params, tokens[i:i + size], mask[i:i + size]))
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            return np.concatenate(list(pool.map(chunk, range(0, n + pad, size))))[:n]


def params_to_text(params) -> str:
    return base64.b64encode(flax.serialization.msgpack_serialize(
        jax.tree.map(np.asarray, params))).decode("ascii")


def params_from_text(text: str):
    return flax.serialization.msgpack_restore(base64.b64decode(text))


class Mates(HostMethod):
    """Probe -> fit -> score -> select before every later stage (see the module docstring)."""
    name = "mates"

    def __init__(self, cfg: ml_collections.ConfigDict, reference: dict):
        self.cfg, self.m = cfg, cfg.reweight.mates
        self.reference = reference  # numpy rows, the same on every process
        self.source: StagedSource | None = None
        self.stage = 0
        self.influence_params = ""  # the last influence model (msgpack, base64)
        self._fitter: InfluenceFitter | None = None
        # Wall clock of training since the last act: (first observe_train time, last, calls).
        # Timing only, so not checkpointed; after a resume it restarts with the next step.
        self._clock: tuple[float, float, int] | None = None

    def wrap(self, source: BatchSource) -> StagedSource:
        self.source = StagedSource(source)
        return self.source

    def acts_at(self, step: int) -> bool:
        return 0 < step < self.cfg.train.steps and step % self.m.stage_steps == 0

    def observe_train(self, step: int, sums) -> None:
        now = time.perf_counter()
        self._clock = (now, now, 1) if self._clock is None else \
            (self._clock[0], now, self._clock[2] + 1)

    def act(self, ctx: HostContext) -> dict:
        t0 = time.perf_counter()
        m, cfg, src = self.m, self.cfg, self.source
        stage = self.stage + 1
        keep = m.stage_steps * cfg.train.batch_size // ctx.process_count
        pool = src.draw_pool(math.ceil(m.stage_steps / m.selection_ratio))
        rng = stage_rng(cfg.seed, stage, ctx.process_index)
        metrics = {"mates/stage": stage, "mates/seconds/draw": time.perf_counter() - t0}
        if m.mode == "mates":
            scores, fit_metrics = self._influence_scores(pool, ctx, stage, rng)
            metrics |= fit_metrics
        else:
            scores = np.zeros(len(pool["domain_id"]))
        chosen = gumbel_top_k(scores, keep, m.tau, rng)
        src.serve(chosen)
        self.stage = stage
        for d, name in enumerate(ctx.domain_names):
            in_pool = pool["domain_id"] == d
            metrics[f"mates/pool/{name}/share"] = in_pool.mean()
            metrics[f"mates/selected/{name}/share"] = in_pool[chosen].mean()
        # The selection's own time: the diagnostics, if on, are not part of the method.
        seconds = time.perf_counter() - t0 - metrics.get("mates/diagnostic/seconds", 0.0)
        metrics["mates/seconds"] = seconds
        if self._clock is not None and self._clock[2] > 1:  # a stage's training wall time
            first, last, calls = self._clock
            stage_seconds = (last - first) / (calls - 1) * m.stage_steps
            metrics["mates/stage_train_seconds"] = stage_seconds
            metrics["mates/overhead_seconds_fraction"] = seconds / stage_seconds
        self._clock = None
        return metrics

    def _influence_scores(self, pool: dict, ctx: HostContext, stage: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Probe a sample, fit the influence model, score the pool; (z-scores, metrics)."""
        m, cfg = self.m, self.cfg
        if m.probe_chunk % ctx.process_count:
            raise ValueError(f"config.reweight.mates.probe_chunk={m.probe_chunk} must be a "
                             f"multiple of the {ctx.process_count} processes: each feeds equal "
                             "rows")
        chunk_local = m.probe_chunk // ctx.process_count
        n_local = math.ceil(m.probe_size / m.probe_chunk) * chunk_local
        pool_rows = len(pool["domain_id"])
        if n_local > pool_rows:
            raise ValueError(f"config.reweight.mates.probe_size={m.probe_size} exceeds the pool "
                             f"({pool_rows * ctx.process_count} rows): lower it")
        probe_rows = rng.choice(pool_rows, n_local, replace=False)
        t0 = time.perf_counter()
        before, change, tokens, mask, domains = self._probe(
            {k: v[probe_rows] for k, v in pool.items()}, ctx, chunk_local)
        t1 = time.perf_counter()
        influence = -change  # the paper's sign: higher = the step helped the reference
        z = (influence - influence.mean()) / max(influence.std(), 1e-12)

        fitter = self._get_fitter(tokens.shape[1])
        fit_rng = stage_rng(cfg.seed, stage, 0, _FIT)  # the same on every process
        order = fit_rng.permutation(len(z))
        n_hold = max(2, round(m.holdout * len(z)))
        hold, train = order[:n_hold], order[n_hold:]
        if m.warm_start and self.influence_params:
            params = params_from_text(self.influence_params)
        else:
            params = fitter.init(jax.random.key(cfg.seed * 1000 + stage), tokens, mask)
        params, train_mse = fitter.fit(params, tokens[train], mask[train], z[train], fit_rng)
        pred_hold = fitter.predict(params, tokens[hold], mask[hold])
        t2 = time.perf_counter()
        scores = fitter.predict(params, *model_inputs(pool))
        t3 = time.perf_counter()
        self.influence_params = params_to_text(params)
        diagnostics = self._diagnostics(pool, probe_rows, params, fitter, ctx, chunk_local,
                                        stage) if m.diagnostic_probes else {}

        metrics = {"mates/reference_loss": before,
                   "mates/influence_mean": influence.mean(),
                   "mates/influence_std": influence.std(),
                   "mates/influence_positive_fraction": (influence > 0).mean(),
                   "mates/fit_train_mse": train_mse,
                   "mates/holdout_spearman": scipy.stats.spearmanr(pred_hold, z[hold]).statistic,
                   "mates/holdout_pearson": scipy.stats.pearsonr(pred_hold, z[hold]).statistic,
                   # Wall time of each part (the first stage's includes its compilation).
                   "mates/seconds/probe": t1 - t0, "mates/seconds/fit": t2 - t1,
                   "mates/seconds/score": t3 - t2}
        for d, name in enumerate(ctx.domain_names):
            if (domains == d).any():
                metrics[f"mates/oracle/{name}/influence"] = influence[domains == d].mean()
        metrics |= diagnostics
        n_params = sum(x.size for x in jax.tree.leaves(ctx.params))
        metrics |= self._overhead(params, fitter, ctx.train_flops_per_token, n_params, len(z),
                                  len(train), pool_rows * ctx.process_count, tokens.shape[1])
        return scores, metrics

    def _diagnostics(self, pool: dict, probed: np.ndarray, params, fitter: InfluenceFitter,
                     ctx: HostContext, chunk_local: int, stage: int) -> dict:
        """Is there a signal to learn, and was it learnt? `diagnostic_probes` more pool rows,
        neither fitted nor selected on, probed against the whole reference set and against
        each half of its rows: the influence model's Spearman with the oracle on them, and
        the oracle's split-half agreement (Spearman of the two halves' influences) with its
        Spearman-Brown reliability for the whole set, 2r / (1 + r). Not counted in the
        overhead: a check a researcher turns off."""
        t0 = time.perf_counter()
        m = self.m
        rng = stage_rng(self.cfg.seed, stage, ctx.process_index, _DIAGNOSTIC)
        n_local = math.ceil(m.diagnostic_probes / m.probe_chunk) * chunk_local
        rest = np.setdiff1d(np.arange(len(pool["domain_id"])), probed)
        if n_local > len(rest):
            raise ValueError(f"config.reweight.mates.diagnostic_probes={m.diagnostic_probes} "
                             "with probe_size exceeds the pool: lower them")
        rows = {k: v[rng.choice(rest, n_local, replace=False)] for k, v in pool.items()}
        _, change, tokens, mask, _ = self._probe(rows, ctx, chunk_local)
        half = len(self.reference["loss_mask"]) // 2
        halves = [self._probe(rows, ctx, chunk_local,
                              {k: v[part] for k, v in self.reference.items()})[1]
                  for part in (slice(None, half), slice(half, None))]
        predicted = fitter.predict(params, tokens, mask)
        r = scipy.stats.spearmanr(-halves[0], -halves[1]).statistic
        return {"mates/diagnostic/probes": len(change),
                "mates/diagnostic/model_spearman":
                    scipy.stats.spearmanr(predicted, -change).statistic,
                "mates/diagnostic/split_half_spearman": r,
                "mates/diagnostic/split_half_reliability": 2 * r / (1 + r),
                "mates/diagnostic/seconds": time.perf_counter() - t0}

    def _probe(self, rows: dict, ctx: HostContext, chunk_local: int,
               reference_rows: dict | None = None):
        """(reference loss before, the change of it from a step on each candidate, their
        model inputs, their domains): `rows` are this process's candidates, the results every
        process's, in process order; the reference set is `reference_rows` (default: the
        method's)."""
        reference = ctx.reference_set(self.reference if reference_rows is None
                                      else reference_rows)
        if self.m.probe == "first_order":  # one reference gradient for every candidate
            before, ref_grads = ctx.reference_grad(ctx.params, reference)
            before = float(before)
            probe = lambda part: ctx.first_order_change(ctx.params, ctx.opt_state, part,
                                                        ref_grads)
        else:
            before = float(ctx.reference_loss(ctx.params, reference))
            probe = lambda part: ctx.loss_after_step(ctx.params, ctx.opt_state, part,
                                                     reference) - before
        change, tokens, mask, domains = [], [], [], []
        for start in range(0, len(rows["domain_id"]), chunk_local):
            part = {k: v[start:start + chunk_local] for k, v in rows.items()}
            change.append(np.asarray(probe(ctx.to_global(part)), np.float64))
            t, msk = model_inputs(part)
            tokens.append(ctx.all_gather(t))
            mask.append(ctx.all_gather(msk))
            domains.append(ctx.all_gather(part["domain_id"]))
        return (before, np.concatenate(change), np.concatenate(tokens), np.concatenate(mask),
                np.concatenate(domains))

    def _overhead(self, params, fitter: InfluenceFitter, train_fpt: float, n_params: int,
                  probes: int, fit_rows: int, pool_rows: int, row_len: int) -> dict:
        """Probing, fitting and scoring FLOPs as fractions of the stage's training FLOPs.

        A reference forward costs train_fpt / 3 per token less the unembedding (2 d V), which
        runs only at the K loss positions of each row (padded: R * K of them). Exact probe: per
        candidate a training step on its row (fwd + bwd = train_fpt per token) and a reference
        forward; one more reference forward for the loss before. First-order probe: per
        candidate its row's fwd + bwd and a dot product over the params (2 per param); once
        per stage the reference's fwd + bwd (3 forwards; its loss comes with it). Fitting:
        fwd + bwd (3 forwards) per minibatch row actually trained, a forward per hold-out row;
        scoring: a forward per pool row; both as padded to their compiled shapes."""
        m = self.m
        unembed = 2.0 * self.cfg.model.d_model * self.cfg.model.vocab_size
        mask = np.asarray(self.reference["loss_mask"]) > 0
        ref_fwd = (mask.size * (train_fpt / 3.0 - unembed)
                   + len(mask) * max(int(mask.sum(-1).max()), 1) * unembed)
        stage = m.stage_steps * self.cfg.train.batch_size * row_len * train_fpt
        candidate = train_fpt * row_len
        if m.probe == "first_order":
            probing = probes * (candidate + 2.0 * n_params) + 3.0 * ref_fwd
        else:
            probing = probes * (candidate + ref_fwd) + ref_fwd
        fwd = fitter.model.forward_flops_per_token(params, row_len) * row_len
        trained = fitter.epochs * fitter.batches_per_epoch(fit_rows) * min(fitter.batch_size,
                                                                          fit_rows)
        fitting = 3.0 * fwd * trained + fwd * fitter.predict_rows(probes - fit_rows)
        scoring = fwd * fitter.predict_rows(pool_rows)
        return {"mates/probe_flops_fraction": probing / stage,
                "mates/fit_flops_fraction": fitting / stage,
                "mates/score_flops_fraction": scoring / stage,
                "mates/overhead_fraction": (probing + fitting + scoring) / stage,
                # Absolute, so that a comparison counts it in the run's FLOPs.
                "mates/overhead_flops": probing + fitting + scoring}

    def _get_fitter(self, row_len: int) -> InfluenceFitter:
        if self._fitter is None:
            m = self.m
            model = InfluenceModel(self.cfg.model.vocab_size, m.model_dim, m.model_heads,
                                   m.model_layers, max(row_len, self.cfg.data.seq_len))
            self._fitter = InfluenceFitter(model, m.fit_lr, m.fit_epochs, m.fit_batch)
        return self._fitter

    def get_state(self) -> dict:
        return {"stage": self.stage, "influence_params": self.influence_params,
                "selection": self.source.selection_state()}

    def set_state(self, state: dict) -> None:
        self.stage = int(state["stage"])
        self.influence_params = state["influence_params"]
        self.source.restore_selection(state["selection"])


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.mates: the selector's settings, each with its default."""
    c = ml_collections.ConfigDict()
    c.mode = "mates"  # mates (influence model) | random (equal scores, same path)
    c.stage_steps = 200  # steps per stage; stage 0 trains on the mix as drawn
    c.selection_ratio = 0.2  # rows kept of the candidate pool (pool = stage / ratio)
    c.tau = 0.5  # Gumbel-top-k temperature over the z-scored predicted influence
    c.probe_size = 192  # pool candidates probed per stage (rounded to probe_chunk)
    c.probe_chunk = 8  # candidates per vmapped probe call (multiple of processes)
    # first_order (<grad L_ref, optimizer update>, recommended: see README) | exact (step, re-eval)
    c.probe = "first_order"
    # cloze (last-word cloze of reference_domain's validation text) | validation (its rows after
    # the eval's first data.eval_rows: held out from the eval)
    c.reference = "cloze"
    c.reference_domain = "books"  # the domain whose validation split it uses
    c.reference_rows = 64  # reference examples the probe evaluates
    c.reference_len = 64  # tokens per reference row (context left-truncated)
    c.model_dim = 32  # influence model: width
    c.model_heads = 4  # influence model: attention heads
    c.model_layers = 1  # influence model: transformer layers (after an n-gram conv)
    c.fit_lr = 1e-3  # influence model: AdamW learning rate
    c.fit_epochs = 15  # influence model: passes over the probed candidates
    c.fit_batch = 32  # influence model: rows per update
    c.holdout = 0.1  # fraction of the probes held out for Spearman / Pearson
    # Extra candidates probed per stage, neither fitted nor selected on, for diagnostics: the
    # influence model's Spearman on them, the oracle's split-half reliability (0 = off)
    c.diagnostic_probes = 0
    c.warm_start = True  # start each stage's fit from the previous stage's model
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.mates, one message each, building nothing."""
    m = cfg.reweight.mates
    checks = (
        (m.stage_steps > 0, "stage_steps", m.stage_steps, "steps per stage; > 0"),
        (m.stage_steps < cfg.train.steps, "stage_steps", m.stage_steps,
         f"must be below config.train.steps={cfg.train.steps}, or the run is one stage and "
         "nothing is ever selected"),
        (0 < m.selection_ratio <= 1, "selection_ratio", m.selection_ratio,
         "the fraction of the pool kept; in (0, 1]"),
        (m.mode in MODES, "mode", m.mode, f"one of {MODES}"),
        (m.probe in PROBES, "probe", m.probe, f"one of {PROBES}"),
        (m.tau > 0, "tau", m.tau, "the Gumbel-top-k temperature; > 0"),
        (m.probe_chunk > 0 and m.probe_size >= 2 * m.probe_chunk, "probe_size", m.probe_size,
         "candidates probed per stage: at least 2 * probe_chunk"),
        (0 < m.holdout < 0.5, "holdout", m.holdout, "the hold-out fraction; in (0, 0.5)"),
        (m.diagnostic_probes >= 0, "diagnostic_probes", m.diagnostic_probes,
         "extra candidates probed for the diagnostics; >= 0 (0 = off)"),
        (m.reference in REFERENCES, "reference", m.reference, f"one of {REFERENCES}"))
    return [f"config.reweight.mates.{field} must be valid, got {value!r}: {what}"
            for ok, field, value, what in checks if not ok]


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Mates:
    """Checks config.reweight.mates (every bad field in one error), then builds the reference
    set and the method."""
    if found := problems(cfg):
        raise ValueError("\n".join(found))
    m = cfg.reweight.mates
    return Mates(cfg, env.reference_rows(m.reference, m.reference_domain, m.reference_rows,
                                         m.reference_len))
