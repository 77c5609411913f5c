"""EleutherAI lm-evaluation-harness's model API (`lm_eval.api.model.LM`, lm-eval 0.4) over
this project's model: loglikelihood, loglikelihood_rolling and generate_until.

It scores the way lm-eval's own Hugging Face model does (`lm_eval/models/huggingface.py`), so
numbers are comparable with published ones: a context's trailing spaces move to the
continuation; the pair is encoded whole and the continuation is what follows the context's
own encoding; a row longer than `max_length` keeps its last tokens (truncated from the left);
rolling log-likelihoods use lm-eval's disjoint windows (`lm_eval.utils
.get_rolling_token_windows`). The "prefix token" lm-eval puts before an empty context is this
model's start input (the vocabulary's `start_id`: 0 for SentencePiece and bytes, BOS or EOS
for a Hugging Face tokenizer), the input every training document starts from.

Speed: requests are sorted by length, cut into batches of `batch_size` rows, and each batch is
padded to a length bucket (`bucket`: under 25% padding, a few shapes to compile); the logits
are taken only at the scored positions (`Decoder`'s `gather_BxK`), so a multiple-choice row
costs the blocks' forward, not the unembedding of every position; batch i+1 is dispatched
before batch i's scores are fetched. Batches are sharded over the run's mesh like training
batches; every process holds all requests and feeds its share of each batch's rows, and every
process gets every score.
"""

from __future__ import annotations

import functools
from typing import Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from lm_eval import utils as lm_eval_utils
from lm_eval.api.model import LM
from lm_eval.models import utils as model_utils

from lm import decode as decode_lib
from lm import sharding
from lm import train as train_lib

START = 0  # the start input of vocabularies without a `start_id` (seqio's)


