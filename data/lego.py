"""LEGO (Zhang et al. 2022), the synthetic skills task of Skill-It: chains of binary variables.

An example has k variables x_1 .. x_k in a chain: `x_1 = val v_1` and, for each child,
`x_i = val x_{i-1}` or `x_i = not x_{i-1}`. Per example the values and operations are fresh
and the names are a random permutation of a-z; the clauses are shuffled and written
`Input: c1 , c2 , ... Output: <x_s> = val <v_s>`. Skill s asks for the depth-s variable, so
it takes exactly s hops through the clauses (skill 1, the root, copies the only digit).

An example is a list of words, one example per row, padded with 0 (how the words become
tokens: `render`, below). Three ways of supervising (`supervision`):
  answer    loss on the answer digit only (Skill-It's evaluation);
  sentence  training rows carry the loss on every token of the example, eval rows on the
            answer alone: Skill-It's reference trainer (HazyResearch/skill-it,
            trainer/utils.py, a causal-LM collator over the whole sentence);
  chain   the output spells the resolution one hop at a time,
          `Output: <x_s> = x_1 v_1 x_1 x_2 op_2 v_2 .. x_{s-1} x_s op_s v_s`, with loss on every
          token after `=`: from the name just written, the name whose clause points to it, that
          clause's `val`/`not`, and the value it gives. Like the original LEGO paper's
          all-variable supervision, every step is one lookup or one XOR. Measured from scratch
          (4 layers x d=64): answer-only loss leaves skills 2-5 at chance for thousands of
          steps, and so does the shorter spelling `x_1 v_1 x_2 v_2 ..` beyond skill 2 (the
          next name is predicted at a value token, so the lookup needs the name from the
          position before: 4000 steps and the name stayed a uniform guess). Repeating the
          previous name makes each lookup's query the current token, and writing the op
          separates the clause lookup from the XOR.
Eval rows carry the loss mask on the same tokens, so the loop's exact-match accuracy is greedy
decoding of the whole answer.

Two ways of writing an example (`render`):
  words   the ids of `VOCAB`, one per word: a model trained from scratch on LEGO alone;
  text    the words joined by single spaces, `Input: d = val 1 , a = not d , ... Output: a =
          val 0`, encoded with a tokenizer of data/vocabulary.py (the run's: a model pretrained
          on text continues on it, Skill-It's LEGO setting) and ended by its EOS. The loss is on
          the answer's tokens: those after the prompt's, where a token that is only the
          separating space ('▁' before a digit split off by the corpus BPE) counts as the
          prompt's, since the format fixes it. As the reference evaluator scores the positions
          where the true and the opposite answer differ (HazyResearch/skill-it,
          evaluator/lego_evaluator.py), the answer's loss is then the digit's negative
          log-likelihood (ln 2 at chance), and exact match is the greedy digit after it.

Rows are a pure function of (seed, stream, skill, index): training streams are counters, the
domain of each row is drawn by `data.mixing.Mixer`, and the validation set (distinct examples,
none of which appears in training) is fixed by the seed. `register_seqio_tasks` exposes the
same rows as one seqio Task per skill.
"""

from __future__ import annotations

import string
from typing import Sequence

import numpy as np

from data.mixing import Mixer, pad_rows, parse_weights, rows_per_process
from data.vocabulary import Vocabulary

VOCAB = ("<pad>", "<eos>", "Input:", "Output:", "=", "val", "not", ",", "0", "1",
         *string.ascii_lowercase)
VOCAB_SIZE = len(VOCAB)
TOKEN = {w: i for i, w in enumerate(VOCAB)}
SUPERVISIONS = ("answer", "sentence", "chain")
RENDERS = ("words", "text")
_TRAIN, _EVAL = 1, 2


def skill_names(k: int) -> list[str]:
    return [f"skill_{s}" for s in range(1, k + 1)]


