"""MATES (Yu, Das, Xiong, NeurIPS 2024): staged selection with a data influence model.

Training runs in stages of `stage_steps`; stage 0 trains on the mixture as drawn. Before each
later stage, `select`:
  1. draws a candidate pool from the mixture (its current domain weights): stage rows /
     `selection_ratio` rows, domain provenance kept;
  2. probes a sample of the pool with the oracle of `lm.probe`: the reference loss after one
     real optimizer step (optimizer state included) on each candidate alone. The influence is
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
training FLOPs (PaLM-style per-token counts; see `lm.flops` and `lm.probe.probe_flops`).

Resume: the wrapped source's state holds the stage, the inner source's state when the pool was
drawn plus the pool's batch count (the pool is redrawn from it exactly), the chosen indices, the
cursor, the influence model's params and the step whose selection made the stage. Every random
choice of a stage comes from a numpy Generator seeded by (seed, stage, process), so the
stage is the RNG's whole state and a selection rerun from a restored checkpoint is identical.

Multiple processes: each process draws, probes and scores its own pool rows; the probes of all
processes are gathered so every process fits the same influence model, but each process then
keeps the top k / P of its own rows (Gumbel-top-k within each process's shard of the pool), so
every process still feeds B / P rows per step. With one process this is exactly the method.
"""

from __future__ import annotations

import base64
import math
import time
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from lm import flops as flops_lib
from lm import probe as probe_lib
from lm.model import ModelConfig

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_mask", "domain_id")
MODES = ("mates", "random")
_FIT = 2  # RNG stream tag of the fit (shared by all processes)


def gumbel_top_k(scores: np.ndarray, k: int, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of a size-k sample without replacement, P ∝ exp(scores / tau)."""
    if not 0 < k <= len(scores):
        raise ValueError(f"cannot keep k={k} of {len(scores)} candidates")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}: it is the sampling temperature")
    keys = np.asarray(scores, np.float64) / tau + rng.gumbel(size=len(scores))
    return np.sort(np.argpartition(-keys, k - 1)[:k])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by position: the scores here are continuous)."""
    rank = lambda x: np.argsort(np.argsort(x)).astype(np.float64)
    return pearson(rank(a), rank(b))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64) - np.mean(a), np.asarray(b, np.float64) - np.mean(b)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


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
    """Fits the influence model (MSE on z-scored targets) and predicts with it; jitted once."""

    def __init__(self, model: InfluenceModel, lr: float, epochs: int, batch_size: int):
        self.model, self.epochs, self.batch_size = model, epochs, batch_size
        self.tx = optax.adamw(lr, weight_decay=0.01)

        def loss_fn(params, tokens, mask, y):
            return jnp.mean((model.apply({"params": params}, tokens, mask) - y) ** 2)

        def update(params, opt_state, tokens, mask, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, tokens, mask, y)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self._update = jax.jit(update)
        self._predict = jax.jit(lambda p, t, m: model.apply({"params": p}, t, m))
        self._init = jax.jit(lambda key, t, m: model.init(key, t, m)["params"])

    def init(self, key: jax.Array, tokens: np.ndarray, mask: np.ndarray):
        """Fresh params, as host arrays like warm-started ones (so `fit` compiles once)."""
        return jax.device_get(self._init(key, tokens[:1], mask[:1]))

    def fit(self, params, tokens: np.ndarray, mask: np.ndarray, y: np.ndarray,
            rng: np.random.Generator) -> tuple[Any, float]:
        """`epochs` passes of shuffled minibatches; returns (params, last epoch's mean loss)."""
        opt_state = self.tx.init(params)
        n = len(y)
        size = min(self.batch_size, n)
        losses = []
        for _ in range(self.epochs):
            order = rng.permutation(n)
            losses = []
            for start in range(0, n - size + 1, size):  # whole batches: one compiled shape
                i = order[start:start + size]
                params, opt_state, loss = self._update(params, opt_state, tokens[i], mask[i],
                                                       y[i].astype(np.float32))
                losses.append(loss)
        return params, float(np.mean(jax.device_get(losses)))

    def predict(self, params, tokens: np.ndarray, mask: np.ndarray, chunk: int = 256
                ) -> np.ndarray:
        """Predictions over any number of rows, in padded chunks of one shape."""
        out = []
        for start in range(0, len(tokens), chunk):
            t, m = tokens[start:start + chunk], mask[start:start + chunk]
            pad = chunk - len(t)
            t, m = np.pad(t, ((0, pad), (0, 0))), np.pad(m, ((0, pad), (0, 0)))
            out.append(np.asarray(self._predict(params, t, m))[:chunk - pad])
        return np.concatenate(out)


