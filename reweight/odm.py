"""Online Data Mixing (Albalak et al. 2023): an EXP3 bandit over domains, reward = loss.

Every `update_every` steps (one bandit round t = 1, 2, ...), with pi the weights the round
sampled from and L_i domain i's mean training token loss in the round, for the domains drawn
in the round:

  variant "exp3":           R_i <- a * R_i + (1 - a) * L_i / pi_i
  variant "smoothed_mean":  R_i <- a * R_i + (1 - a) * exp(L_i)
  eps_t = min(1/K, sqrt(ln K / (K t)))
  pi_i  = (1 - K eps_t) * exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t

starting from R = 0, eps_0 = 1/K (so round 1 is uniform; so is every round with eps_t = 1/K,
t <= K ln K: the first 13 rounds for K = 7). "exp3" is the paper's bandit as
written (the importance weight 1/pi_i is EXP3's for the pulled arm); "smoothed_mean" is what
the public repository's README names as the implementation behind the paper's results
(alon-albalak/online-data-mixing, `SmoothedMeanWeightUpdater`, updated every step): no
importance weight, and the reward is the exponentiated loss (the batch's perplexity), so it
is unbounded and the policy leaves uniform fast. With exp3 and a bounded reward, weights stay
near uniform (fixed losses 2.5-5.5 over 6 domains, a = 0.9: within [0.14, 0.21] after 30
rounds, where smoothed_mean gives the hardest domain 0.51, all that exploration leaves).
Either way loss is the reward: a domain that stays hard, pure noise above all, gains weight.
That is a property of the method, not a bug.

In the paper each step draws ONE domain; here a round's batches mix domains drawn from pi, and
every domain drawn in the round is rewarded (update_every=1 updates after every step, as the
reference). The random draws are the input mixer's (its RNG is checkpointed); the policy itself
is deterministic, and its state (R, t, pi) is checkpointed.
"""

import math
from typing import Sequence

import ml_collections
import numpy as np

from reweight.interface import MethodEnv, MixturePolicy


def exploration(t: int, k: int) -> float:
    """eps_t; eps_0 = 1/K."""
    return 1.0 / k if t == 0 else min(1.0 / k, math.sqrt(math.log(k) / (k * t)))


VARIANTS = ("exp3", "smoothed_mean")


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.odm: the policy's settings, each with its default."""
    c = ml_collections.ConfigDict()
    c.smoothing = 0.9  # a: reward R = a R + (1 - a) loss / pi
    c.update_every = 10  # steps per bandit round
    # exp3 (the paper's formula: reward loss / pi) | smoothed_mean (its repository: exp(loss))
    c.variant = "exp3"
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.odm, one message each, building nothing."""
    o = cfg.reweight.odm
    return _problems(o.smoothing, o.update_every, o.variant)


def _problems(smoothing: float, update_every: int, variant: str) -> list[str]:
    field, out = "config.reweight.odm", []
    if not 0.0 <= smoothing < 1.0:
        out.append(f"{field}.smoothing must be in [0, 1), got {smoothing}: the weight of the "
                   "old reward in each update")
    if update_every < 1:
        out.append(f"{field}.update_every must be >= 1 step, got {update_every}")
    if variant not in VARIANTS:
        out.append(f"{field}.variant={variant!r} is unknown; use one of {VARIANTS}")
    return out


class ODM(MixturePolicy):

    def __init__(self, names: Sequence[str], *, smoothing: float = 0.9, update_every: int = 10,
                 variant: str = "exp3"):
        found = _problems(smoothing, update_every, variant)
        if len(names) < 2:
            found.append(f"ODM needs >= 2 training domains to choose among, got {list(names)}")
        if found:
            raise ValueError("\n".join(found))
        self.names, self.smoothing, self.update_every = list(names), smoothing, update_every
        self.variant = variant
        k = len(self.names)
        self.rewards, self.rounds = np.zeros(k), 0
        self.pi = self._policy(1)

    def _policy(self, t: int) -> np.ndarray:
        k = len(self.names)
        eps = exploration(t, k)
        logits = exploration(t - 1, k) * self.rewards
        p = np.exp(logits - logits.max())
        return (1.0 - k * eps) * p / p.sum() + eps

    def initial_weights(self) -> np.ndarray:
        return self.pi

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        a = self.smoothing
        for i, n in enumerate(self.names):
            if n in train_loss:
                reward = (train_loss[n] / self.pi[i] if self.variant == "exp3"
                          else math.exp(train_loss[n]))
                self.rewards[i] = a * self.rewards[i] + (1.0 - a) * reward
        self.rounds += 1
        self.pi = self._policy(self.rounds + 1)
        return self.pi

    def get_state(self) -> dict:
        return {"rewards": self.rewards.tolist(), "rounds": self.rounds, "pi": self.pi.tolist()}

    def set_state(self, state: dict) -> None:
        self.rewards = np.asarray(state["rewards"], np.float64)
        self.rounds = int(state["rounds"])
        self.pi = np.asarray(state["pi"], np.float64)


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> ODM:
    names = list(env.domain_names)
    o = cfg.reweight.odm
    return ODM(names, smoothing=o.smoothing, update_every=o.update_every, variant=o.variant)