def seq_len_needed(k: int, supervision: str, vocab: Vocabulary | None = None) -> int:
    """Tokens in the longest row: Input + k clauses of 4 + (k-1) commas + Output + answer.
    With a tokenizer (text rows), a bound: every slot at its longest word (each name as long as
    the longest letter), then EOS. It holds where pieces never cross a space (SentencePiece's
    default, data/tokenizer.py's BPE); a longer row is refused anyway when encoded."""
    if vocab is None:
        prompt = 1 + 4 * k + (k - 1) + 1
        return prompt + 2 + (2 if supervision != "chain" else chain_len(k))
    size = lambda *words: max(len(vocab.encode(" " + w)) for w in words)
    name, digit, op = size(*string.ascii_lowercase), size("0", "1"), size("val", "not")
    clauses = k * (name + size("=") + op + max(name, digit)) + (k - 1) * size(",")
    prompt = len(vocab.encode("Input:")) + clauses + size("Output:") + name + size("=")
    if supervision != "chain":
        return prompt + size("val") + digit + 1
    return prompt + name + digit + (k - 1) * (2 * name + op + digit) + 1


def chain_len(skill: int) -> int:
    """Supervised tokens of a chain answer: the root's name and value, then 4 per hop."""
    return 4 * skill - 2


class Example:
    """One LEGO problem: chain[i] is the name of the depth-(i+1) variable, values[i] its value,
    negate[i] whether its clause is `not` (negate[0] is unused: the root is a digit)."""

    def __init__(self, rng: np.random.Generator, k: int):
        self.chain = [string.ascii_lowercase[i] for i in rng.permutation(26)[:k]]
        self.negate = rng.integers(0, 2, k).astype(bool)
        root = int(rng.integers(0, 2))
        self.values = list(np.bitwise_xor.accumulate(
            np.concatenate([[root], self.negate[1:].astype(int)])).tolist())
        self.order = rng.permutation(k)

    def clauses(self) -> list[list[str]]:
        """The clauses in chain order (the prompt shows them in `self.order`)."""
        out = [[self.chain[0], "=", "val", str(self.values[0])]]
        for i in range(1, len(self.chain)):
            out.append([self.chain[i], "=", "not" if self.negate[i] else "val", self.chain[i - 1]])
        return out

    def words(self, skill: int, supervision: str) -> tuple[list[str], int]:
        """(the example's words, how many of them at the end are supervised)."""
        clauses = self.clauses()
        prompt = ["Input:"]
        for j, c in enumerate(self.order):
            prompt += ([","] if j else []) + clauses[c]
        prompt.append("Output:")
        if supervision != "chain":
            return prompt + [self.chain[skill - 1], "=", "val", str(self.values[skill - 1])], 1
        answer = [self.chain[0], str(self.values[0])]
        for i in range(1, skill):
            answer += [self.chain[i - 1], self.chain[i], "not" if self.negate[i] else "val",
                       str(self.values[i])]
        return prompt + [self.chain[skill - 1], "="] + answer, len(answer)


def resolve(words: Sequence[str], var: str) -> int:
    """The value of `var` by following the clauses of an example's prompt (the reference
    semantics the generator must agree with)."""
    text = " ".join(words)
    body = text.split("Input:")[1].split("Output:")[0]
    defs = {}
    for clause in body.split(","):
        name, _, op, arg = clause.split()
        defs[name] = (op, arg)
    op, arg = defs[var]
    if arg in "01":
        return int(arg)
    return resolve(words, arg) ^ (op == "not")


def encode_row(words: Sequence[str], supervised: int, seq_len: int) -> dict[str, np.ndarray]:
    """One row in the batch format, the last `supervised` words carrying the loss."""
    n = len(words)
    return _row([TOKEN[w] for w in words], n - supervised, n, seq_len)


def encode_text(words: Sequence[str], supervised: int,
                vocab: Vocabulary) -> tuple[list[int], int, int]:
    """(ids, start, stop): the example written as text, its tokens then EOS; the loss is on
    ids[start:stop], the tokens of its last `supervised` words (see the module docstring)."""
    prompt, answer = " ".join(words[:-supervised]), " " + " ".join(words[-supervised:])
    ids = vocab.encode(prompt + answer)
    for head in (prompt + " ", prompt):  # a token that is only the separator is the prompt's
        head_ids = vocab.encode(head)
        if ids[:len(head_ids)] == head_ids and len(head_ids) < len(ids):
            return ids + [vocab.eos_id], len(head_ids), len(ids)
    raise ValueError(f"the tokenizer {vocab!r} writes the answer {answer.strip()!r} in one "
                     "token with the end of the prompt, so its loss cannot be on the answer "
                     "alone: use a tokenizer whose pieces do not cross spaces")


