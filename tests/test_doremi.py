"""DoReMi's update matches its formula on hand-made losses; the reference losses load from a
reference run's eval.json; the averaged alpha is written for other configs to use."""

import json

import jax
import numpy as np
import pytest

from runs import experiment
from data.mixing import parse_weights
from helpers import tiny_config
from lm.metrics import read_metrics
from reweight.doremi import DoReMi, load_reference_losses


def _expected(alpha, excess, eta, c):
    a = alpha * np.exp(eta * excess)
    return (1 - c) * a / a.sum() + c / len(alpha)


def test_update_matches_the_formula():
    names = ["a", "b", "c"]
    p = DoReMi(names, np.array([1.0, 2.0, 3.0]), eta=0.5, smoothing=0.1, update_every=1)
    np.testing.assert_allclose(p.initial_weights(), [1 / 3] * 3)
    w1 = p.update(1, {"a": 2.0, "b": 1.5, "c": 4.0}, {})
    excess1 = np.array([1.0, 0.0, 1.0])  # max(l_proxy - l_ref, 0)
    np.testing.assert_allclose(w1, _expected(np.full(3, 1 / 3), excess1, 0.5, 0.1))
    w2 = p.update(2, {"a": 1.0, "b": 2.5}, {})  # c not drawn: keeps its last excess (1.0)
    np.testing.assert_allclose(w2, _expected(w1, np.array([0.0, 0.5, 1.0]), 0.5, 0.1))
    np.testing.assert_allclose(p.final_weights(), (w1 + w2) / 2)
    q = DoReMi(names, np.array([1.0, 2.0, 3.0]), eta=0.5, smoothing=0.1)
    q.set_state(json.loads(json.dumps(p.get_state())))
    np.testing.assert_allclose(q.final_weights(), p.final_weights())
    assert p.update(3, {"a": 9.0}, {}) is not None and q.update(3, {"a": 9.0}, {}) is not None
    np.testing.assert_allclose(p.alpha, q.alpha)


def test_eval_signal_and_bad_settings(tmp_path):
    p = DoReMi(["a", "b"], np.array([1.0, 1.0]), eta=1.0, smoothing=0.0, signal="eval")
    assert p.update(10, {"a": 5.0}, {}) is None  # no evaluation yet
    w = p.update(20, {"a": 5.0}, {"a": 1.0, "b": 1.0 + np.log(3.0)})
    np.testing.assert_allclose(w, [0.25, 0.75])
    with pytest.raises(ValueError, match="eta"):
        DoReMi(["a", "b"], np.zeros(2), eta=0.0)
    with pytest.raises(FileNotFoundError, match="doremi.reference"):
        load_reference_losses(str(tmp_path / "none.json"), ["a"])
    (tmp_path / "eval.json").write_text(json.dumps({"eval/a/loss": 2.0, "b": 3.0}))
    np.testing.assert_allclose(load_reference_losses(str(tmp_path / "eval.json"), ["a", "b"]),
                               [2.0, 3.0])
    with pytest.raises(ValueError, match=r"\['c'\]"):
        load_reference_losses(str(tmp_path / "eval.json"), ["a", "c"])


def test_proxy_trains_against_reference_losses_and_logs_weights(tmp_path):
    reference = {f"eval/synthetic_{d}/loss": 3.0 + d for d in range(3)}  # as in eval.json
    (tmp_path / "eval.json").write_text(json.dumps(reference))
    cfg = tiny_config(steps=6)
    cfg.reweight.mixture = "doremi"
    cfg.reweight.doremi.update(excess="domain_mean", reference=str(tmp_path / "eval.json"),
                               update_every=2)
    exp = experiment.build(cfg)
    exp.train(str(tmp_path / "proxy"), devices=jax.devices()[:1])
    policy = exp.methods[0].policy
    logged = [m for m in read_metrics(str(tmp_path / "proxy")) if "mixture/synthetic_0/weight" in m]
    assert [m["step"] for m in logged] == [0, 2, 4, 6]
    assert policy.updates == 3 and policy.final_weights().sum() == pytest.approx(1.0)
    assert policy.final_weights().argmax() == 0  # the domain furthest above its reference
    with open(tmp_path / "proxy" / "mixture.txt") as f:  # written through the host method
        np.testing.assert_allclose(parse_weights(f.read(), exp.data.domain_names),
                                   policy.final_weights(), rtol=1e-5)
