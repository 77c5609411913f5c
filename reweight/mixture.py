"""A mixture policy run as a host method: the loss window it is updated from, and its outputs.

`MixtureMethod` sums each training domain's token loss and token count over the steps since
the policy's last update and keeps the latest validation loss per training domain; every
`update_every` steps it hands both to the policy and sends the new weights to the input
pipeline for the very next batch. The window, the latest eval losses and the policy's own
state are its checkpoint item, so a resumed run makes the same updates as an unbroken one.
"""

import os
from typing import Sequence

import numpy as np

from reweight.interface import DomainSums, EvalResult, HostContext, HostMethod, MixturePolicy


class MixtureMethod(HostMethod):
    name = "mixture"

    def __init__(self, policy: MixturePolicy, domain_names: Sequence[str]):
        self.policy, self.names = policy, list(domain_names)
        self.window_loss = np.zeros(len(self.names))
        self.window_tokens = np.zeros(len(self.names))
        self.eval_loss: dict = {}
        self.needs_reference = policy.needs_reference

    def acts_at(self, step: int) -> bool:
        every = self.policy.update_every
        return step == 0 or bool(every and step % every == 0)

    def observe_train(self, step: int, sums: DomainSums) -> None:
        self.window_loss += sums.loss
        self.window_tokens += sums.tokens
        self.policy.observe_train(step, sums)

    def observe_eval(self, result: EvalResult) -> None:
        self.eval_loss = {n: result.loss[n] for n in self.names if n in result.loss}
        self.policy.observe_eval(result.step, self.eval_loss)

    def act(self, ctx: HostContext) -> dict:
        if ctx.step == 0:
            weights = self.policy.initial_weights()
        else:
            train_loss = {n: float(l / t) for n, l, t in
                          zip(self.names, self.window_loss, self.window_tokens) if t > 0}
            weights = self.policy.update(ctx.step, train_loss, self.eval_loss)
            self.window_loss[:] = 0.0
            self.window_tokens[:] = 0.0
        if weights is None:
            return {}
        weights = np.asarray(weights, np.float64)
        ctx.set_weights(weights)
        return {f"mixture/{n}/weight": float(w) for n, w in zip(self.names, weights)}

    def get_state(self) -> dict:
        return {"policy": self.policy.get_state(), "window_loss": self.window_loss.tolist(),
                "window_tokens": self.window_tokens.tolist(), "eval_loss": self.eval_loss}

    def set_state(self, state: dict) -> None:
        self.policy.set_state(state["policy"])
        self.window_loss = np.asarray(state["window_loss"], np.float64)
        self.window_tokens = np.asarray(state["window_tokens"], np.float64)
        self.eval_loss = dict(state["eval_loss"])

    def write_outputs(self, workdir: str) -> None:
        if (weights := self.policy.final_weights()) is not None:
            write_mixture(os.path.join(workdir, "mixture.txt"), self.names, weights)


def write_mixture(path: str, names: Sequence[str], weights: np.ndarray) -> str:
    """Writes "name:w,..." to `path`, which any config loads with data.weights="file:PATH"
    (or a schedule phase "F=file:PATH"); returns the string."""
    text = ",".join(f"{n}:{w:.6g}" for n, w in zip(names, np.asarray(weights, np.float64)))
    with open(path, "w") as f:
        f.write(text + "\n")
    return text