def _row(ids: Sequence[int], start: int, stop: int, seq_len: int,
         start_id: int = 0) -> dict[str, np.ndarray]:
    """`ids` as one row in the batch format, padded with 0, the loss on ids[start:stop]; the
    model reads `start_id` before the first id (the pretraining pipeline's: data/vocabulary)."""
    n = len(ids)
    if n > seq_len:
        raise ValueError(f"a LEGO example needs {n} tokens but data.seq_len={seq_len}: raise "
                         "config.data.seq_len (see data.lego.seq_len_needed)")
    targets = np.zeros(seq_len, np.int32)
    targets[:n] = ids
    inputs = np.concatenate([[start_id], targets[:-1]]).astype(np.int32)
    inputs[n:] = 0
    segment_ids = (np.arange(seq_len) < n).astype(np.int32)
    loss_mask = np.zeros(seq_len, np.float32)
    loss_mask[start:stop] = 1.0
    return {"inputs": inputs, "targets": targets, "segment_ids": segment_ids,
            "positions": np.arange(seq_len, dtype=np.int32) * segment_ids,
            "loss_mask": loss_mask}


def check_fields(k: int, supervision: str, render: str) -> None:
    """Raises on a bad k, supervision or render, naming the value and the choices."""
    if not 1 <= k <= 26:
        raise ValueError(f"LEGO needs 1 <= k <= 26 variables (names are a-z), got k={k}")
    if supervision not in SUPERVISIONS:
        raise ValueError(f"LEGO supervision={supervision!r} is unknown; use one of "
                         f"{SUPERVISIONS}")
    if render not in RENDERS:
        raise ValueError(f"LEGO render={render!r} is unknown; use one of {RENDERS}")


class Lego:
    """Generates rows of every skill for one (k, supervision, seq_len, seed, render); `vocab`
    is the tokenizer of text rows (unused by words)."""

    def __init__(self, k: int = 5, supervision: str = "answer", seq_len: int = 32,
                 seed: int = 0, eval_examples: int = 100, render: str = "words",
                 vocab: Vocabulary | None = None):
        check_fields(k, supervision, render)
        if render == "text" and vocab is None:
            raise ValueError("LEGO render='text' needs the tokenizer (vocab) to encode with")
        self.vocab = vocab if render == "text" else None
        self.vocab_size = VOCAB_SIZE if self.vocab is None else self.vocab.vocab_size
        need = seq_len_needed(k, supervision, self.vocab)
        if seq_len < need:
            raise ValueError(f"data.seq_len={seq_len} is too short for LEGO with k={k}, "
                             f"{supervision} supervision and {render} rows: set it to at least "
                             f"{need}")
        self.k, self.supervision, self.seq_len, self.seed = k, supervision, seq_len, seed
        self.domain_names = skill_names(k)
        # The validation set: distinct examples per skill, excluded from training.
        self._eval: list[list[tuple]] = []
        self._held: list[set] = []
        for s in range(1, k + 1):
            examples, seen, index = [], set(), 0
            while len(examples) < eval_examples:
                words = tuple(self.words(_EVAL, s, index)[0])
                index += 1
                if words not in seen:
                    seen.add(words)
                    examples.append(words)
            self._eval.append(examples)
            self._held.append(seen)

    def words(self, stream: int, skill: int, index: int) -> tuple[list[str], int]:
        rng = np.random.default_rng([self.seed, stream, skill, index])
        return Example(rng, self.k).words(skill, self.supervision)

    def train_row(self, skill: int, index: int) -> dict[str, np.ndarray]:
        """Row `index` of skill's training stream; a draw that is a validation example is
        replaced by the next draw of the same generator."""
        rng = np.random.default_rng([self.seed, _TRAIN, skill, index])
        while True:
            words, supervised = Example(rng, self.k).words(skill, self.supervision)
            if tuple(words) not in self._held[skill - 1]:
                return self.row(words, supervised, whole=self.supervision == "sentence")

    def eval_rows(self, skill: int) -> list[dict[str, np.ndarray]]:
        supervised = chain_len(skill) if self.supervision == "chain" else 1
        return [self.row(w, supervised) for w in self._eval[skill - 1]]

    def row(self, words: Sequence[str], supervised: int,
            whole: bool = False) -> dict[str, np.ndarray]:
        """An example's row, rendered as this generator's `render` says; the loss on its last
        `supervised` words, or on every token (and the text's EOS) with `whole`."""
        if self.vocab is None:
            return encode_row(words, len(words) if whole else supervised, self.seq_len)
        ids, start, stop = encode_text(words, supervised, self.vocab)
        return _row(ids, 0 if whole else start, len(ids) if whole else stop, self.seq_len,
                    self.vocab.start_id)