class Vocabulary(Protocol):
    """What the adapter needs of a tokenizer (a seqio vocabulary has it; data/vocabulary.py's
    also say their `start_id`)."""
    eos_id: int

    def encode(self, text: str) -> Sequence[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def bucket(n: int, cap: int, smallest: int = 16) -> int:
    """The padded length of a batch whose longest row has `n` tokens, at most `cap`: `n`
    rounded up to a multiple of an eighth of its next power of two, so each doubling of length
    has four shapes (64 < n <= 128: 80, 96, 112, 128) and padding stays under 25%."""
    if n <= smallest:
        return min(smallest, cap)
    step = max(1, (1 << (n - 1).bit_length()) // 8)
    return min(-(-n // step) * step, cap)


def scored_bucket(n: int, width: int) -> int:
    """The scored positions a batch gathers when its longest continuation has `n` tokens: a
    power of two (the gather is cheap, so fewer shapes win), at most the batch's width."""
    return min(1 << (n - 1).bit_length(), width)


def _row_scores(params, batch: dict, *, model):
    """Per row: the log-likelihood summed over its scored tokens, and whether greedy decoding
    gives every one of them."""
    logits_BxKxV = model.apply({"params": params}, batch["inputs"], batch["positions"],
                               batch["segment_ids"], batch["gather"])
    logprob_BxK = -optax.softmax_cross_entropy_with_integer_labels(logits_BxKxV,
                                                                   batch["targets"])
    mask_BxK = batch["mask"]
    greedy_BxK = (logits_BxKxV.argmax(-1) == batch["targets"]) | ~mask_BxK
    return jnp.where(mask_BxK, logprob_BxK, 0.0).sum(-1), greedy_BxK.all(-1)


class HarnessLM(LM):
    """A run's params as an lm-eval model. `rt` is the run's runtime (its model, mesh and
    shardings); `params` may be replaced between evaluations (the in-loop hook does)."""

    def __init__(self, rt: train_lib.Runtime, params, vocab: Vocabulary, *, max_length: int,
                 batch_size: int, seed: int = 0):
        super().__init__()
        try:  # the rows split evenly over the batch's shards and the processes
            rt.batch_shard.shard_shape((batch_size,))
            fits = batch_size % jax.process_count() == 0
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"config.eval.harness.batch_size={batch_size} must be a multiple "
                             f"of the data-parallel size and of the {jax.process_count()} "
                             "process(es)")
        self.rt, self.params, self.vocab = rt, params, vocab
        self.max_length, self.batch_size, self.seed = max_length, batch_size, seed
        self.start = getattr(vocab, "start_id", START)  # lm-eval's prefix_token_id
        self._score = jax.jit(functools.partial(_row_scores, model=rt.model),
                              in_shardings=(jax.tree.map(lambda a: a.sharding,
                                                         rt.abstract.params), rt.batch_shard),
                              out_shardings=jax.sharding.NamedSharding(
                                  rt.mesh, jax.sharding.PartitionSpec()))

    # Tokens.

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: the continuation's tokens are what the whole text's encoding adds
        to the context's (so a token spanning the boundary goes to the continuation)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = list(self.vocab.encode(context + continuation))
        context_ids = list(self.vocab.encode(context))
        return whole[:len(context_ids)], whole[len(context_ids):]

    # Scoring.

    def score(self, items: Sequence[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """(log-likelihood, greedy) of each item (stream, n): `stream` is the model's input
        stream (its first token an input only, e.g. START), the last `n` of its tokens are
        scored; a stream longer than `max_length` + 1 keeps its end."""
        length = self.max_length
        for stream, n in items:
            if n > length:
                raise ValueError(f"a continuation of {n} tokens is longer than the harness's "
                                 f"context, config.eval.harness.max_length={length}: raise it "
                                 "(up to model.max_len) or drop the task")
        out: list = [(0.0, True) if n == 0 else None for _, n in items]  # empty: log 1
        order = sorted((i for i in range(len(items)) if items[i][1]),
                       key=lambda i: -len(items[i][0]))
        count, index = jax.process_count(), jax.process_index()
        local = self.batch_size // count
        pending = None  # (rows, device scores) of the batch dispatched last

        def fetch(pending):
            chosen, scores = pending
            logprob_B, greedy_B = jax.device_get(scores)
            for row, i in enumerate(chosen):
                out[i] = (float(logprob_B[row]), bool(greedy_B[row]))

        with self.rt.context():
            for start in range(0, len(order), self.batch_size):
                chosen = order[start:start + self.batch_size]
                windows = [items[i][0][-(length + 1):] for i in chosen]
                width = bucket(max(len(w) - 1 for w in windows), length)
                k = scored_bucket(max(items[i][1] for i in chosen), width)
                batch = {"inputs": np.zeros((self.batch_size, width), np.int32),
                         "positions": np.zeros((self.batch_size, width), np.int32),
                         "segment_ids": np.zeros((self.batch_size, width), np.int32),
                         "gather": np.zeros((self.batch_size, k), np.int32),
                         "targets": np.zeros((self.batch_size, k), np.int32),
                         "mask": np.zeros((self.batch_size, k), bool)}
                for row, (i, w) in enumerate(zip(chosen, windows)):
                    n, m = items[i][1], len(w) - 1
                    batch["inputs"][row, :m] = w[:-1]
                    batch["positions"][row, :m] = np.arange(m)
                    batch["segment_ids"][row, :m] = 1
                    batch["gather"][row, :n] = np.arange(m - n, m)
                    batch["targets"][row, :n] = w[-n:]
                    batch["mask"][row, :n] = True
                mine = {key: v[index * local:(index + 1) * local] for key, v in batch.items()}
                scores = self._score(self.params, sharding.to_global(mine, self.rt.batch_shard,
                                                                     self.batch_size))
                if pending is not None:
                    fetch(pending)
                pending = (chosen, scores)
            if pending is not None:
                fetch(pending)
        return out

    # lm-eval's API.

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        items = []
        for request in requests:
            context, continuation = request.args
            if context:
                context_ids, continuation_ids = self._encode_pair(context, continuation)
            else:  # lm-eval: the continuation alone, after the prefix token
                context_ids, continuation_ids = [], list(self.vocab.encode(continuation))
            items.append(([self.start, *context_ids, *continuation_ids],
                          len(continuation_ids)))
        results = self.score(items)
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        items, owner = [], []
        for r, request in enumerate(requests):
            (text,) = request.args
            for context, continuation in map(
                    lm_eval_utils.make_disjoint_window, lm_eval_utils.get_rolling_token_windows(
                        list(self.vocab.encode(text)), prefix_token=self.start,
                        max_seq_len=self.max_length, context_len=1)):
                items.append(([*context, *continuation], len(continuation)))
                owner.append(r)
        totals = [0.0] * len(requests)
        for r, (logprob, _) in zip(owner, self.score(items)):
            totals[r] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or, with do_sample, sampled) text until a stop sequence, the end of a
        document or `max_gen_toks`, through `lm.decode` (no KV cache: each new token runs the
        whole buffer, fine for the models trained here, slow for long generations)."""
        out: list = [None] * len(requests)
        groups: dict = {}
        for r, request in enumerate(requests):
            context, gen_kwargs = request.args
            kwargs = model_utils.normalize_gen_kwargs(dict(gen_kwargs))
            key = (kwargs["max_gen_toks"], float(kwargs.get("temperature") or 0.0))
            groups.setdefault(key, []).append((r, context, kwargs["until"]))
        count, index = jax.process_count(), jax.process_index()
        local = self.batch_size // count
        with self.rt.context():
            for (max_new, temperature), members in groups.items():
                max_new = min(max_new, self.max_length - 1)
                room = self.max_length - max_new
                encoded = [list(self.vocab.encode(c))[-room:] for _, c, _ in members]
                width = min(self.max_length, bucket(max(map(len, encoded)) + max_new,
                                                    self.max_length))
                for start in range(0, len(members), self.batch_size):
                    part = encoded[start:start + self.batch_size]
                    tokens = np.zeros((self.batch_size, width), np.int32)
                    lengths = np.zeros((self.batch_size,), np.int32)
                    for row, ids in enumerate(part):
                        tokens[row, :len(ids)], lengths[row] = ids, len(ids)
                    local_rows = {"tokens": tokens[index * local:(index + 1) * local],
                                  "lengths": lengths[index * local:(index + 1) * local]}
                    rows = sharding.to_global(local_rows, self.rt.batch_shard, self.batch_size)
                    new = np.asarray(jax.device_get(decode_lib.decode(
                        self.rt.model, self.params, rows["tokens"], rows["lengths"], max_new,
                        temperature=temperature, start_id=self.start,
                        rng=jax.random.fold_in(jax.random.key(self.seed), start))))
                    for row, (r, _, until) in enumerate(members[start:start + len(part)]):
                        out[r] = self._text(new[row].tolist(), until)
                        self.cache_hook.add_partial("generate_until", requests[r].args, out[r])
        return out

    def _text(self, ids: list[int], until: Sequence[str]) -> str:
        """Generated ids as text, cut at the end of the document and the first stop sequence."""
        if self.vocab.eos_id in ids:
            ids = ids[:ids.index(self.vocab.eos_id)]
        text = self.vocab.decode(ids)
        for stop in until:
            if stop and stop in text:
                text = text[:text.index(stop)]
        return text

