"""Online Data Mixing (Albalak et al. 2023): an EXP3 bandit over domains, reward = loss.

Every `update_every` steps (one bandit round t = 1, 2, ...), with pi the weights the round
sampled from and L_i domain i's mean training token loss in the round:

  R_i <- a * R_i + (1 - a) * L_i / pi_i          (domains drawn in the round)
  eps_t = min(1/K, sqrt(ln K / (K t)))
  pi_i  = (1 - K eps_t) * exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t

starting from R = 0, eps_0 = 1/K (so round 1 is uniform). In the paper each step draws ONE
domain; here a round's batches mix domains drawn from pi, and every domain drawn in the round
is rewarded, importance-weighted by 1/pi_i as EXP3 does for the pulled arm. The random draws
are the input mixer's (its RNG is checkpointed); the policy itself is deterministic, and its
state (R, t, pi) is checkpointed.
"""

import math
from typing import Sequence

import ml_collections
import numpy as np

from reweight.interface import MethodEnv, MixturePolicy


def exploration(t: int, k: int) -> float:
    """eps_t; eps_0 = 1/K."""
    return 1.0 / k if t == 0 else min(1.0 / k, math.sqrt(math.log(k) / (k * t)))


class ODM(MixturePolicy):

    def __init__(self, names: Sequence[str], *, smoothing: float = 0.9, update_every: int = 10):
        if not 0.0 <= smoothing < 1.0 or update_every < 1 or len(names) < 2:
            raise ValueError(f"ODM needs 0 <= smoothing < 1, update_every >= 1 and >= 2 domains;"
                             f" got smoothing={smoothing}, update_every={update_every}, "
                             f"domains={list(names)}")
        self.names, self.smoothing, self.update_every = list(names), smoothing, update_every
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
                self.rewards[i] = a * self.rewards[i] + (1.0 - a) * train_loss[n] / self.pi[i]
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
    return ODM(names, smoothing=cfg.reweight.odm.smoothing,
               update_every=cfg.reweight.odm.update_every)
