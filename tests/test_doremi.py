"""DoReMi in its two forms. The paper's (sampling=reference, the default): the proxy's batches
are drawn from data.weights whatever alpha does, alpha takes one update in every step from that
step's per-token clipped excess (the hand computation, an absent domain keeping its last), the
step's loss weighs each token by alpha / p normalised over the batch (the hand computation),
the host's copy of alpha matches the step's, and a run resumed from a checkpoint is identical
to an unbroken one. The resampling form (sampling=alpha) is the update as it was before, bit
for bit. The reference losses load from a reference run's eval.json; the averaged alpha is
written for other configs to use; bad settings are named with their fix."""

import functools
import json
import re

import jax
import numpy as np
import pytest

from runs import experiment
from data.mixing import parse_weights
from helpers import Recording, host_methods_of, synthetic, tiny_config, untimed, weighter_of
from lm import loop
from lm import train as train_lib
from lm.metrics import read_metrics
from reweight import doremi
from reweight.doremi import DoReMi, DoReMiWeighter, load_reference_losses
from reweight.interface import DomainSums, Uniform

NAMES = [f"synthetic_{d}" for d in range(3)]


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
    cfg.reweight.doremi.update(sampling="alpha", excess="domain_mean",
                               reference=str(tmp_path / "eval.json"), update_every=2)
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


# The paper's form (sampling=reference).

