"""Parameter counts, FLOPs per token and the FLOP/s peak that MFU is measured against."""

import time

import jax
import jax.numpy as jnp

from lm.model import ModelConfig


def param_count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), PaLM-style: 6 per matmul
    parameter (the output layer included, tied or not; the embedding lookup excluded) plus
    the attention scores and values, 12 * layers * d_model * seq_len (no causal discount)."""
    d, f, layers = cfg.d_model, cfg.mlp_dim, cfg.num_layers
    matmul_params = layers * (4 * d * d + 3 * d * f) + d * cfg.vocab_size
    return 6.0 * matmul_params + 12.0 * layers * d * seq_len


def measure_matmul_flops(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
    """FLOP/s of one device on a large jitted matmul: the practical peak on a CPU host."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best
