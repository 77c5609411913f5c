"""LEGO written as text (data/lego.py, render "text"), with a tiny SentencePiece BPE trained here
in data/tokenizer.py's settings: rows are their text's tokens and EOS, the loss is on the answer
alone and the answer is right, rows are a function of (seed, skill, index) with the eval rows
never trained on, words rows are as before, bad sizes are refused before any work, and a
continual run starts from the pretrained run's params."""

import hashlib
import json
import os

import jax
import numpy as np
import pytest

from data import lego, vocabulary
from runs import experiment
from helpers import tiny_config

K = 3


def _lines():
    """Text to train the tokenizer on: LEGO examples of every skill, and some prose."""
    gen = lego.Lego(5, "chain", 64, seed=9, eval_examples=1)
    lines = [" ".join(gen.words(3, s, i)[0]) for s in range(1, 6) for i in range(200)]
    return lines + ["It is a truth universally acknowledged, that a single man in possession "
                    "of a good fortune, must be in want of a wife."] * 20


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
    import sentencepiece as spm
    prefix = tmp_path_factory.mktemp("spm") / "lego"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_lines()), model_prefix=str(prefix), model_type="bpe",
        vocab_size=320, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, minloglevel=2, num_threads=1)
    return f"{prefix}.model"


@pytest.fixture(scope="module", params=["spm", "byte"])
def vocab(request, spm_path):
    return vocabulary.load(spm_path if request.param == "spm" else "byte")


def _text(row, vocab):
    """(the row's ids before EOS, its text, the supervised ids' text); checks EOS ends it."""
    n = int(row["segment_ids"].sum())
    ids = row["targets"][:n].tolist()
    assert ids[-1] == vocab.eos_id and row["loss_mask"][n - 1] == 0
    assert row["inputs"][0] == vocab.start_id and row["inputs"][1:n].tolist() == ids[:-1]
    mask = row["loss_mask"][:n] > 0
    start = int(np.argmax(mask))
    assert mask[start:].sum() == mask.sum() == np.flatnonzero(mask)[-1] - start + 1  # one span
    return ids[:-1], vocab.decode(ids[:-1]), vocab.decode(ids[start:start + int(mask.sum())])


@pytest.mark.parametrize("supervision", ["answer", "chain"])
def test_rows_are_the_examples_text_with_the_loss_on_its_answer(vocab, supervision):
    gen = lego.Lego(K, supervision, 96, seed=1, eval_examples=4, render="text", vocab=vocab)
    for s in range(1, K + 1):
        rows = [(gen.train_row(s, i), gen.words(1, s, i)) for i in range(8)]
        rows += [(r, (list(w), 1 if supervision == "answer" else lego.chain_len(s)))
                 for r, w in zip(gen.eval_rows(s), gen._eval[s - 1])]
        for row, (words, supervised) in rows:
            ids, text, answer = _text(row, vocab)
            assert text == " ".join(words)  # the example's text, decoded back
            assert vocab.encode(text) == ids  # tokenized as a whole, as pretraining text is
            # exactly the answer's tokens: the separating space alone is not the answer's
            assert answer.strip() == " ".join(words[-supervised:])
            assert answer in (" ".join(words[-supervised:]), " " + " ".join(words[-supervised:]))
            assert int(row["segment_ids"].sum()) <= lego.seq_len_needed(K, supervision, vocab)


def test_the_answer_is_the_queried_variables_value(vocab):
    """Resolved from the decoded text alone: the answer is the value of the variable asked."""
    gen = lego.Lego(K, "answer", 64, seed=2, eval_examples=4, render="text", vocab=vocab)
    for s in range(1, K + 1):
        for row in [gen.train_row(s, i) for i in range(30)] + gen.eval_rows(s):
            _, text, answer = _text(row, vocab)
            words = text.split()
            assert words[-5:-1] == ["Output:", words[-4], "=", "val"]
            assert lego.resolve(words, words[-4]) == int(answer)
            body = text.split("Input:")[1].split("Output:")[0]
            defs = {c.split()[0]: c.split()[3] for c in body.split(",")}
            var, hops = words[-4], 1
            while defs[var] not in "01":
                var, hops = defs[var], hops + 1
            assert hops == s  # skill s is s hops


def test_rows_are_a_function_of_seed_skill_index_and_eval_rows_never_train(spm_path):
    vocab = vocabulary.load(spm_path)
    make = lambda seed: lego.Lego(K, "answer", 64, seed=seed, eval_examples=50,
                                  render="text", vocab=vocab)
    gen, again, other = make(0), make(0), make(1)
    for s in range(1, K + 1):
        for i in (0, 7, 123):
            for key, value in gen.train_row(s, i).items():
                np.testing.assert_array_equal(value, again.train_row(s, i)[key])
        assert [r["targets"].tolist() for r in gen.eval_rows(s)] == [
            r["targets"].tolist() for r in again.eval_rows(s)]
        assert gen.train_row(s, 3)["targets"].tolist() != other.train_row(s, 3)["targets"].tolist()
        evals = {tuple(r["targets"]) for r in gen.eval_rows(s)}
        train = {tuple(gen.train_row(s, i)["targets"]) for i in range(2000)}
        assert len(evals) == 50 and len(train) > 1900 and not evals & train


