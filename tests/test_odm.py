"""ODM's EXP3 update matches its formula on hand-made losses, and its state round-trips."""

import json
import math

import numpy as np
import pytest

from reweight.odm import ODM, exploration


def test_exploration_rate():
    assert exploration(0, 4) == 0.25 and exploration(1, 4) == 0.25
    assert exploration(100, 4) == pytest.approx(math.sqrt(math.log(4) / 400))


def test_update_matches_exp3():
    names = ["a", "b", "c"]
    p = ODM(names, smoothing=0.5, update_every=5)
    np.testing.assert_allclose(p.initial_weights(), [1 / 3] * 3)
    rewards, pi = np.zeros(3), np.full(3, 1 / 3)
    losses = [{"a": 3.0, "b": 1.0}, {"a": 2.0, "b": 1.0, "c": 0.5}, {"c": 4.0},
              {"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 2.5, "b": 0.5, "c": 1.5}]
    for t, loss in enumerate(losses, start=1):
        for i, n in enumerate(names):
            if n in loss:
                rewards[i] = 0.5 * rewards[i] + 0.5 * loss[n] / pi[i]
        eps, eps_prev = exploration(t + 1, 3), exploration(t, 3)
        e = np.exp(eps_prev * rewards)
        pi = (1 - 3 * eps) * e / e.sum() + eps
        np.testing.assert_allclose(p.update(5 * t, loss, {}), pi)
    assert not np.allclose(pi, 1 / 3)  # past K ln K rounds the bandit exploits
    assert pi.sum() == pytest.approx(1.0) and (pi >= exploration(6, 3) - 1e-12).all()
    q = ODM(names, smoothing=0.5)
    q.set_state(json.loads(json.dumps(p.get_state())))
    np.testing.assert_allclose(q.update(30, {"a": 1.0}, {}), p.update(30, {"a": 1.0}, {}))


def test_smoothed_mean_variant_is_the_reference_update_and_leaves_uniform():
    """alon-albalak/online-data-mixing's SmoothedMeanWeightUpdater: R <- a R + (1 - a) e^L for
    the domains drawn, no importance weight. With fixed losses the hardest domain takes most of
    the weight exploration leaves, where exp3 stays within a few points of uniform."""
    names = ["a", "b", "c", "d", "e", "f"]
    losses = dict(zip(names, [2.5, 3.0, 3.5, 4.0, 4.5, 5.5]))
    smooth = ODM(names, smoothing=0.9, update_every=1, variant="smoothed_mean")
    exp3 = ODM(names, smoothing=0.9, update_every=1)
    rewards = np.zeros(6)
    for t in range(1, 31):
        rewards = 0.9 * rewards + 0.1 * np.exp([losses[n] for n in names])
        e = np.exp(exploration(t, 6) * (rewards - rewards.max()))
        expected = (1 - 6 * exploration(t + 1, 6)) * e / e.sum() + exploration(t + 1, 6)
        np.testing.assert_allclose(smooth.update(t, losses, {}), expected)
        pi_exp3 = exp3.update(t, losses, {})
    cap = 1 - 5 * exploration(31, 6)  # all the weight exploration leaves: 0.51 at round 30
    assert expected[-1] > 0.99 * cap and expected.argmax() == 5
    assert pi_exp3.max() - pi_exp3.min() < 0.07  # measured: [0.138, 0.203]
    with pytest.raises(ValueError, match="variant"):
        ODM(names, variant="smoothed")


def test_bad_settings_fail():
    with pytest.raises(ValueError, match="smoothing"):
        ODM(["a", "b"], smoothing=1.0)
    with pytest.raises(ValueError, match="domains"):
        ODM(["a"])
