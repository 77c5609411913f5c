"""Causality and packing: a token's logits depend only on earlier tokens of its own segment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import model as model_lib
from lm import flops

CFG = model_lib.ModelConfig(vocab_size=50, d_model=32, num_heads=2, num_layers=2, mlp_dim=64,
                            max_len=32)


@pytest.fixture(scope="module")
def model_and_params():
    model = model_lib.Decoder(CFG)
    tokens = jnp.zeros((1, 12), jnp.int32)
    params = model.init(jax.random.key(0), tokens, tokens, tokens)["params"]
    return model, params


def _logits(model, params, tokens, segments, positions):
    as_batch = lambda x: jnp.asarray([x], jnp.int32)
    return np.asarray(model.apply({"params": params}, as_batch(tokens), as_batch(positions),
                                  as_batch(segments))[0])


def test_changing_a_later_token_leaves_earlier_logits(model_and_params):
    model, params = model_and_params
    tokens = list(range(3, 15))
    seg, pos = [1] * 12, list(range(12))
    base = _logits(model, params, tokens, seg, pos)
    changed = _logits(model, params, tokens[:7] + [40] + tokens[8:], seg, pos)
    np.testing.assert_allclose(base[:7], changed[:7], atol=1e-6)
    assert np.abs(base[7:] - changed[7:]).max() > 1e-4  # and the change is seen after it


def test_segments_do_not_see_each_other(model_and_params):
    model, params = model_and_params
    first, second = [5, 6, 7, 8, 9], [20, 21, 22, 23, 24, 25, 26]
    seg = [1] * 5 + [2] * 7
    pos = list(range(5)) + list(range(7))
    packed = _logits(model, params, first + second, seg, pos)
    other_first = _logits(model, params, [30, 31, 32, 33, 34] + second, seg, pos)
    np.testing.assert_allclose(packed[5:], other_first[5:], atol=1e-5)
    # Positions restart per segment, so the second document reads as if it were alone.
    alone = _logits(model, params, second + [0] * 5, [1] * 7 + [0] * 5, list(range(7)) + [0] * 5)
    np.testing.assert_allclose(packed[5:], alone[:7], atol=1e-5)


def test_params_carry_logical_axis_names():
    import flax.linen as nn
    model = model_lib.Decoder(CFG)
    tokens = jnp.zeros((1, 4), jnp.int32)
    boxed = jax.eval_shape(model.init, jax.random.key(0), tokens, tokens, tokens)["params"]
    specs = jax.tree.leaves(nn.get_partition_spec(boxed),
                            is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert specs and all(len(s) > 0 for s in specs)  # every param is named
    assert nn.get_partition_spec(boxed)["embed"]["embedding"] == jax.sharding.PartitionSpec(
        "vocab", "embed")


@pytest.mark.parametrize("tie", [True, False])
def test_bf16_compute_and_untied_output_run(tie):
    cfg = model_lib.ModelConfig(**{**CFG.__dict__, "compute_dtype": "bfloat16",
                                   "tie_embeddings": tie, "remat": "full"})
    model = model_lib.Decoder(cfg)
    tokens = jnp.ones((2, 8), jnp.int32)
    params = model.init(jax.random.key(0), tokens, tokens, tokens)["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    logits = model.apply({"params": params}, tokens, jnp.broadcast_to(jnp.arange(8), (2, 8)), tokens)
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
    assert ("unembed" in params) != tie


def test_flops_per_token_counts_matmuls():
    n_matmul = 2 * (4 * 32 * 32 + 3 * 32 * 64) + 32 * 50
    assert flops.flops_per_token(CFG, 16) == 6 * n_matmul + 12 * 2 * 32 * 16
