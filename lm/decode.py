"""Decoding with the training model: greedy (to check answers) or sampled (to look at text).

Fixed shapes so one compilation serves every call: the prompt sits in a [B, L] buffer, each
of the `num_tokens` iterations runs the whole buffer through the model (no KV cache: the
models decoded here are small) and writes each row's next token after its own prompt. Causal
attention keeps the unwritten tail from affecting the result.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("model", "num_tokens", "top_k", "start_id"))
def decode(model: nn.Module, params, tokens_BxL: jax.Array, prompt_len_B: jax.Array,
           num_tokens: int, *, temperature: float | jax.Array = 0.0, top_k: int = 0,
           rng: jax.Array | None = None, start_id: int = 0) -> jax.Array:
    """The `num_tokens` [B, N] tokens decoding appends to each row's prompt.

    tokens_BxL: row b's prompt is tokens_BxL[b, :prompt_len_B[b]] (the rest is ignored); the
    model reads the row shifted right behind the vocabulary's start id, as in training
    (`inputs` = start, t_0, t_1, ..; 0 for the SentencePiece and byte vocabularies), so
    prompt_len + num_tokens must be <= L. temperature 0 is greedy; above 0 each token is
    drawn from softmax(logits / temperature) over the `top_k` most likely (0: all), with a key
    folded from `rng` and the position, so a seed gives the same text every time."""
    batch, length = tokens_BxL.shape
    positions_BxL = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    segments_BxL = jnp.ones((batch, length), jnp.int32)
    inside_BxL = positions_BxL < prompt_len_B[:, None]
    inputs_BxL = jnp.pad(jnp.where(inside_BxL, tokens_BxL, 0), ((0, 0), (1, 0)),
                         constant_values=start_id)[:, :length]
    rows_B = jnp.arange(batch)
    rng = jax.random.key(0) if rng is None else rng
    temperature = jnp.asarray(temperature, jnp.float32)

    def step(n, carry):
        inputs_BxL, out_BxN = carry
        logits_BxLxV = model.apply({"params": params}, inputs_BxL, positions_BxL, segments_BxL)
        at_B = prompt_len_B + n  # the position that predicts token p + n
        logits_BxV = logits_BxLxV[rows_B, at_B].astype(jnp.float32)
        if top_k:
            kth_B = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
            logits_BxV = jnp.where(logits_BxV < kth_B, -jnp.inf, logits_BxV)
        drawn_B = jax.random.categorical(jax.random.fold_in(rng, n),
                                         logits_BxV / jnp.maximum(temperature, 1e-6))
        next_B = jnp.where(temperature > 0, drawn_B, logits_BxV.argmax(-1))
        next_B = next_B.astype(inputs_BxL.dtype)
        inputs_BxL = inputs_BxL.at[rows_B, at_B + 1].set(next_B, mode="drop")
        return inputs_BxL, out_BxN.at[:, n].set(next_B)

    out_BxN = jnp.zeros((batch, num_tokens), tokens_BxL.dtype)
    return jax.lax.fori_loop(0, num_tokens, step, (inputs_BxL, out_BxN))[1]


def greedy_decode(model: nn.Module, params, tokens_BxL: jax.Array, prompt_len_B: jax.Array,
                  num_tokens: int) -> jax.Array:
    """`decode` at temperature 0: each row's argmax continuation."""
    return decode(model, params, tokens_BxL, prompt_len_B, num_tokens)
