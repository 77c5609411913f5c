"""Decoder-only Transformer: pre-norm RMSNorm, RoPE, SwiGLU, packed-segment causal attention.

Every parameter and the main activations carry logical axis names; `lm/sharding.py` maps them
onto the mesh with the rules in the config, so this file never mentions devices.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_REMAT_POLICIES = {
    "full": None,  # save nothing, recompute the whole block
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
_ATTENTION = {"auto": None, "xla": "xla", "cudnn": "cudnn"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static model hyper-parameters (hashable, so Flax modules can hold them)."""

    vocab_size: int
    d_model: int
    num_heads: int
    num_layers: int
    mlp_dim: int
    max_len: int
    rope_base: float = 10_000.0
    tie_embeddings: bool = True
    compute_dtype: str = "float32"
    remat: str = "none"
    attention: str = "auto"

    @classmethod
    def from_config(cls, model: ml_collections.ConfigDict) -> "ModelConfig":
        return cls(**{f.name: model[f.name] for f in dataclasses.fields(cls)})

    @property
    def dtype(self):
        return _DTYPES[self.compute_dtype]

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


def _init(stddev: float, names: tuple):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), names)


def _norm(cfg: ModelConfig, name: str) -> nn.RMSNorm:
    return nn.RMSNorm(epsilon=1e-6, dtype=cfg.dtype, param_dtype=jnp.float32, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)))


def apply_rope(x_BxLxNxH: jax.Array, positions_BxL: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding; positions restart per packed segment, so each document
    sees the same positions it would see alone."""
    half = x_BxLxNxH.shape[-1] // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions_BxL[:, :, None, None].astype(jnp.float32) * freq
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    x1, x2 = jnp.split(x_BxLxNxH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxNxH.dtype)


def _weight(module: nn.Module, name: str, shape: tuple, names: tuple, stddev: float, dtype):
    """A float32 parameter with logical axis names, cast to the compute dtype for use."""
    return module.param(name, _init(stddev, names), shape, jnp.float32).astype(dtype)


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD, positions_BxL, mask_Bx1xLxL):
        cfg = self.cfg
        std = cfg.d_model ** -0.5
        shape = (cfg.d_model, cfg.num_heads, cfg.head_dim)
        names = ("act_batch", "act_len", "act_heads", "kv")
        q, k, v = (
            nn.with_logical_constraint(
                jnp.einsum("bld,dnh->blnh", x_BxLxD,
                           _weight(self, n, shape, ("embed", "heads", "kv"), std, cfg.dtype)), names)
            for n in ("query", "key", "value"))
        q = apply_rope(q, positions_BxL, cfg.rope_base)
        k = apply_rope(k, positions_BxL, cfg.rope_base)
        out_BxLxNxH = jax.nn.dot_product_attention(
            q, k, v, mask=mask_Bx1xLxL, is_causal=True, implementation=_ATTENTION[cfg.attention])
        out_BxLxNxH = nn.with_logical_constraint(out_BxLxNxH, names)
        out_std = std / (2 * cfg.num_layers) ** 0.5  # residual-branch scaling (GPT-2)
        w_out = _weight(self, "out", shape, ("embed", "heads", "kv"), out_std, cfg.dtype)
        return jnp.einsum("blnh,dnh->bld", out_BxLxNxH, w_out)


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD):
        cfg = self.cfg
        shape, names, std = (cfg.d_model, cfg.mlp_dim), ("embed", "mlp"), cfg.d_model ** -0.5
        gate = x_BxLxD @ _weight(self, "gate", shape, names, std, cfg.dtype)
        up = x_BxLxD @ _weight(self, "up", shape, names, std, cfg.dtype)
        h_BxLxF = nn.with_logical_constraint(nn.silu(gate) * up, ("act_batch", "act_len", "act_mlp"))
        out_std = cfg.mlp_dim ** -0.5 / (2 * cfg.num_layers) ** 0.5
        return h_BxLxF @ _weight(self, "down", shape, names, out_std, cfg.dtype).T


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD, positions_BxL, mask_Bx1xLxL):
        names = ("act_batch", "act_len", "act_embed")
        h = Attention(self.cfg, name="attn")(_norm(self.cfg, "attn_norm")(x_BxLxD), positions_BxL,
                                             mask_Bx1xLxL)
        x_BxLxD = nn.with_logical_constraint(x_BxLxD + h, names)
        h = Mlp(self.cfg, name="mlp")(_norm(self.cfg, "mlp_norm")(x_BxLxD))
        return nn.with_logical_constraint(x_BxLxD + h, names)


class Decoder(nn.Module):
    """Maps packed token rows to next-token logits (float32): at every position, or with
    `gather_BxK` only at those K positions of each row ([B, K, V]; the unembedding, the largest
    matmul of a small model, then costs K / L of its full price)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, inputs_BxL, positions_BxL, segment_ids_BxL, gather_BxK=None):
        cfg = self.cfg
        embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, param_dtype=jnp.float32,
                         embedding_init=_init(0.02, ("vocab", "embed")), name="embed")
        x_BxLxD = nn.with_logical_constraint(embed(inputs_BxL), ("act_batch", "act_len", "act_embed"))
        # A token attends only within its own packed segment (causality comes from is_causal).
        mask_Bx1xLxL = (segment_ids_BxL[:, None, :, None] == segment_ids_BxL[:, None, None, :])
        block = Block
        if cfg.remat != "none":
            block = nn.remat(Block, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=True)
        for i in range(cfg.num_layers):
            x_BxLxD = block(cfg, name=f"block_{i}")(x_BxLxD, positions_BxL, mask_Bx1xLxL)
        x_BxLxD = _norm(cfg, "final_norm")(x_BxLxD)
        if gather_BxK is not None:  # x_BxLxD is then [B, K, D]
            x_BxLxD = jnp.take_along_axis(x_BxLxD, gather_BxK[..., None], axis=1)
        if cfg.tie_embeddings:
            logits_BxLxV = embed.attend(x_BxLxD)
        else:
            logits_BxLxV = x_BxLxD @ _weight(self, "unembed", (cfg.d_model, cfg.vocab_size),
                                             ("embed", "vocab"), cfg.d_model ** -0.5, cfg.dtype)
        logits_BxLxV = nn.with_logical_constraint(logits_BxLxV, ("act_batch", "act_len", "act_vocab"))
        return logits_BxLxV.astype(jnp.float32)