@pytest.mark.parametrize("render", ["words", "text"])
def test_sentence_supervision_trains_on_every_token_and_evaluates_the_answer(spm_path, render):
    """The reference trainer's form: the same examples as answer supervision, the loss on
    every token of a training row (its EOS too), and the eval rows exactly answer's."""
    vocab = vocabulary.load(spm_path) if render == "text" else None
    make = lambda supervision: lego.Lego(K, supervision, 64, seed=1, eval_examples=4,
                                         render=render, vocab=vocab)
    sentence, answer = make("sentence"), make("answer")
    for s in range(1, K + 1):
        for i in range(5):
            row, ref = sentence.train_row(s, i), answer.train_row(s, i)
            np.testing.assert_array_equal(row["targets"], ref["targets"])
            np.testing.assert_array_equal(row["loss_mask"], row["segment_ids"] > 0)
            assert ref["loss_mask"].sum() < row["loss_mask"].sum()
        for row, ref in zip(sentence.eval_rows(s), answer.eval_rows(s)):
            for key in row:
                np.testing.assert_array_equal(row[key], ref[key])


def test_words_rows_are_unchanged():
    """A digest of words rows taken from data/lego.py before text rows were added."""
    h = hashlib.sha256()
    for k, supervision, seed in ((5, "answer", 3), (4, "chain", 1)):
        gen = lego.Lego(k, supervision, lego.seq_len_needed(k, supervision) + 2, seed=seed,
                        eval_examples=6)
        rows = [gen.train_row(s, i) for s in range(1, k + 1) for i in range(8)]
        rows += [r for s in range(1, k + 1) for r in gen.eval_rows(s)]
        for row in rows:
            for key in sorted(row):
                h.update(key.encode())
                h.update(np.ascontiguousarray(row[key]).tobytes())
    assert h.hexdigest() == "485b125f72128ba0edfd69df5a6c8d3c672c539e39d1805244614692dea2b56b"
    from configs import base
    assert base.get_config().data.lego_render == "words"


def _config(spm_path, **train):
    c = tiny_config(**train)
    c.model.update(vocab_size=320, max_len=64)
    c.data.update(source="lego", lego_k=K, lego_supervision="answer", lego_render="text",
                  vocab=spm_path, seq_len=48, eval_rows=8)
    return c


def test_a_bad_vocab_size_or_seq_len_is_refused_before_any_work(spm_path, tmp_path):
    need = lego.seq_len_needed(K, "answer", vocabulary.load(spm_path))
    cases = {"model.vocab_size=300 is smaller than the tokenizer": dict(vocab_size=300),
             f"seq_len=16 is too short .* text rows: set it to at least {need}": dict(seq_len=16),
             "spm_bpe_320.model does not exist": dict(vocab="builtin")}
    for message, change in cases.items():
        cfg = _config(spm_path)
        cfg.model.vocab_size = change.get("vocab_size", cfg.model.vocab_size)
        cfg.data.seq_len = change.get("seq_len", cfg.data.seq_len)
        cfg.data.update(vocab=change.get("vocab", cfg.data.vocab), data_dir=str(tmp_path))
        with pytest.raises(ValueError, match=f"(?s)before any work:.*{message}"):
            experiment.run(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
        assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_a_continual_run_starts_from_the_pretrained_params(spm_path, tmp_path, one_device):
    """The eval at step 0 of a run with init_from is the pretrained run's eval on those rows,
    not the eval of the fresh params that the pretrained run started from (same seed)."""
    pretrained = str(tmp_path / "pretrained")
    experiment.run(_config(spm_path, steps=3, eval_at_start=True), pretrained, devices=one_device)
    cont = _config(spm_path, steps=1, eval_at_start=True)
    cont.init_from = pretrained
    expected = experiment.build(cont, train=False).evaluate(pretrained, one_device).loss
    experiment.run(cont, str(tmp_path / "continual"), devices=one_device)

    def first_eval(workdir):
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            evals = [m for m in map(json.loads, f) if "eval/skill_1/loss" in m]
        assert evals[0]["step"] == 0
        return [evals[0][f"eval/{n}/loss"] for n in lego.skill_names(K)]

    got = first_eval(tmp_path / "continual")
    np.testing.assert_allclose(got, [expected[n] for n in lego.skill_names(K)], rtol=1e-5)
    assert not np.allclose(first_eval(pretrained), got, rtol=1e-3)
