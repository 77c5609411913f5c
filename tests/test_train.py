"""The train step: loss falls, per-example and per-token weights act as specified, the weighter
sees the step's inputs, accumulation and sharding change nothing but speed."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import synthetic, tiny_config
from lm import train as train_lib
from reweight.interface import Uniform


class Fixed:
    """Given weights, whatever the losses."""
    needs_losses = False

    def __init__(self, w):
        self.w = jnp.asarray(w, jnp.float32)

    def init(self):
        return ()

    def __call__(self, state, inputs):
        return self.w, state, {}


class SoftmaxOfLoss:
    """Weights that depend on the whole global batch's losses (like the loss-based methods)."""
    needs_losses = True

    def init(self):
        return jnp.zeros((), jnp.int32)

    def __call__(self, state, inputs):
        w = jax.nn.softmax(inputs.example_loss_B / 0.5)
        return w, state + 1, {"max_w": w.max()}


class TokenMean:
    """Per-token weights: every loss token alike, so the objective is the batch's token mean."""
    needs_losses = True

    def init(self):
        return ()

    def __call__(self, state, inputs):
        mask = inputs.loss_mask_BxL
        return mask / mask.sum(), state, {}


class RandomTokens:
    """Per-token weights on a random half of the tokens, drawn from the step's RNG; the state
    records every step's draw, so a test can read what the weighter saw."""
    needs_losses = False

    def init(self):
        return {"seen_steps": jnp.zeros(4, jnp.int32), "draws": jnp.zeros(4)}

    def __call__(self, state, inputs):
        keep = jax.random.bernoulli(inputs.rng, 0.5, inputs.loss_mask_BxL.shape)
        w = keep * inputs.loss_mask_BxL
        i = inputs.step % 4
        state = {"seen_steps": state["seen_steps"].at[i].set(inputs.step),
                 "draws": state["draws"].at[i].set(jax.random.uniform(inputs.rng))}
        return w / w.sum(), state, {}


def _runtime(cfg, weighter, devices, tx=None):
    return train_lib.build_runtime(cfg, weighter, cfg.data.num_domains, devices, tx=tx)


def _run(rt, batches):
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        metrics = []
        for b in batches:
            state, m = rt.step_fn(state, rt.global_batch(b))
            metrics.append(jax.device_get(m))
        return jax.device_get(state), metrics


def _batches(cfg, n):
    it = synthetic(cfg)
    return [next(it) for _ in range(n)]


def test_loss_falls(one_device):
    cfg = tiny_config(steps=40, lr=1e-2)
    _, metrics = _run(_runtime(cfg, Uniform(), one_device), _batches(cfg, 40))
    first, last = np.mean([m["loss"] for m in metrics[:5]]), np.mean([m["loss"] for m in metrics[-5:]])
    assert last < first - 0.3, (first, last)


def _sgd_grads(cfg, weighter, devices, batch):
    """Gradient of one step, read off plain SGD with lr 1: params - new params."""
    rt = _runtime(cfg, weighter, devices, tx=optax.sgd(1.0))
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        before = jax.device_get(state.params)
        new, m = rt.step_fn(state, rt.global_batch(batch))
    return jax.tree.map(lambda a, b: a - b, before, jax.device_get(new.params)), before, rt


def test_uniform_weights_give_the_mean_loss_gradient(one_device):
    cfg = tiny_config()
    batch = _batches(cfg, 1)[0]
    grads, params, rt = _sgd_grads(cfg, Uniform(), one_device, batch)
    mean_loss = lambda p: train_lib.example_losses(p, batch, rt.model)[0].mean()
    expected = jax.jit(jax.grad(mean_loss))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected)


def test_one_hot_weights_give_that_example_gradient_alone(one_device):
    cfg = tiny_config()
    batch = _batches(cfg, 1)[0]
    w = np.zeros(cfg.train.batch_size, np.float32)
    w[3] = 1.0
    grads, params, rt = _sgd_grads(cfg, Fixed(w), one_device, batch)
    row = jax.tree.map(lambda x: x[3:4], batch)
    expected = jax.jit(jax.grad(lambda p: train_lib.example_losses(p, row, rt.model)[0].sum()))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected)


def test_uniform_token_weights_give_the_token_mean_gradient(one_device):
    cfg = tiny_config()
    batch = _batches(cfg, 1)[0]
    batch["loss_mask"][2, 5:] = 0  # rows of unequal token counts: token mean != row mean
    grads, params, rt = _sgd_grads(cfg, TokenMean(), one_device, batch)

    def token_mean(p):
        _, loss_sum, tokens = train_lib.example_losses(p, batch, rt.model)
        return loss_sum.sum() / tokens.sum()

    expected = jax.jit(jax.grad(token_mean))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected)


