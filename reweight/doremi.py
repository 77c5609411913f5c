"""DoReMi (Xie et al. 2023): Group-DRO domain weights driven by excess loss over a reference.

A reference model is trained first on the reference mixture (configs/doremi_reference.py).
While a proxy trains, the domain weights alpha follow

  alpha <- softmax(log alpha + eta * lambda);   alpha <- (1 - c) * alpha + c / K

with lambda_i the excess loss of domain i over the reference, and the result is the mean alpha
over the updates (`final_weights`), which the run writes to its workdir's mixture.txt. Two
forms (config.reweight.doremi.sampling):

- "reference" (the default), the paper's Algorithm 1 as its reference code runs it
  (github.com/sangmichaelxie/doremi, doremi/trainer.py: `DoReMiTrainer.training_step` and
  `.update_domain_weights`). The proxy's batches are drawn from its config.data.weights, p,
  which never changes (uniform by default, as in the paper; see below).
  Inside every step (`DoReMiWeighter`, used in place of config.reweight.instance's weighter),
  on the global batch, the reference model (config.reference.workdir) runs forward and
    lambda_i = sum over domain i's loss tokens of max(l_proxy - l_ref, 0) / their number
  (clipped per token, then averaged), alpha takes one update with it, and the step then
  minimises the alpha-weighted loss on the same batch: each loss token of domain d weighs
  r_d = alpha_d / p_d, normalised over the batch's loss tokens,
    loss = sum_t r_d(t) l_t / sum_t r_d(t),
  the reference code's ratio estimator of sum_i alpha_i L_i. Alpha is the weighter's state in
  the train state (checkpointed); its update costs no host sync. The host keeps the same
  recurrence in float64 from the step's per-domain sums (`DomainSums.excess`, `.tokens`: the
  same clipped sums, so the two agree to float32 rounding) for mixture.txt; the device's alpha
  is logged as weighter/alpha/NAME.
- "alpha", the resampling variant (this project's only form until 2026-12-07): the proxy
  samples its batches from alpha itself, and every `update_every` steps the host updates alpha
  from the steps since the last update. The excess loss comes in two forms (`excess`):
  - "token": the reference model runs forward on the proxy's own batch in the step, and
      lambda_i = sum over domain i's loss tokens since the last update of max(l_proxy - l_ref, 0)
                 / the number of those tokens (the `proxy_alpha` of
                 configs/compare/doremi_planted.py);
  - "domain_mean": the clipped difference of per-domain MEANS, lambda_i = max(L_proxy_i -
    L_ref_i, 0), with L_ref_i the reference's validation loss on i (its eval.json,
    config.reweight.doremi.reference) and L_proxy_i the proxy's mean training token loss on i
    since the last update (configs/doremi_proxy.py); by Jensen it is <= the token form's, and
    needs no reference forward in the step. `signal="eval"` uses the proxy's validation loss
    instead, on exactly the reference's tokens, at eval steps only.
  A domain at alpha ~ c/K is absent from most windows, and its excess stays frozen while it is;
  eta = 1 every 10 steps acts like ~0.1 a step.

Where the reference code and the paper differ, and the choice made here (sampling=reference):
- The sampling mixture: the paper's Algorithm 1 draws the proxy's minibatches uniformly, and
  the reference code's proxy runs sample from their own domain config, uniform
  (configs/pile_uniform.json), while their reference model trained on the baseline
  (token-count) mixture. Here p is the proxy's config.data.weights: uniform unless set (in the
  planted testbed the reference trained on uniform too); the alpha / p weighting, the
  reference code's, keeps the objective right for any p.
- A domain absent from the batch: the paper's lambda is 0/0; the reference code keeps the
  domain's last lambda, starting from ln(vocabulary size). Here it keeps the last lambda too,
  starting from 0: with the testbed's 16-row batches over 7 domains a domain misses the first
  batch in about half the seeds, and ln(V) would then hand it (noise first of all, whose true
  excess is ~0) nearly all the weight; the Pile runs' 512-row batches never miss a domain.
- The loss: the paper minimises sum_i alpha_i * (domain i's mean token loss); the reference
  code weighs tokens by alpha / p, normalised by the weighted token count (above). Here the
  reference code's, which also handles a non-uniform p; both agree in expectation.
- The first alpha: the paper's is uniform, the reference code's the sampling mixture p; here
  p (the same when p is uniform), so every token's first loss weight is 1 (the plain mean).
- When alpha changes: the paper updates alpha on the batch, then takes the step with it. The
  reference code does so on one GPU without accumulation; otherwise the update runs on
  process 0 after the last micro-batch, and the other micro-batches and processes (alpha is a
  model buffer, which DDP broadcasts from process 0 at the next forward) weigh their loss with
  the previous step's alpha, each micro-batch normalised on its own. Here, as the
  paper: alpha from the whole global batch, then the whole batch weighed by it (normalised
  over the whole batch under gradient accumulation, as every weighter here).
- Smoothing: the paper's c = 1e-3 (the reference code's current Pile script passes it too; an
  older 280M script passed 1e-4).
- The output: the paper's mean of alpha_1..alpha_T; the reference code's running mean starts
  its counter at 1, so alpha_0 = p is in it too (1/(T+1) of it). Here the paper's.
"""

