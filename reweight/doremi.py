"""DoReMi (Xie et al. 2023): Group-DRO domain weights driven by excess loss over a reference.

A reference model is trained first on the reference mixture (configs/doremi_reference.py); its
per-domain validation losses (the `eval.json` main.py writes) are the reference losses. While a
proxy trains (configs/doremi_proxy.py), every `update_every` steps:

  lambda_i = max(L_proxy_i - L_ref_i, 0)
  alpha <- softmax(log alpha + eta * lambda);   alpha <- (1 - c) * alpha + c / K

and the proxy samples its next batches from alpha. The result is the mean alpha over the
updates (`final_weights`), which the run writes to its workdir's mixture.txt.

Where this departs from the paper (a mixture policy sees per-domain means, not tokens):
- lambda_i is the clipped difference of per-domain MEANS (the proxy's mean training token loss
  on domain i since the last update, minus the reference model's mean validation loss on i),
  not the mean over tokens of the clipped per-token difference on the same tokens; by Jensen
  it is <= the paper's. `signal="eval"` uses the proxy's validation loss instead, on exactly
  the reference's tokens, at eval steps only.
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

from reweight.interface import MethodEnv, MixturePolicy


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

    def __init__(self, names: Sequence[str], reference: np.ndarray, *, eta: float = 1.0,
                 smoothing: float = 1e-3, update_every: int = 10, signal: str = "train"):
        if eta <= 0 or not 0.0 <= smoothing <= 1.0 or update_every < 1:
            raise ValueError(f"DoReMi needs eta > 0, 0 <= smoothing <= 1, update_every >= 1; got "
                             f"eta={eta}, smoothing={smoothing}, update_every={update_every}")
        if signal not in ("train", "eval"):
            raise ValueError(f"config.reweight.doremi.signal={signal!r}: use train or eval")
        self.names, self.reference = list(names), np.asarray(reference, np.float64)
        self.eta, self.smoothing, self.update_every, self.signal = (eta, smoothing,
                                                                     update_every, signal)
        k = len(self.names)
        self.alpha = np.full(k, 1.0 / k)
        self.excess = np.zeros(k)  # each domain's latest lambda
        self.alpha_sum, self.updates = np.zeros(k), 0

    def initial_weights(self) -> np.ndarray:
        return self.alpha

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
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
                "alpha_sum": self.alpha_sum.tolist(), "updates": self.updates}

    def set_state(self, state: dict) -> None:
        self.alpha = np.asarray(state["alpha"], np.float64)
        self.excess = np.asarray(state["excess"], np.float64)
        self.alpha_sum = np.asarray(state["alpha_sum"], np.float64)
        self.updates = int(state["updates"])


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> DoReMi:
    names = list(env.domain_names)
    d = cfg.reweight.doremi
    return DoReMi(names, load_reference_losses(d.reference, names), eta=d.eta,
                  smoothing=d.smoothing, update_every=d.update_every, signal=d.signal)
