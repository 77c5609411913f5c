"""A mixture policy run as a host method: its weights apply from the next batch, it sees
per-domain losses, and its state and inputs resume exactly."""

import jax
import numpy as np
import pytest

from helpers import Recording, host_methods_of, synthetic, tiny_config, untimed
from lm import loop
from lm.metrics import read_metrics
from reweight.interface import MixturePolicy, Uniform
from reweight.mixture import MixtureMethod


class ChaseHighestLoss(MixturePolicy):
    """Every 2 steps, all weight on the domain whose training loss was highest."""
    update_every = 2

    def __init__(self, names):
        self.names, self.calls = names, []

    def update(self, step, train_loss, eval_loss):
        self.calls.append((step, dict(train_loss), dict(eval_loss)))
        w = np.zeros(len(self.names))
        w[self.names.index(max(train_loss, key=train_loss.get))] = 1.0
        return w

    def get_state(self):
        return {"updates": len(self.calls)}

    def set_state(self, state):
        self.calls = [None] * state["updates"]


def _run(workdir, **train):
    cfg = tiny_config(steps=8, checkpoint_every=4, eval_every=4, **train)
    it = Recording(synthetic(cfg))
    policy = ChaseHighestLoss(it.domain_names)
    loop.train(cfg, workdir, source=it, eval_sets=it.it.eval_batches(4), weighter=Uniform(),
               methods=[MixtureMethod(policy, it.domain_names)], devices=jax.devices()[:1])
    return it, policy


def test_policy_weights_apply_from_the_next_batch(tmp_path):
    it, policy = _run(str(tmp_path))
    assert [c[0] for c in policy.calls] == [2, 4, 6, 8]
    assert policy.calls[0][2] == {} and set(policy.calls[2][2]) == set(it.domain_names)  # evals
    assert len(set(np.concatenate(it.domains[:2]).tolist())) > 1  # uniform before step 2
    for k, call in enumerate(policy.calls[:-1]):
        chosen = it.domain_names.index(max(call[1], key=call[1].get))
        after = it.domains[call[0]:call[0] + 2]  # the two batches after the update
        assert all((d == chosen).all() for d in after), (k, chosen, after)
    logged = [m for m in read_metrics(str(tmp_path)) if "mixture/synthetic_0/weight" in m]
    assert [m["step"] for m in logged] == [2, 4, 6, 8]
    assert (tmp_path / "mixture_weights.png").stat().st_size > 1000


def test_resume_mid_window_is_exact(tmp_path):
    straight, _ = _run(str(tmp_path / "a"))
    _run(str(tmp_path / "b"), run_steps=3)  # stops between updates, window half full
    resumed, policy = _run(str(tmp_path / "b"))
    assert len(policy.calls) == 4  # 1 restored + 3 made after the resume
    assert untimed(str(tmp_path / "a")) == untimed(str(tmp_path / "b"))
    for a, b in zip(straight.domains[3:], resumed.domains):
        np.testing.assert_array_equal(a, b)


def test_default_policy_is_fixed_and_unknown_names_fail():
    cfg = tiny_config()
    assert host_methods_of(cfg) == []  # fixed: the data config's weights, no host method
    cfg.reweight.mixture = "nope"
    with pytest.raises(ValueError, match="config.reweight.mixture"):
        host_methods_of(cfg)