class SkillStream:
    """A skill's endless training rows; process p of P reads rows p, p+P, p+2P, ...
    State: the number of rows handed out."""

    def __init__(self, lego: Lego, skill: int, shard_index: int = 0, shard_count: int = 1):
        self.lego, self.skill = lego, skill
        self.shard_index, self.shard_count = shard_index, shard_count
        self.rows = 0

    def __next__(self) -> dict[str, np.ndarray]:
        row = self.lego.train_row(self.skill, self.rows * self.shard_count + self.shard_index)
        self.rows += 1
        return row

    def get_state(self) -> dict:
        return {"kind": "lego", "rows": self.rows}

    def set_state(self, state: dict) -> None:
        self.rows = int(state["rows"])


def make_train_iter(lego: Lego, *, global_batch: int, weights="uniform", seed: int = 0,
                    process_index: int = 0, process_count: int = 1) -> Mixer:
    """Skills mixed by the host mixer (weights: see data.mixing.parse_weights)."""
    streams = [SkillStream(lego, s, process_index, process_count)
               for s in range(1, lego.k + 1)]
    return Mixer(streams, lego.domain_names, global_batch=global_batch,
                 weights=parse_weights(weights, lego.domain_names), seed=seed,
                 process_index=process_index, process_count=process_count)


def make_eval_batches(lego: Lego, *, global_batch: int, max_rows_per_skill: int | None = None,
                      process_index: int = 0, process_count: int = 1) -> dict:
    """{skill name: this process's rows of the global eval batches}; the last batch of a skill
    is padded with loss_mask-0 rows."""
    b = rows_per_process(global_batch, process_count)
    out = {}
    for s, name in enumerate(lego.domain_names, start=1):
        rows = lego.eval_rows(s)[:max_rows_per_skill]
        batches = []
        for start in range(0, len(rows), global_batch):
            mine = pad_rows(rows[start + process_index * b:start + (process_index + 1) * b],
                            b, lego.seq_len)
            batch = {key: np.stack([r[key] for r in mine]) for key in mine[0]}
            batch["domain_id"] = np.full(b, s - 1, np.int32)
            batches.append(batch)
        out[name] = batches
    return out


def register_seqio_tasks(lego: Lego, prefix: str = "lego") -> list[str]:
    """One seqio Task per skill over the same rows (train: endless stream of the skill;
    validation: its fixed set); features are the batch keys, already tokenized and padded.
    Returns the task names. Imports TensorFlow and seqio, so it is not called by training."""
    import seqio
    import tensorflow as tf

    keys = ("inputs", "targets", "segment_ids", "positions", "loss_mask")
    signature = {k: tf.TensorSpec([lego.seq_len], tf.float32 if k == "loss_mask" else tf.int32)
                 for k in keys}
    vocab = seqio.PassThroughVocabulary(lego.vocab_size)
    features = {k: seqio.Feature(vocab, add_eos=False, dtype=signature[k].dtype,
                                 required=k != "loss_mask") for k in keys}
    names = []
    for s in range(1, lego.k + 1):
        def dataset_fn(split, shuffle_files, seed=None, skill=s):
            del shuffle_files, seed  # rows are a function of (config seed, skill, index)
            if split == "validation":
                rows = lego.eval_rows(skill)
                gen = lambda: iter(rows)
            else:
                stream = SkillStream(lego, skill)
                gen = lambda: (next(stream) for _ in iter(int, 1))
            return tf.data.Dataset.from_generator(gen, output_signature=signature)

        text = "" if lego.vocab is None else f"_text_{lego.vocab.kind}{lego.vocab.sha256[:12]}"
        name = (f"{prefix}_k{lego.k}_{lego.supervision}_l{lego.seq_len}_s{lego.seed}{text}"
                f"_skill{s}")
        if name not in seqio.TaskRegistry.names():
            seqio.TaskRegistry.add(name, seqio.FunctionDataSource(
                dataset_fn, splits=("train", "validation")), output_features=features)
        names.append(name)
    return names