def params_to_text(params) -> str:
    return base64.b64encode(flax.serialization.msgpack_serialize(
        jax.tree.map(np.asarray, params))).decode("ascii")


def params_from_text(text: str):
    return flax.serialization.msgpack_restore(base64.b64decode(text))


class StagedSource:
    """The BatchSource the loop trains from: the inner source as drawn in stage 0, then each
    stage's selected pool rows, each once. Weights set on it reach the inner source (and so
    the next pool)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.domain_names = inner.domain_names
        self.stage = 0
        self.pool: dict | None = None  # this process's candidate rows, [M, ...] per key
        self.pool_origin: dict | None = None  # the inner state the pool was drawn from
        self.pool_batches = 0
        self.selected = np.zeros(0, np.int64)  # pool indices of the stage, in serving order
        self.cursor = 0
        self.selected_at = -1  # the step whose selection made the current stage
        self.local_batch = 0  # rows per batch on this process
        self.influence_params: str = ""  # the last influence model (msgpack, base64)

    def draw_pool(self, batches: int) -> None:
        self.pool_origin, self.pool_batches = self.inner.get_state(), batches
        drawn = [next(self.inner) for _ in range(batches)]
        self.pool = {k: np.concatenate([b[k] for b in drawn]) for k in BATCH_KEYS}
        self.local_batch = len(drawn[0]["domain_id"])

    def start_stage(self, selected: np.ndarray, step: int) -> None:
        self.stage += 1
        self.selected, self.cursor, self.selected_at = np.asarray(selected, np.int64), 0, step

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.stage == 0:
            return next(self.inner)
        rows = self.selected[self.cursor:self.cursor + self.local_batch]
        if len(rows) < self.local_batch:
            raise RuntimeError(f"stage {self.stage} has used all {len(self.selected)} selected "
                               "rows: the loop must call select() every stage_steps steps")
        self.cursor += self.local_batch
        return {k: v[rows] for k, v in self.pool.items()}

    def set_weights(self, weights) -> None:
        self.inner.set_weights(weights)

    def get_state(self) -> dict:
        return {"inner": self.inner.get_state(), "stage": self.stage,
                "pool_origin": self.pool_origin, "pool_batches": self.pool_batches,
                "selected": self.selected.tolist(), "cursor": self.cursor,
                "selected_at": self.selected_at, "influence_params": self.influence_params}

    def set_state(self, state: dict) -> None:
        if state.get("pool_origin") is not None:
            self.inner.set_state(state["pool_origin"])
            self.draw_pool(int(state["pool_batches"]))
        self.inner.set_state(state["inner"])
        self.stage, self.cursor = int(state["stage"]), int(state["cursor"])
        self.selected = np.asarray(state["selected"], np.int64)
        self.selected_at = int(state["selected_at"])
        self.influence_params = state["influence_params"]


class MatesSelector:
    """The StageSelector: probe -> fit -> score -> select before every later stage."""

    def __init__(self, cfg: ml_collections.ConfigDict, reference: dict | None = None):
        m = cfg.reweight.mates
        _check(m.stage_steps > 0, "stage_steps", m.stage_steps, "steps per stage; > 0")
        _check(m.stage_steps < cfg.train.steps, "stage_steps", m.stage_steps,
               f"must be below config.train.steps={cfg.train.steps}, or the run is one stage "
               "and nothing is ever selected")
        _check(0 < m.selection_ratio <= 1, "selection_ratio", m.selection_ratio,
               "the fraction of the pool kept; in (0, 1]")
        _check(m.mode in MODES, "mode", m.mode, f"one of {MODES}")
        _check(m.tau > 0, "tau", m.tau, "the Gumbel-top-k temperature; > 0")
        _check(m.probe_chunk > 0 and m.probe_size >= 2 * m.probe_chunk, "probe_size",
               m.probe_size, "candidates probed per stage: at least 2 * probe_chunk")
        _check(0 < m.holdout < 0.5, "holdout", m.holdout, "the hold-out fraction; in (0, 0.5)")
        self.cfg, self.m = cfg, m
        self.stage_steps = m.stage_steps
        self._reference = reference  # local numpy rows; built from cfg on first use if None
        self._source: StagedSource | None = None
        self._probe_cache: tuple | None = None  # (runtime, probe fn, before fn)
        self._fitter: InfluenceFitter | None = None

    def wrap(self, source: Any) -> StagedSource:
        self._source = StagedSource(source)
        return self._source

    def select(self, step: int, state: Any, runtime: Any) -> dict:
        src = self._source
        if src.selected_at >= step:  # the checkpoint already holds this stage's selection
            return {}
        t0 = time.perf_counter()
        m, cfg, processes = self.m, self.cfg, jax.process_count()
        stage = src.stage + 1
        local = cfg.train.batch_size // processes
        keep = self.stage_steps * local
        src.draw_pool(math.ceil(self.stage_steps / m.selection_ratio))
        pool = src.pool
        rng = np.random.default_rng([cfg.seed, stage, jax.process_index()])
        metrics = {"mates/stage": stage}
        if m.mode == "mates":
            scores, fit_metrics = self._influence_scores(pool, state, runtime, stage, rng)
            metrics |= fit_metrics
        else:
            scores = np.zeros(len(pool["domain_id"]))
        chosen = gumbel_top_k(scores, keep, m.tau, rng)
        src.start_stage(chosen, step)
        names = src.domain_names
        for d, name in enumerate(names):
            in_pool = pool["domain_id"] == d
            metrics[f"mates/pool/{name}/share"] = in_pool.mean()
            metrics[f"mates/selected/{name}/share"] = in_pool[chosen].mean()
        metrics["mates/seconds"] = time.perf_counter() - t0
        return metrics

    def _influence_scores(self, pool: dict, state: Any, rt: Any, stage: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Probe a sample, fit the influence model, score the pool; (z-scores, metrics)."""
        m, cfg, src = self.m, self.cfg, self._source
        processes = jax.process_count()
        if m.probe_chunk % processes:
            raise ValueError(f"config.reweight.mates.probe_chunk={m.probe_chunk} must be a "
                             f"multiple of the {processes} processes: each feeds equal rows")
        chunk_local = m.probe_chunk // processes
        n_local = math.ceil(m.probe_size / m.probe_chunk) * chunk_local
        pool_rows = len(pool["domain_id"])
        if n_local > pool_rows:
            raise ValueError(f"config.reweight.mates.probe_size={m.probe_size} exceeds the pool "
                             f"({pool_rows * processes} rows): lower it")
        probe_rows = rng.choice(pool_rows, n_local, replace=False)
        before, post, tokens, mask, domains, ref_tokens = self._probe(
            {k: v[probe_rows] for k, v in pool.items()}, state, rt, chunk_local)
        influence = before - post  # the paper's sign: higher = the step helped the reference
        z = (influence - influence.mean()) / max(influence.std(), 1e-12)

        fitter = self._get_fitter(tokens.shape[1])
        fit_rng = np.random.default_rng([cfg.seed, stage, _FIT])  # same on every process
        order = fit_rng.permutation(len(z))
        n_hold = max(2, round(m.holdout * len(z)))
        hold, train = order[:n_hold], order[n_hold:]
        if m.warm_start and src.influence_params:
            params = params_from_text(src.influence_params)
        else:
            params = fitter.init(jax.random.key(cfg.seed * 1000 + stage), tokens, mask)
        params, train_mse = fitter.fit(params, tokens[train], mask[train], z[train], fit_rng)
        pred_hold = fitter.predict(params, tokens[hold], mask[hold])
        scores = fitter.predict(params, *model_inputs(pool))
        src.influence_params = params_to_text(params)

        metrics = {"mates/reference_loss": before,
                   "mates/influence_mean": influence.mean(),
                   "mates/influence_std": influence.std(),
                   "mates/influence_positive_fraction": (influence > 0).mean(),
                   "mates/fit_train_mse": train_mse,
                   "mates/holdout_spearman": spearman(pred_hold, z[hold]),
                   "mates/holdout_pearson": pearson(pred_hold, z[hold])}
        for d, name in enumerate(src.domain_names):
            if (domains == d).any():
                metrics[f"mates/oracle/{name}/influence"] = influence[domains == d].mean()
        metrics |= self._overhead(params, fitter, len(z), len(train), pool_rows * processes,
                                  tokens.shape[1], ref_tokens)
        return scores, metrics

    def _probe(self, rows: dict, state: Any, rt: Any, chunk_local: int):
        """Oracle post-step reference losses of `rows` (this process's), gathered over all
        processes with the candidates' model inputs and domains."""
        if self._probe_cache is None or self._probe_cache[0] is not rt:
            self._probe_cache = (rt, *probe_lib.make_probe(rt.model, rt.tx))
        _, probe, before_fn = self._probe_cache
        reference = self._reference_rows()
        replicated = jax.sharding.NamedSharding(rt.mesh, jax.sharding.PartitionSpec())
        ref = {k: jax.make_array_from_process_local_data(replicated, v)
               for k, v in reference.items()}
        before = float(before_fn(state.params, ref))
        gather = lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True))
        post, tokens, mask, domains = [], [], [], []
        for start in range(0, len(rows["domain_id"]), chunk_local):
            part = {k: v[start:start + chunk_local] for k, v in rows.items()}
            chunk = {k: jax.make_array_from_process_local_data(
                rt.batch_shard, v, (self.m.probe_chunk,) + v.shape[1:])
                for k, v in part.items()}
            post.append(gather(probe(state.params, state.opt_state, chunk, ref)))
            t, msk = model_inputs(part)
            tokens.append(gather(t))
            mask.append(gather(msk))
            domains.append(gather(part["domain_id"]))
        ref_tokens = reference["targets"].size
        return (before, np.concatenate(post), np.concatenate(tokens), np.concatenate(mask),
                np.concatenate(domains), ref_tokens)

    def _overhead(self, params, fitter: InfluenceFitter, probes: int, fit_rows: int,
                  pool_rows: int, row_len: int, ref_tokens: int) -> dict:
        """Probing, fitting and scoring FLOPs as fractions of the stage's training FLOPs."""
        cfg = self.cfg
        train_fpt = flops_lib.flops_per_token(ModelConfig.from_config(cfg.model), row_len)
        stage = self.stage_steps * cfg.train.batch_size * row_len * train_fpt
        probing = probes * probe_lib.probe_flops(train_fpt, row_len, ref_tokens)
        probing += train_fpt / 3.0 * ref_tokens  # the reference loss before
        fwd = fitter.model.forward_flops_per_token(params, row_len) * row_len
        fitting = 3.0 * fwd * fit_rows * fitter.epochs + fwd * (probes - fit_rows)
        scoring = fwd * pool_rows
        return {"mates/probe_flops_fraction": probing / stage,
                "mates/fit_flops_fraction": fitting / stage,
                "mates/score_flops_fraction": scoring / stage,
                "mates/overhead_fraction": (probing + fitting + scoring) / stage}

    def _get_fitter(self, row_len: int) -> InfluenceFitter:
        if self._fitter is None:
            m = self.m
            model = InfluenceModel(self.cfg.model.vocab_size, m.model_dim, m.model_heads,
                                   m.model_layers, max(row_len, self.cfg.data.seq_len))
            self._fitter = InfluenceFitter(model, m.fit_lr, m.fit_epochs, m.fit_batch)
        return self._fitter

    def _reference_rows(self) -> dict:
        if self._reference is None:
            self._reference = reference_from_config(self.cfg)
        return self._reference


