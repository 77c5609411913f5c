"""The training loop on the seqio pipeline: per-domain eval, and a resume through the checkpoint
that sees the same batches as an unbroken run."""

import json
import os

import jax
import pytest

from data import sources
from runs import experiment
from helpers import tiny_config, untimed
from lm.metrics import read_metrics

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    words = {"alpha": "apple avocado apricot", "beta": "blue berry banana bread"}
    for name, text in words.items():
        os.makedirs(root / name)
        for split, n in (("train", 60), ("validation", 6)):
            with open(root / name / f"{split}-00000.jsonl", "w") as f:
                for i in range(n):
                    f.write(json.dumps({"text": f"{text} {i} " * (1 + i % 5)}) + "\n")
    return root


def _cfg(corpus, **train):
    cfg = tiny_config(steps=6, checkpoint_every=3, eval_every=3, **train)
    cfg.data.update(source="seqio", vocab="byte", heldout=False, eval_rows=8, seq_len=32,
                    shuffle_buffer_size=16,
                    domains=",".join(f"{n}={corpus}/{n}/{{split}}-*.jsonl" for n in ("alpha", "beta")))
    cfg.model.update(vocab_size=320, max_len=32)
    return cfg


def _train(cfg, workdir):
    return experiment.build(cfg).train(workdir, devices=jax.devices()[:1]).eval.scalars()


def test_seqio_training_evaluates_per_domain_and_resumes_exactly(corpus, tmp_path):
    straight = _train(_cfg(corpus), str(tmp_path / "a"))
    assert set(straight) >= {"eval/alpha/loss", "eval/beta/loss", "eval/loss"}
    assert os.path.getsize(tmp_path / "a" / "eval_loss.png") > 1000
    assert not os.path.exists(tmp_path / "a" / "domain_weights.png")  # uniform: nothing to show
    last = read_metrics(str(tmp_path / "a"))[-2]  # the last train line (an eval line follows)
    assert last["train/alpha/mean_weight"] == pytest.approx(1.0)  # uniform
    _train(_cfg(corpus, run_steps=3), str(tmp_path / "b"))
    resumed = _train(_cfg(corpus), str(tmp_path / "b"))  # fresh pipeline, restored state
    assert resumed == straight
    assert untimed(str(tmp_path / "a")) == untimed(str(tmp_path / "b"))


def test_a_tokenizer_larger_than_the_model_vocab_is_rejected(corpus):
    cfg = _cfg(corpus)
    cfg.model.vocab_size = 100
    with pytest.raises(ValueError, match="config.model.vocab_size"):
        sources.build_data(cfg)


def test_the_corpus_fingerprint_is_of_the_files_contents(corpus, tmp_path):
    """eval.json names the corpus a run read: the same files copied elsewhere give the same
    fingerprint, one changed byte another."""
    import shutil
    cfg = _cfg(corpus)
    cfg.train.update(steps=2, eval_every=0, checkpoint_every=2)
    result = experiment.run(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    with open(tmp_path / "run" / "eval.json") as f:
        recorded = json.load(f)
    fp = sources.source_of(cfg).fingerprint()
    assert recorded["corpus/fingerprint"] == result["corpus/fingerprint"] == fp["fingerprint"]
    assert fp["files"] == 4 and fp["bytes"] == sum(
        os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(corpus) for n in ns)
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    moved = _cfg(copy)
    assert sources.source_of(moved).fingerprint() == fp
    with open(copy / "beta" / "validation-00000.jsonl", "rb+") as f:
        f.write(b'{"text": "Blue')  # same size, other bytes
    assert sources.source_of(moved).fingerprint()["fingerprint"] != fp["fingerprint"]
    synthetic = tiny_config()
    assert sources.source_of(synthetic).fingerprint() is None  # generated: no files


def test_bits_per_byte_is_nats_per_token_times_tokens_over_bytes(corpus, tmp_path):
    """On a known text, with one token a byte: bits per byte = loss x tokens / (bytes x ln 2),
    the tokens being the text's bytes and one EOS a document."""
    import math
    cfg = _cfg(corpus)
    cfg.train.update(steps=2, eval_every=0, checkpoint_every=2)
    cfg.data.eval_rows = 64  # every validation document
    exp = experiment.build(cfg)
    result = exp.train(str(tmp_path / "run"), devices=jax.devices()[:1]).eval
    for name in ("alpha", "beta"):
        with open(corpus / name / "validation-00000.jsonl") as f:
            texts = [json.loads(line)["text"] for line in f]
        size = sum(len(t.encode("utf-8")) for t in texts)
        assert exp.data.eval_bytes[name] == size
        expected = result.loss[name] * (size + len(texts)) / (size * math.log(2))
        assert result.bits_per_byte[name] == pytest.approx(expected, rel=1e-5)
        assert result.scalars()[f"eval/{name}/bits_per_byte"] == result.bits_per_byte[name]
    assert experiment.build(tiny_config()).data.eval_bytes == {}  # generated: no text