def test_the_weighter_rng_is_folded_with_the_step_and_its_state_carries(one_device):
    cfg = tiny_config()
    batches = _batches(cfg, 3)
    state, metrics = _run(_runtime(cfg, RandomTokens(), one_device), batches)
    assert state.weighter_state["seen_steps"].tolist() == [0, 1, 2, 0]
    draws = state.weighter_state["draws"][:3]
    assert len(set(draws.tolist())) == 3  # a fresh key each step
    again, _ = _run(_runtime(cfg, RandomTokens(), one_device), batches)  # same seed, same draws
    np.testing.assert_array_equal(again.weighter_state["draws"], state.weighter_state["draws"])
    for m in metrics:  # row weights are the per-token weights summed over the row
        np.testing.assert_allclose(m["weights"].sum(), 1.0, rtol=1e-5)


def test_gradient_treats_weights_as_constants(one_device):
    """With loss-dependent weights the gradient is that of sum(w * l) with w held fixed."""
    cfg = tiny_config()
    batch = _batches(cfg, 1)[0]
    grads, params, rt = _sgd_grads(cfg, SoftmaxOfLoss(), one_device, batch)
    losses = train_lib.example_losses(params, batch, rt.model)[0]
    w = jax.nn.softmax(losses / 0.5)
    expected = jax.jit(jax.grad(
        lambda p: (w * train_lib.example_losses(p, batch, rt.model)[0]).sum()))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected)


@pytest.mark.parametrize("weighter", [Uniform(), SoftmaxOfLoss(), TokenMean()],
                         ids=["uniform", "loss-based", "per-token"])
def test_accumulation_equals_one_big_batch(one_device, weighter):
    batches = _batches(tiny_config(), 3)
    big_state, big_m = _run(_runtime(tiny_config(), weighter, one_device), batches)
    acc_state, acc_m = _run(_runtime(tiny_config(microbatches=4), weighter, one_device), batches)
    for a, b in zip(big_m, acc_m):
        np.testing.assert_allclose(a["weights"], b["weights"], rtol=1e-5)
        np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 big_state.params, acc_state.params)
    assert jax.tree.leaves(acc_state.weighter_state) == jax.tree.leaves(big_state.weighter_state)


@pytest.mark.parametrize("weighter", [Uniform(), SoftmaxOfLoss()], ids=["uniform", "loss-based"])
def test_4x2_mesh_matches_one_device(one_device, weighter):
    batches = _batches(tiny_config(), 3)
    one_state, one_m = _run(_runtime(tiny_config(), weighter, one_device), batches)
    cfg = tiny_config()
    cfg.mesh.shape = (4, 1, 2)
    rt = _runtime(cfg, weighter, jax.devices()[:8])
    assert rt.mesh.shape == {"data": 4, "fsdp": 1, "model": 2}
    sharded_state, sharded_m = _run(rt, batches)
    for a, b in zip(one_m, sharded_m):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
        np.testing.assert_allclose(a["weights"], b["weights"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 one_state.params, sharded_state.params)


def test_params_are_sharded_by_the_rules():
    cfg = tiny_config()
    cfg.mesh.shape = (2, 2, 2)
    rt = _runtime(cfg, Uniform(), jax.devices()[:8])
    mlp = rt.abstract.params["block_0"]["mlp"]["gate"]
    assert mlp.sharding.spec == jax.sharding.PartitionSpec("fsdp", "model")
    assert rt.batch_shard.spec == jax.sharding.PartitionSpec(("data", "fsdp"))


def test_per_domain_sums_add_up(one_device):
    cfg = tiny_config()
    _, (m,) = _run(_runtime(cfg, Uniform(), one_device), _batches(cfg, 1))
    assert m["domain_tokens"].sum() == m["tokens"] == cfg.train.batch_size * cfg.data.seq_len
    np.testing.assert_allclose(m["domain_loss_sum"].sum() / m["tokens"], m["token_loss"], rtol=1e-5)
    np.testing.assert_allclose(m["domain_weight_sum"].sum(), 1.0, rtol=1e-6)


def test_schedules():
    cfg = tiny_config(steps=100, warmup_steps=10, lr=1.0)
    cos = train_lib.make_schedule(cfg.train)
    assert float(cos(0)) == 0.0 and abs(float(cos(10)) - 1.0) < 1e-6
    assert abs(float(cos(100)) - cfg.train.min_lr_ratio) < 1e-6
    cfg.train.update(schedule="wsd", decay_fraction=0.2)
    wsd = train_lib.make_schedule(cfg.train)
    assert float(wsd(50)) == 1.0 and float(wsd(80)) == 1.0 and float(wsd(100)) == 0.0
    assert 0 < float(wsd(90)) < 1