def reference_from_config(cfg: ml_collections.ConfigDict) -> dict:
    """The reference set named by `config.reweight.mates.reference`, as one batch of rows."""
    m = cfg.reweight.mates
    if m.reference == "cloze":
        from data import cloze, tokenizer  # the vocabulary brings seqio and TensorFlow
        vocab = tokenizer.load_vocabulary(
            str(tokenizer.model_path(cfg.data.data_dir, cfg.model.vocab_size))
            if cfg.data.vocab == "builtin" else cfg.data.vocab)
        return cloze.stack(cloze.cloze_rows(cfg.data.data_dir, m.cloze_domain, vocab.encode,
                                            m.reference_len, m.reference_rows))
    if m.reference == "synthetic":
        from data.synthetic import SyntheticMixture
        it = SyntheticMixture(num_domains=cfg.data.num_domains, vocab_size=cfg.model.vocab_size,
                              seq_len=cfg.data.seq_len, global_batch=m.reference_rows,
                              seed=cfg.seed)
        return it.eval_batches(m.reference_rows)[it.domain_names[0]][0]
    raise ValueError(f"config.reweight.mates.reference={m.reference!r} is unknown; use cloze "
                     "(held-out last-word cloze from the corpus) or synthetic (tests)")


def _check(ok: bool, field: str, value: Any, what: str) -> None:
    if not ok:
        raise ValueError(f"config.reweight.mates.{field} must be valid, got {value!r}: {what}")


def make_mates(cfg: ml_collections.ConfigDict) -> MatesSelector:
    return MatesSelector(cfg)

