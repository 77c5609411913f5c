"""Loss-based reweighting: the formulas on hand-computed batches, their invariances, padding,
warm-up, non-finite losses, validation, and the real jitted step on one device, on a 4x2 mesh
and with gradient accumulation."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base
from helpers import synthetic, tiny_config, weighter_of
from lm import train as train_lib
from reweight import loss_based
from reweight.interface import StepInputs
from reweight.loss_based import LossBased


def _weigh(weighter, losses, valid=None, step=10**6):
    """(weights, metrics) as numpy, through jit like the train step."""
    losses = jnp.asarray(losses, jnp.float32)
    valid = jnp.ones(losses.shape, bool) if valid is None else jnp.asarray(valid)
    inputs = StepInputs(domain_B=jnp.zeros(losses.shape, jnp.int32), valid_B=valid,
                        loss_mask_BxL=valid[:, None].astype(jnp.float32),
                        step=jnp.asarray(step, jnp.int32), rng=jax.random.key(0),
                        example_loss_B=losses)
    w, state, metrics = jax.jit(weighter)(weighter.init(), inputs)
    assert state == ()
    return np.asarray(w), jax.device_get(metrics)


# Losses [1, 2, 3, 5]: l_min 1, l_max 5, h = (2l - 6) / 4 = [-1, -0.5, 0, 1] (d = 1).
LOSSES = [1.0, 2.0, 3.0, 5.0]


def test_linupper_by_hand():
    # f = min(h + 1, 1) = [0, 0.5, 1, 1]; r = 1: w ∝ [1, e^0.5, e, e], sum 8.08528.
    w, m = _weigh(LossBased("linupper", r=1.0), LOSSES)
    np.testing.assert_allclose(w, [0.123681, 0.203916, 0.336201, 0.336201], atol=1e-6)
    np.testing.assert_allclose(m["max_weight_ratio"], np.e, rtol=1e-6)
    np.testing.assert_allclose(m["ess"], 1 / (w**2).sum(), rtol=1e-6)
    np.testing.assert_allclose(m["entropy"], -(w * np.log(w)).sum(), rtol=1e-6)
    assert m["r"] == 1.0 and m["warmup"] == 0 and m["nonfinite_rows"] == 0


def test_quadratic_by_hand():
    # f = 1 - h^2 = [0, 0.75, 1, 0]; r = 1: w ∝ [1, e^0.75, e, 1], sum 6.83528.
    w, m = _weigh(LossBased("quadratic", r=1.0), LOSSES)
    np.testing.assert_allclose(w, [0.146300, 0.309717, 0.397684, 0.146300], atol=1e-6)
    np.testing.assert_allclose(m["max_weight_ratio"], np.e, rtol=1e-6)


def test_extremes_by_hand():
    # f = |h| = [1, 0.5, 0, 1]; r = 0.5: f / r = [2, 1, 0, 2], w ∝ [e^2, e, 1, e^2], sum 18.4963.
    w, m = _weigh(LossBased("extremes", r=0.5), LOSSES)
    np.testing.assert_allclose(w, [0.399486, 0.146963, 0.054065, 0.399486], atol=1e-6)
    np.testing.assert_allclose(m["max_weight_ratio"], np.e**2, rtol=1e-6)


def test_d_scales_the_normalised_range():
    # d = 2: h = [-2, -1, 0, 2]; LinUpper f = min(h + 2, 2) = [0, 1, 2, 2];
    # r = 2: w ∝ e^[0, .5, 1, 1], the d = 1, r = 1 weights.
    w2, _ = _weigh(LossBased("linupper", r=2.0, d=2.0), LOSSES)
    w1, _ = _weigh(LossBased("linupper", r=1.0), LOSSES)
    np.testing.assert_allclose(w2, w1, rtol=1e-6)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_equal_losses_give_uniform_weights(strategy):
    w, m = _weigh(LossBased(strategy, r=0.1), [2.5] * 6)
    np.testing.assert_allclose(w, 1 / 6, rtol=1e-6)
    np.testing.assert_allclose(m["ess_fraction"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["entropy"], np.log(6), rtol=1e-6)
    np.testing.assert_allclose(m["max_weight_ratio"], 1.0)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_invariant_to_shifting_and_scaling_the_losses(strategy):
    losses = np.random.default_rng(0).gamma(2.0, 1.5, size=32)
    weighter = LossBased(strategy, r=0.4)
    w, _ = _weigh(weighter, losses)
    np.testing.assert_allclose(_weigh(weighter, losses + 7.0)[0], w, rtol=1e-4)
    np.testing.assert_allclose(_weigh(weighter, losses * 0.3)[0], w, rtol=1e-4)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)


def test_largest_weight_ratio():
    """e^{d/r} for LinUpper on any batch (its f spans [0, d]); Quadratic's f spans [0, 1], so
    e^{1/r}, and like Extremes (e^{d/r}) only when a row sits at the midpoint loss."""
    d, r = 2.0, 0.5
    losses = np.random.default_rng(1).normal(3.0, 1.0, size=64)
    w, m = _weigh(LossBased("linupper", r=r, d=d), losses)
    np.testing.assert_allclose([w.max() / w.min(), m["max_weight_ratio"]], np.exp(d / r), rtol=1e-5)

    midpoint = [0.0, 0.3, 1.0, 2.0]  # h = [-2, -1.4, 0, 2] with d = 2
    w, m = _weigh(LossBased("quadratic", r=r, d=d), midpoint)
    np.testing.assert_allclose([w.max() / w.min(), m["max_weight_ratio"]], np.exp(1 / r), rtol=1e-5)
    w, m = _weigh(LossBased("extremes", r=r, d=d), midpoint)
    np.testing.assert_allclose([w.max() / w.min(), m["max_weight_ratio"]], np.exp(d / r), rtol=1e-5)

    for strategy in ("quadratic", "extremes"):  # no row at the midpoint: below the bound
        _, m = _weigh(LossBased(strategy, r=r, d=d), [0.0, 0.3, 2.0])
        assert m["max_weight_ratio"] < np.exp(d / r) * 0.99
    w, _ = _weigh(LossBased("extremes", r=r, d=d), [1.0, 4.0, 1.0, 4.0])  # both rows at the ends
    np.testing.assert_allclose(w, 0.25, rtol=1e-6)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_padding_rows_get_zero_weight_and_change_nothing(strategy):
    weighter = LossBased(strategy, r=0.4)
    losses = [2.0, 100.0, 3.0, -5.0, 2.5, 0.0]  # rows 1, 3, 5 have no loss tokens
    valid = [True, False, True, False, True, False]
    w, m = _weigh(weighter, losses, valid)
    alone, m_alone = _weigh(weighter, [2.0, 3.0, 2.5])
    np.testing.assert_array_equal(w[[1, 3, 5]], 0.0)
    np.testing.assert_allclose(w[[0, 2, 4]], alone, rtol=1e-6)
    for k in ("max_weight_ratio", "entropy", "ess", "ess_fraction"):
        np.testing.assert_allclose(m[k], m_alone[k], rtol=1e-6)


def test_no_valid_rows_gives_zero_weights_and_finite_metrics():
    w, m = _weigh(LossBased("linupper", r=0.4), [1.0, 2.0], [False, False])
    np.testing.assert_array_equal(w, 0.0)
    assert all(np.isfinite(v) for v in m.values())


def test_warmup_is_uniform_then_reweights():
    weighter = LossBased("linupper", r=0.4, warmup_steps=5)
    valid = [True, True, False, True]
    for step in (0, 4):
        w, m = _weigh(weighter, LOSSES, valid, step=step)
        np.testing.assert_allclose(w, [1 / 3, 1 / 3, 0, 1 / 3], rtol=1e-6)
        assert m["warmup"] == 1 and m["max_weight_ratio"] == 1
    w, m = _weigh(weighter, LOSSES, valid, step=5)
    assert m["warmup"] == 0 and w[3] > w[1] > w[0]


def test_r_schedules():
    step = LossBased("linupper", r=0.4, r_schedule="step", r_start=100.0, r_schedule_steps=10)
    linear = LossBased("linupper", r=0.4, r_schedule="linear", r_start=2.4, r_schedule_steps=10)
    r_at = lambda wt, s: float(_weigh(wt, LOSSES, step=s)[1]["r"])
    assert [r_at(step, s) for s in (0, 9, 10, 1000)] == pytest.approx([100.0, 100.0, 0.4, 0.4])
    assert [r_at(linear, s) for s in (0, 5, 10, 1000)] == pytest.approx([2.4, 1.4, 0.4, 0.4])
    _, m = _weigh(step, LOSSES, step=0)  # r = 100: nearly uniform, ratio e^{1/100}
    np.testing.assert_allclose(m["max_weight_ratio"], np.exp(0.01), rtol=1e-6)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_nonfinite_rows_get_zero_weight_and_are_counted(strategy):
    weighter = LossBased(strategy, r=0.4)
    w, m = _weigh(weighter, [2.0, np.nan, 3.0, np.inf, 2.5, -np.inf])
    alone, _ = _weigh(weighter, [2.0, 3.0, 2.5])
    np.testing.assert_array_equal(w[[1, 3, 5]], 0.0)
    np.testing.assert_allclose(w[[0, 2, 4]], alone, rtol=1e-6)
    assert m["nonfinite_rows"] == 3
    assert all(np.isfinite(v) for v in m.values())
    # The objective stays non-finite, so the loop's non-finite-loss check still stops the run.
    with np.errstate(invalid="ignore"):
        assert not np.isfinite((w * np.array([2.0, np.nan, 3.0, np.inf, 2.5, -np.inf])).sum())


@pytest.mark.parametrize("kwargs, match", [
    (dict(r=0.0), r"reweight.loss_based.r must be a finite number > 0, got 0.0: r is the "
                  r"softmax temp"),
    (dict(r=-1.0), r"reweight.loss_based.r must be .* got -1.0"),
    (dict(r=float("nan")), r"reweight.loss_based.r must be .* got nan"),
    (dict(d=0.0), r"reweight.loss_based.d must be a finite number > 0, got 0.0"),
    (dict(d=-2.0), r"reweight.loss_based.d must be .* got -2.0"),
    (dict(warmup_steps=-1), r"reweight.loss_based.warmup_steps must be an integer >= 0, got -1"),
    (dict(strategy="linear"), r"strategy='linear' is unknown; choose one of "
                              r"\['extremes', 'linupper', 'quadratic'\]"),
    (dict(strategy="upper"), r"fms-fsdp's `upper` is LinUpper: use linupper"),
    (dict(strategy="mid"), r"`mid` is Quadratic: use quadratic"),
    (dict(r_schedule="cosine"), r"r_schedule='cosine' is unknown; choose one of"),
    (dict(r_schedule="step", r_schedule_steps=0), r"r_schedule_steps must be > 0 with "
                                                  r"r_schedule='step', got 0"),
    (dict(r_schedule="linear", r_start=0.0, r_schedule_steps=5),
     r"reweight.loss_based.r_start must be"),
])
def test_rejects_bad_settings(kwargs, match):
    cfg = base.get_config()
    cfg.reweight.update(instance="loss_based", loss_based=kwargs)
    with pytest.raises(ValueError, match=match):
        weighter_of(cfg)


def test_every_bad_setting_is_named_at_once():
    cfg = base.get_config()
    cfg.reweight.loss_based.update(strategy="mid", r=0.0, r_schedule="step")
    found = loss_based.problems(cfg)
    assert len(found) == 3, found
    assert [f.split(" ")[0].split("=")[0] for f in found] == [
        "config.reweight.loss_based.strategy", "config.reweight.loss_based.r",
        "config.reweight.loss_based.r_schedule_steps"]
    with pytest.raises(ValueError, match=r"strategy='mid'(.|\n)*\.r must(.|\n)*r_schedule_steps"):
        LossBased("mid", r=0.0, r_schedule="step")


@pytest.mark.parametrize("name", ["loss_linupper", "loss_quadratic", "loss_extremes"])
def test_configs_build_their_weighter(name):
    cfg = importlib.import_module(f"configs.{name}").get_config()
    weighter = weighter_of(cfg)
    assert isinstance(weighter, LossBased) and weighter.strategy == name.split("_")[1]
    assert 0 < weighter.warmup_steps < cfg.train.steps // 10


# Through the real jitted step. The weighter has no warm-up so every step reweighs.

def _cfg(**train):
    c = tiny_config(**train)
    c.reweight.update(instance="loss_based", loss_based=dict(strategy="linupper", r=0.4))
    return c


def _batches(cfg, n):
    it = synthetic(cfg)
    batches = [next(it) for _ in range(n)]
    batches[0]["loss_mask"][5] = 0  # one row with no loss tokens: weight 0
    return batches


def _run(cfg, devices, batches, tx=None):
    rt = train_lib.build_runtime(cfg, weighter_of(cfg), cfg.data.num_domains,
                                 devices, tx=tx)
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        before = jax.device_get(state.params)
        metrics = []
        for b in batches:
            state, m = rt.step_fn(state, rt.global_batch(b))
            metrics.append(jax.device_get(m))
    return before, jax.device_get(state.params), metrics, rt


@pytest.fixture(scope="module")
def one_device_run():
    cfg = _cfg()
    batches = _batches(cfg, 2)
    return batches, _run(cfg, jax.devices()[:1], batches)


def _weight_rtol(losses, valid, r=0.4, d=1.0):
    """Min-max normalisation magnifies a loss's float32 rounding (a few ulp, from another
    reduction order) by 2d / (r * loss range): ~60x on these batches, whose losses span ~0.08."""
    spread = losses[valid].max() - losses[valid].min()
    return 1e-5 * max(1.0, 2 * d / (r * spread))


def _assert_same_run(a, b):
    for ma, mb in zip(a[2], b[2]):
        rtol = _weight_rtol(ma["losses"], ma["weights"] > 0)
        np.testing.assert_allclose(ma["weights"], mb["weights"], rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
        np.testing.assert_allclose(ma["weighter/ess"], mb["weighter/ess"], rtol=1e-5)
        np.testing.assert_allclose(ma["grad_norm"], mb["grad_norm"], rtol=1e-4)
    # AdamW's first updates are ~lr * g / |g|: a near-zero gradient entry turns the weights'
    # 1e-4 wobble into ~1e-6 of a 5e-3 update, hence atol 1e-5 (0.2% of one step).
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a[1], b[1])


def test_step_weights_are_the_weighters(one_device_run):
    batches, (_, _, metrics, rt) = one_device_run
    m = metrics[0]
    assert m["weights"][5] == 0 and np.isclose(m["weights"].sum(), 1.0, rtol=1e-6)
    assert m["weights"].max() / m["weights"][m["weights"] > 0].min() == pytest.approx(
        np.exp(1 / 0.4), rel=1e-4)
    for k in ("max_weight_ratio", "entropy", "ess", "ess_fraction", "r", "nonfinite_rows"):
        assert np.isfinite(m[f"weighter/{k}"]), k


def test_4x2_mesh_matches_one_device(one_device_run):
    batches, one = one_device_run
    cfg = _cfg()
    cfg.mesh.shape = (4, 1, 2)
    sharded = _run(cfg, jax.devices()[:8], batches)
    assert sharded[3].mesh.shape == {"data": 4, "fsdp": 1, "model": 2}
    _assert_same_run(one, sharded)


def test_accumulation_matches_one_big_batch(one_device_run):
    batches, one = one_device_run
    _assert_same_run(one, _run(_cfg(microbatches=4), jax.devices()[:1], batches))


def test_gradient_is_that_of_the_weighted_loss_with_weights_held(one_device_run):
    batches, _ = one_device_run
    cfg = _cfg()
    before, after, (m,), rt = _run(cfg, jax.devices()[:1], batches[:1], tx=optax.sgd(1.0))
    grads = jax.tree.map(lambda a, b: a - b, before, after)
    batch = batches[0]
    losses = train_lib.example_losses(before, batch, rt.model)[0]
    valid = jnp.asarray(batch["loss_mask"].sum(-1) > 0)
    w, _ = _weigh(weighter_of(cfg), losses, valid, step=0)
    np.testing.assert_allclose(m["weights"], w, rtol=_weight_rtol(np.asarray(losses), w > 0),
                               atol=1e-7)
    expected = jax.jit(jax.grad(
        lambda p: (w * train_lib.example_losses(p, batch, rt.model)[0]).sum()))(before)
    # before - after loses float32 digits of params ~1 and the weights wobble by ~1e-4 (see
    # _weight_rtol): entries near 0 differ by up to ~2e-6 on this machine's kernels, while the
    # gradient's entries reach ~0.1; atol 1e-5 keeps the check two orders tighter than that.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads,
                 expected)