def test_the_step_updates_alpha_then_weighs_each_token_by_alpha_over_p(one_device):
    """Two steps of the jitted train step against a reference of other params: alpha after
    each, and the step's loss, are the hand computation from that step's per-token losses;
    domain 2 is absent from the second batch and keeps its first lambda."""
    cfg = tiny_config()
    p, eta, c = np.array([0.5, 0.3, 0.2]), 0.7, 0.1
    weighter = DoReMiWeighter(NAMES, p, eta=eta, smoothing=c)
    rt = train_lib.build_runtime(cfg, weighter, 3, one_device)
    step = jax.jit(functools.partial(train_lib.train_step, model=rt.model, tx=rt.tx,
                                     weighter=weighter, num_domains=3,
                                     reference_model=rt.model))
    it = synthetic(cfg)
    batches = [next(it) for _ in range(2)]
    batches[0]["loss_mask"][1, 6:] = 0  # ragged: rows of unequal token counts
    batches[1]["loss_mask"][2, :9] = 0
    batches[0]["domain_id"][:3] = [0, 1, 2]  # every domain in the first batch
    batches[1]["domain_id"][batches[1]["domain_id"] == 2] = 1  # none of domain 2 in the second
    losses = jax.jit(functools.partial(train_lib.token_losses, model=rt.model))
    alpha, lam = p.copy(), np.zeros(3)
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        reference = rt.init_fn(jax.random.key(1)).params
        assert np.array_equal(state.weighter_state["alpha"], p.astype(np.float32))
        for b in batches:
            batch = rt.global_batch(b)
            mine, ref = (np.asarray(losses(params, batch), np.float64)
                         for params in (state.params, reference))
            mask, d = b["loss_mask"].astype(np.float64), b["domain_id"]
            clipped = np.maximum(mine - ref, 0.0) * mask
            for k in range(3):  # lambda: the mean clipped excess over the domain's loss tokens
                if mask[d == k].sum() > 0:
                    lam[k] = clipped[d == k].sum() / mask[d == k].sum()
            alpha = _expected(alpha, lam, eta, c)
            w = (alpha / p)[d][:, None] * mask  # tokens weigh alpha_d / p_d, normalised
            by_hand = (w * mine).sum() / w.sum()
            plain = (mine * mask).sum() / mask.sum()
            assert abs(by_hand - plain) > 1e-4  # the weighting changes the loss
            state, m = step(state, batch, reference)
            np.testing.assert_allclose(state.weighter_state["alpha"], alpha, rtol=1e-5)
            np.testing.assert_allclose(state.weighter_state["excess"], lam, rtol=1e-5)
            np.testing.assert_allclose(m["loss"], by_hand, rtol=1e-5)
            np.testing.assert_allclose(m["weights"], w.sum(-1) / w.sum(), atol=1e-6)
            for k, name in enumerate(NAMES):
                assert float(m[f"weighter/alpha/{name}"]) == pytest.approx(alpha[k], rel=1e-5)
    assert not np.isclose(lam[2], 0.0)  # domain 2's lambda from the first step was kept


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """A reference run of the tiny config, 6 steps on another seed."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    cfg = tiny_config(steps=6, checkpoint_every=6)
    cfg.seed = 7
    experiment.build(cfg).train(workdir, devices=jax.devices()[:1])
    return workdir


def _paper_config(reference, **train):
    cfg = tiny_config(**{"steps": 8, "checkpoint_every": 4, **train})
    cfg.data.weights = "0.6,0.3,0.1"  # the reference mixture p
    cfg.reweight.mixture = "doremi"  # sampling=reference, the default
    cfg.reweight.doremi.eta = 5.0  # alpha moves far from p within the 8 steps
    cfg.reference.workdir = reference
    return cfg


def _train(cfg, workdir):
    """Trains `cfg` in `workdir`; returns (the experiment, each batch's domain ids)."""
    exp = experiment.build(cfg)
    source = Recording(exp.data.source)
    loop.train(cfg, workdir, source=source, eval_sets=exp.data.eval_sets,
               weighter=exp.weighter, methods=exp.methods, devices=jax.devices()[:1],
               references=exp.references)
    return exp, np.stack(source.domains)


def test_the_proxy_samples_from_the_reference_mixture_and_resumes_exactly(reference_run,
                                                                         tmp_path):
    cfg = _paper_config(reference_run)
    exp, domains = _train(cfg, str(tmp_path / "paper"))
    assert isinstance(exp.weighter, DoReMiWeighter) and exp.weighter.needs_reference
    # The batches are those the pipeline draws on the fixed mixture p: alpha never reaches it.
    fixed = _paper_config(reference_run)
    fixed.reweight.mixture = "fixed"
    source = experiment.build(fixed).data.source
    assert np.array_equal(domains, np.stack([next(source)["domain_id"] for _ in range(8)]))
    assert len(set(domains.reshape(-1))) == 3
    # Alpha: one update in every step, away from p; the host's float64 copy follows it.
    metrics = [m for m in read_metrics(str(tmp_path / "paper"))
               if "weighter/alpha/synthetic_0" in m]
    assert [m["step"] for m in metrics] == list(range(1, 9))
    device = np.array([[m[f"weighter/alpha/{n}"] for n in NAMES] for m in metrics])
    assert (np.abs(np.diff(device, axis=0)) > 0).any(axis=1).all()
    assert np.abs(device[-1] - [0.6, 0.3, 0.1]).max() > 0.05
    policy = exp.methods[0].policy
    assert policy.updates == 8 and not exp.methods[0].acts_at(1)  # no host sync in the loop
    np.testing.assert_allclose(policy.alpha, device[-1], rtol=1e-4)
    with open(tmp_path / "paper" / "mixture.txt") as f:  # the mean alpha over the 8 steps
        written = parse_weights(f.read(), NAMES)
    np.testing.assert_allclose(written, device.mean(0), rtol=1e-4)
    # Stopped at its step-4 checkpoint and resumed: the same run, the same mixture.
    for _ in range(2):
        experiment.build(_paper_config(reference_run, run_steps=4)).train(
            str(tmp_path / "resumed"), devices=jax.devices()[:1])
    assert untimed(tmp_path / "resumed") == untimed(tmp_path / "paper")
    assert (tmp_path / "resumed" / "mixture.txt").read_text() == \
        (tmp_path / "paper" / "mixture.txt").read_text()


# The resampling form (sampling=alpha), as it was before the paper's became the default.

def _todays_token_update(alpha, excess, window_excess, window_tokens, eta, c):
    """reweight/doremi.py's token-form update as it stood before the paper form (2026-12)."""
    excess = excess.copy()
    seen = window_tokens > 0
    excess[seen] = window_excess[seen] / window_tokens[seen]
    logits = np.log(alpha) + eta * excess
    a = np.exp(logits - logits.max())
    a /= a.sum()
    return (1.0 - c) * a + c / len(alpha), excess


def test_the_alpha_option_is_the_resampling_form_bit_for_bit():
    cfg = tiny_config()
    cfg.reweight.mixture = "doremi"
    cfg.reweight.doremi.update(sampling="alpha", update_every=10)
    assert isinstance(weighter_of(cfg), Uniform)  # nothing weighs the loss in the step
    (method,) = host_methods_of(cfg)
    assert [s for s in range(31) if method.acts_at(s)] == [0, 10, 20, 30]
    policy = method.policy
    np.testing.assert_array_equal(policy.initial_weights(), np.full(3, 1 / 3))
    rng = np.random.default_rng(0)
    alpha, excess = np.full(3, 1 / 3), np.zeros(3)
    for window in range(6):
        window_excess, window_tokens = np.zeros(3), np.zeros(3)
        for step in range(10):
            tokens = rng.integers(0, 50, 3).astype(np.float64) * (rng.random(3) < 0.7)
            sums = DomainSums(loss=np.zeros(3), tokens=tokens, rows=np.ones(3),
                              weight=np.ones(3), excess=rng.random(3) * tokens)
            policy.observe_train(window * 10 + step, sums)
            window_excess += sums.excess
            window_tokens += sums.tokens
        got = policy.update(window * 10 + 10, {}, {})
        alpha, excess = _todays_token_update(alpha, excess, window_excess, window_tokens, 1.0,
                                             1e-3)
        assert np.array_equal(got, alpha) and np.array_equal(policy.excess, excess)


# Bad settings.

@pytest.mark.parametrize("fields, match", [
    ({"sampling": "resample"}, r"doremi\.sampling='resample' is unknown: use reference"),
    ({"excess": "domain_mean"}, r"doremi\.excess='domain_mean' with sampling='reference'.*use "
                                r"excess=token, or sampling=alpha"),
    ({"update_every": 10}, r"doremi\.update_every=10 with sampling='reference'.*use "
                           r"update_every=1, or sampling=alpha"),
    ({"instance": "rho1"}, r"config\.reweight\.instance='rho1' with config\.reweight\.doremi\."
                           r"sampling='reference'.*use reweight\.instance=uniform"),
    ({"weights": "0.5,0.5,0"}, r"config\.data\.weights='0\.5,0\.5,0' gives domain\(s\) "
                               r"\['synthetic_2'\] weight 0.*every domain needs a positive"),
])
def test_bad_settings_are_named_with_their_fix(fields, match):
    cfg = tiny_config()
    cfg.reweight.mixture = "doremi"
    cfg.reference.workdir = "unused"
    for key, value in fields.items():
        target = {"instance": cfg.reweight, "weights": cfg.data}.get(key, cfg.reweight.doremi)
        target[key] = value
    if "weights" in fields:
        with pytest.raises(ValueError, match=match):
            doremi.weighter(cfg, experiment.Env(cfg))
        return
    (problem,) = doremi.problems(cfg)
    assert re.search(match, problem), problem