import json
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from reweight.interface import DomainSums, MethodEnv, MixturePolicy, PyTree, StepInputs

SAMPLING = ("reference", "alpha")
EXCESS = ("token", "domain_mean")


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.doremi: the policy's settings, each with its default."""
    c = ml_collections.ConfigDict()
    # reference (the paper's: batches from config.data.weights, the loss weighted by alpha / p,
    # alpha updated inside every step) | alpha (batches drawn from alpha, updated on the host)
    c.sampling = "reference"
    # token (the paper's: per-token max(l_proxy - l_ref, 0) on the training batch, a forward of
    # config.reference.workdir in the step) | domain_mean (sampling=alpha: means vs eval.json)
    c.excess = "token"
    c.reference = ""  # excess=domain_mean: the reference run's eval.json
    c.eta = 1.0  # step size of log alpha += eta * excess loss
    c.smoothing = 1e-3  # c: alpha = (1 - c) alpha + c / K
    c.update_every = 1  # steps between updates: 1 (the paper); sampling=alpha may wait (each syncs)
    c.signal = "train"  # sampling=alpha, domain_mean: proxy loss train (since last update) | eval
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.doremi, one message each, building nothing (the
    reference losses file and the sampling mixture are read when the policy is built)."""
    d = cfg.reweight.doremi
    out = _problems(d.eta, d.smoothing, d.update_every, d.signal, d.excess, d.sampling)
    if d.sampling == "reference" and cfg.reweight.instance != "uniform":
        out.append(f"config.reweight.instance={cfg.reweight.instance!r} with config.reweight."
                   "doremi.sampling='reference': the paper form weighs the proxy's loss itself "
                   "in the step (alpha / p per token), in place of an instance weighter; use "
                   "reweight.instance=uniform, or reweight.doremi.sampling=alpha")
    return out


def _problems(eta: float, smoothing: float, update_every: int, signal: str, excess: str,
              sampling: str = "alpha") -> list[str]:
    field, out = "config.reweight.doremi", []
    if not eta > 0:
        out.append(f"{field}.eta must be > 0, got {eta}: the step size of the log weights")
    if not 0.0 <= smoothing <= 1.0:
        out.append(f"{field}.smoothing must be in [0, 1], got {smoothing}: the share of "
                   "uniform mixed into the weights")
    if update_every < 1:
        out.append(f"{field}.update_every must be >= 1 step, got {update_every}")
    if signal not in ("train", "eval"):
        out.append(f"{field}.signal={signal!r}: use train or eval")
    if excess not in EXCESS:
        out.append(f"{field}.excess={excess!r} is unknown: use token (the paper's, a reference "
                   "forward in the step) or domain_mean")
    elif excess == "token" and signal == "eval":
        out.append(f"{field}.signal={signal!r} with excess='token': the per-token excess is "
                   "measured on the training batch; use signal=train")
    if sampling not in SAMPLING:
        out.append(f"{field}.sampling={sampling!r} is unknown: use reference (the paper's: "
                   "batches from data.weights, the loss weighted by alpha in every step) or "
                   "alpha (batches drawn from alpha, updated every update_every steps)")
    elif sampling == "reference":
        if excess != "token":
            out.append(f"{field}.excess={excess!r} with sampling='reference': the paper form "
                       "measures the per-token excess on each training batch in the step; use "
                       "excess=token, or sampling=alpha")
        if update_every != 1:
            out.append(f"{field}.update_every={update_every} with sampling='reference': the "
                       "paper form updates alpha inside every step; use update_every=1, or "
                       "sampling=alpha (batches drawn from alpha, updated every N steps)")
    return out


def load_reference_losses(path: str, names: Sequence[str]) -> np.ndarray:
    """Per-domain reference losses from a JSON file: main.py's eval.json ("eval/NAME/loss")
    or {NAME: loss}."""
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"config.reweight.doremi.reference={path!r} is not a file: train the reference "
            "first (configs/doremi_reference.py) and name its workdir's eval.json")
    with open(path) as f:
        data = json.load(f)
    losses = {n: data.get(f"eval/{n}/loss", data.get(n)) for n in names}
    missing = [n for n, l in losses.items() if l is None]
    if missing:
        raise ValueError(f"reference losses {path} have no loss for domain(s) {missing}: the "
                         "reference must be evaluated on the same training domains")
    return np.asarray([losses[n] for n in names], np.float64)


def batch_excess(excess_sum, tokens, last, xp=np):
    """lambda: each domain's summed clipped excess over its loss tokens; a domain with no
    token keeps `last` (numpy on the host, jax.numpy in the step)."""
    seen = tokens > 0
    return xp.where(seen, excess_sum / xp.where(seen, tokens, 1), last)


def next_alpha(alpha, excess, eta: float, smoothing: float, xp=np):
    """One update: softmax(log alpha + eta * excess), then (1 - c) alpha + c / K."""
    logits = xp.log(alpha) + eta * excess
    a = xp.exp(logits - logits.max())
    a = a / a.sum()
    return (1.0 - smoothing) * a + smoothing / alpha.shape[0]


def sampling_mixture(cfg: ml_collections.ConfigDict, env: MethodEnv) -> np.ndarray:
    """p: the mixture the proxy's batches are drawn from (config.data.weights), every domain's
    weight positive."""
    p = np.asarray(env.weights(cfg.data.weights), np.float64)
    if zero := [n for n, w in zip(env.domain_names, p) if not w > 0]:
        raise ValueError(
            f"config.data.weights={cfg.data.weights!r} gives domain(s) {zero} weight 0: with "
            "config.reweight.doremi.sampling=reference the proxy draws its batches from "
            "data.weights, p, and weighs each domain's loss by alpha / p, so every domain "
            "needs a positive weight (e.g. data.weights=uniform, the paper's)")
    return p


class DoReMiWeighter:
    """The paper form's in-step part (sampling=reference): per-token weights alpha_d / p_d,
    normalised over the batch's loss tokens, with alpha first updated from this batch's
    clipped per-token excess over the reference (see the module docstring). State: alpha and
    each domain's last lambda, float32."""

    needs_losses = True
    needs_reference = True

    def __init__(self, domain_names: Sequence[str], mixture: np.ndarray, *, eta: float = 1.0,
                 smoothing: float = 1e-3):
        self.domain_names = list(domain_names)
        self.p = np.asarray(mixture, np.float64)
        if self.p.shape != (len(self.domain_names),) or not (self.p > 0).all():
            raise ValueError(f"DoReMi's sampling mixture must give each of the "
                             f"{len(self.domain_names)} domains a positive weight, got "
                             f"{self.p.tolist()}")
        self.p = self.p / self.p.sum()
        self.eta, self.smoothing = eta, smoothing

    def init(self) -> PyTree:
        return {"alpha": jnp.asarray(self.p, jnp.float32),
                "excess": jnp.zeros(len(self.domain_names), jnp.float32)}

    def __call__(self, state: PyTree, inputs: StepInputs) -> tuple[jax.Array, PyTree, dict]:
        k = len(self.domain_names)
        mask_BxL = inputs.loss_mask_BxL
        clipped_BxL = jnp.maximum(inputs.token_loss_BxL - inputs.reference_token_loss_BxL,
                                  0.0) * mask_BxL
        excess_K = jax.ops.segment_sum(clipped_BxL.sum(-1), inputs.domain_B, num_segments=k)
        tokens_K = jax.ops.segment_sum(mask_BxL.sum(-1), inputs.domain_B, num_segments=k)
        lam_K = batch_excess(excess_K, tokens_K, state["excess"], xp=jnp)
        alpha_K = next_alpha(state["alpha"], lam_K, self.eta, self.smoothing, xp=jnp)
        ok = jnp.isfinite(lam_K).all()  # a non-finite loss leaves alpha as it was
        alpha_K = jnp.where(ok, alpha_K, state["alpha"])
        lam_K = jnp.where(ok, lam_K, state["excess"])
        ratio_K = alpha_K / jnp.asarray(self.p, jnp.float32)
        w_BxL = ratio_K[inputs.domain_B][:, None] * mask_BxL
        w_BxL = w_BxL / jnp.maximum(w_BxL.sum(), jnp.finfo(jnp.float32).tiny)
        metrics = {f"alpha/{n}": alpha_K[i] for i, n in enumerate(self.domain_names)}
        return w_BxL, {"alpha": alpha_K, "excess": lam_K}, metrics


