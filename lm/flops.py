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


# Published dense bf16 peak FLOP/s per chip, matched in order against jax's device_kind.
PEAK_BF16 = (
    ("TPU v6 lite", 918e12), ("TPU v5 lite", 197e12), ("TPU v5", 459e12), ("TPU v4", 275e12),
    ("TPU v3", 123e12), ("TPU v2", 45e12),
    ("B200", 2250e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12),
    ("A100", 312e12), ("L4", 121e12), ("V100", 125e12),
)


def peak_flops(override: float = 0.0, device=None) -> tuple[float, str]:
    """(FLOP/s per device that MFU divides by, where it came from): the config's value if set;
    on a CPU, a matmul measured now; on a known accelerator, its published bf16 peak; on an
    unknown one, a bf16 matmul measured now."""
    if override > 0:
        return override, "config.train.peak_flops"
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return measure_matmul_flops(), "measured f32 matmul"
    for kind, peak in PEAK_BF16:
        if kind.lower() in device.device_kind.lower():
            return peak, f"published bf16 peak of {kind}"
    return measure_matmul_flops(8192, jnp.bfloat16), f"measured bf16 matmul on {device.device_kind}"


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
