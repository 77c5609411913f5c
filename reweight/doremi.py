"""DoReMi (Xie et al. 2023): Group-DRO domain weights driven by excess loss over a reference.

A reference model is trained first on the reference mixture (configs/doremi_reference.py).
While a proxy trains, every `update_every` steps:

  alpha <- softmax(log alpha + eta * lambda);   alpha <- (1 - c) * alpha + c / K

and the proxy samples its next batches from alpha. The result is the mean alpha over the
updates (`final_weights`), which the run writes to its workdir's mixture.txt. The excess loss
lambda_i of domain i comes in two forms (config.reweight.doremi.excess):
- "token", the paper's: the reference model (config.reference.workdir) runs forward on the
  proxy's own training batch inside the step, and
    lambda_i = sum over domain i's loss tokens since the last update of max(l_proxy - l_ref, 0)
               / the number of those tokens,
  clipped per token before averaging (configs/doremi_token.py). The step's per-domain sums
  carry the clipped excess (`DomainSums.excess`).
- "domain_mean": the clipped difference of per-domain MEANS, lambda_i = max(L_proxy_i -
  L_ref_i, 0), with L_ref_i the reference's validation loss on i (its eval.json,
  config.reweight.doremi.reference) and L_proxy_i the proxy's mean training token loss on i
  since the last update (configs/doremi_proxy.py); by Jensen it is <= the paper's, and needs no
  reference forward in the step (no extra compute). `signal="eval"` uses the proxy's
  validation loss instead, on exactly the reference's tokens, at eval steps only.

Where both depart from the paper:
- alpha changes the proxy's SAMPLING weights (the resampling variant) rather than weighting
  a uniformly sampled batch's loss.
- a domain absent from the window keeps its last excess loss (the paper's per-step batches see
  every domain in expectation; here a domain down-weighted to c/K may miss a window).
"""

import json
import os
from typing import Sequence

import ml_collections
import numpy as np

from reweight.interface import DomainSums, MethodEnv, MixturePolicy

EXCESS = ("token", "domain_mean")


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.doremi: the policy's settings, each with its default."""
    c = ml_collections.ConfigDict()
    # token (the paper's: per-token max(l_proxy - l_ref, 0) on the training batch, a forward of
    # config.reference.workdir in the step) | domain_mean (means vs the reference's eval.json)
    c.excess = "token"
    c.reference = ""  # excess=domain_mean: the reference run's eval.json
    c.eta = 1.0  # step size of log alpha += eta * excess loss
    c.smoothing = 1e-3  # c: alpha = (1 - c) alpha + c / K
    c.update_every = 10  # steps between updates (the paper: 1; each syncs)
    c.signal = "train"  # proxy loss: train (since last update) | eval (latest)
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.doremi, one message each, building nothing (the
    reference losses file is read when the policy is built)."""
    d = cfg.reweight.doremi
    return _problems(d.eta, d.smoothing, d.update_every, d.signal, d.excess)


def _problems(eta: float, smoothing: float, update_every: int, signal: str,
              excess: str) -> list[str]:
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


class DoReMi(MixturePolicy):
    """The DoReMi weight update on host-side per-domain losses (see the module docstring)."""

    def __init__(self, names: Sequence[str], reference: np.ndarray | None, *, eta: float = 1.0,
                 smoothing: float = 1e-3, update_every: int = 10, signal: str = "train",
                 excess: str = "domain_mean"):
        if found := _problems(eta, smoothing, update_every, signal, excess):
            raise ValueError("\n".join(found))
        self.excess_form = excess
        self.needs_reference = excess == "token"
        self.names = list(names)
        self.reference = None if reference is None else np.asarray(reference, np.float64)
        self.eta, self.smoothing, self.update_every, self.signal = (eta, smoothing,
                                                                     update_every, signal)
        k = len(self.names)
        self.alpha = np.full(k, 1.0 / k)
        self.excess = np.zeros(k)  # each domain's latest lambda
        self.alpha_sum, self.updates = np.zeros(k), 0
        # excess="token": the clipped per-token excess and loss tokens since the last update
        self.window_excess, self.window_tokens = np.zeros(k), np.zeros(k)

    def observe_train(self, step: int, sums: DomainSums) -> None:
        if self.needs_reference:
            if sums.excess is None:
                raise ValueError("DoReMi with excess='token' needs the reference model in the "
                                 "step, and the step's sums carry no excess")
            self.window_excess += sums.excess
            self.window_tokens += sums.tokens

    def initial_weights(self) -> np.ndarray:
        return self.alpha

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        if self.needs_reference:
            seen = self.window_tokens > 0
            if not seen.any():
                return None
            self.excess[seen] = self.window_excess[seen] / self.window_tokens[seen]
            self.window_excess[:] = 0.0
            self.window_tokens[:] = 0.0
        else:
            losses = train_loss if self.signal == "train" else eval_loss
            if not losses:
                return None
            for i, n in enumerate(self.names):
                if n in losses:
                    self.excess[i] = max(losses[n] - self.reference[i], 0.0)
        logits = np.log(self.alpha) + self.eta * self.excess
        alpha = np.exp(logits - logits.max())
        alpha /= alpha.sum()
        self.alpha = (1.0 - self.smoothing) * alpha + self.smoothing / len(self.names)
        self.alpha_sum += self.alpha
        self.updates += 1
        return self.alpha

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
    return DoReMi(names, reference, eta=d.eta, smoothing=d.smoothing,
                  update_every=d.update_every, signal=d.signal, excess=d.excess)