class DoReMi(MixturePolicy):
    """DoReMi's weights on the host (see the module docstring): with sampling="alpha" the
    policy itself, updated every `update_every` steps and sent to the pipeline; with
    sampling="reference" the host's copy of the step's update, made after every step from its
    per-domain sums (it never acts: the sampling mixture stays `mixture`), for the average."""

    def __init__(self, names: Sequence[str], reference: np.ndarray | None, *, eta: float = 1.0,
                 smoothing: float = 1e-3, update_every: int = 10, signal: str = "train",
                 excess: str = "domain_mean", sampling: str = "alpha",
                 mixture: np.ndarray | None = None):
        if found := _problems(eta, smoothing, update_every, signal, excess, sampling):
            raise ValueError("\n".join(found))
        self.sampling, self.excess_form = sampling, excess
        self.in_step = sampling == "reference"
        self.needs_reference = excess == "token"
        self.names = list(names)
        self.reference = None if reference is None else np.asarray(reference, np.float64)
        self.eta, self.smoothing, self.signal = eta, smoothing, signal
        # sampling=reference: the step updates alpha; the host never acts on the pipeline
        self.update_every = 0 if self.in_step else update_every
        k = len(self.names)
        if self.in_step:
            if mixture is None:
                raise ValueError("DoReMi with sampling='reference' needs the sampling mixture")
            self.alpha = np.asarray(mixture, np.float64) / np.sum(mixture)  # as the step's
        else:
            self.alpha = np.full(k, 1.0 / k)
        self.excess = np.zeros(k)  # each domain's latest lambda
        self.alpha_sum, self.updates = np.zeros(k), 0
        # sampling=alpha, excess="token": the clipped per-token excess and loss tokens since
        # the last update
        self.window_excess, self.window_tokens = np.zeros(k), np.zeros(k)

    def observe_train(self, step: int, sums: DomainSums) -> None:
        if self.needs_reference and sums.excess is None:
            raise ValueError("DoReMi with excess='token' needs the reference model in the "
                             "step, and the step's sums carry no excess")
        if self.in_step:  # the step's own update, on the same sums
            self.excess = batch_excess(np.asarray(sums.excess, np.float64),
                                       np.asarray(sums.tokens, np.float64), self.excess)
            self._take(next_alpha(self.alpha, self.excess, self.eta, self.smoothing))
        elif self.needs_reference:
            self.window_excess += sums.excess
            self.window_tokens += sums.tokens

    def initial_weights(self) -> np.ndarray | None:
        return None if self.in_step else self.alpha  # reference: config.data.weights

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        if self.in_step:
            return None
        if self.needs_reference:
            if not (self.window_tokens > 0).any():
                return None
            self.excess = batch_excess(self.window_excess, self.window_tokens, self.excess)
            self.window_excess[:] = 0.0
            self.window_tokens[:] = 0.0
        else:
            losses = train_loss if self.signal == "train" else eval_loss
            if not losses:
                return None
            for i, n in enumerate(self.names):
                if n in losses:
                    self.excess[i] = max(losses[n] - self.reference[i], 0.0)
        self._take(next_alpha(self.alpha, self.excess, self.eta, self.smoothing))
        return self.alpha

    def _take(self, alpha: np.ndarray) -> None:
        self.alpha = alpha
        self.alpha_sum += self.alpha
        self.updates += 1

    def final_weights(self) -> np.ndarray:
        """The mean alpha over the updates so far: DoReMi's output mixture."""
        return self.alpha_sum / self.updates if self.updates else self.alpha

    def get_state(self) -> dict:
        return {"alpha": self.alpha.tolist(), "excess": self.excess.tolist(),
                "alpha_sum": self.alpha_sum.tolist(), "updates": self.updates,
                "window_excess": self.window_excess.tolist(),
                "window_tokens": self.window_tokens.tolist()}

    def set_state(self, state: dict) -> None:
        self.alpha = np.asarray(state["alpha"], np.float64)
        self.excess = np.asarray(state["excess"], np.float64)
        self.alpha_sum = np.asarray(state["alpha_sum"], np.float64)
        self.updates = int(state["updates"])
        zeros = [0.0] * len(self.names)  # a checkpoint from before the token form
        self.window_excess = np.asarray(state.get("window_excess", zeros), np.float64)
        self.window_tokens = np.asarray(state.get("window_tokens", zeros), np.float64)


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> DoReMi:
    names = list(env.domain_names)
    d = cfg.reweight.doremi
    reference = None if d.excess == "token" else load_reference_losses(d.reference, names)
    # sampling=reference: the in-step part (`weighter`) checks the mixture's weights
    mixture = env.weights(cfg.data.weights) if d.sampling == "reference" else None
    return DoReMi(names, reference, eta=d.eta, smoothing=d.smoothing,
                  update_every=d.update_every, signal=d.signal, excess=d.excess,
                  sampling=d.sampling, mixture=mixture)


def weighter(cfg: ml_collections.ConfigDict, env: MethodEnv) -> DoReMiWeighter | None:
    """The in-step part of sampling=reference (the registry uses it in place of
    config.reweight.instance's weighter); None for sampling=alpha, which weighs nothing."""
    d = cfg.reweight.doremi
    if d.sampling != "reference":
        return None
    return DoReMiWeighter(env.domain_names, sampling_mixture(cfg, env), eta=d.eta,
                          smoothing=d.smoothing)
