"""What a new user meets first: evaluation on any text needs only the files it reads, extra
eval-only domains, sampling that is seeded and stops at the length asked, and a default run
whose output is the progress, the eval tables and nothing of the libraries' INFO chatter."""

import json
import os

import jax
import pytest

from runs import experiment, sample
from helpers import run_main, tiny_config

NOISE = ("LOG(INFO)", "normalizer.cc", "oneDNN", "cudart_stub", "absl::InitializeLog",
         "read only", "read_only", "save_interval_steps", "I0000")


def _write(path, texts):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    for split, n in (("train", 80), ("validation", 8)):
        _write(str(root / "alpha" / f"{split}.jsonl"),
               [f"the apple and the avocado {i} " * (1 + i % 4) for i in range(n)])
    _write(str(root / "news" / "validation.jsonl"),  # no train split at all
           [f"markets rose on tuesday {i}" for i in range(6)])
    _write(str(root / "bbc" / "sport.jsonl"), [f"the match ended {i} to nil" for i in range(6)])
    return root


def _cfg(corpus, **train):
    cfg = tiny_config(steps=4, checkpoint_every=4, eval_every=4, **train)
    cfg.data.update(source="seqio", vocab="byte", heldout=False, eval_rows=8, seq_len=32,
                    shuffle_buffer_size=16, domains=f"alpha={corpus}/alpha/{{split}}.jsonl")
    cfg.model.update(vocab_size=320, max_len=32)
    return cfg


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    cfg = _cfg(corpus)
    cfg.eval.domains = f"bbc={corpus}/bbc/*.jsonl"  # files as they are: no split in the glob
    scalars = experiment.run(cfg, workdir, devices=jax.devices()[:1])
    return workdir, scalars


def test_eval_only_domains_are_evaluated_in_training_and_need_no_train_split(corpus, trained):
    workdir, scalars = trained
    assert {"eval/alpha/loss", "eval/bbc/loss"} <= set(scalars)
    cfg = _cfg(corpus)
    cfg.data.domains = f"news={corpus}/news/{{split}}.jsonl"  # validation files only
    cfg.eval.domains = f"bbc={corpus}/bbc/*.jsonl"
    result = experiment.run(cfg, workdir, mode="eval", devices=jax.devices()[:1])
    assert {"eval/news/loss", "eval/bbc/loss"} <= set(result)
    with pytest.raises(ValueError, match="no files match .*news/train.jsonl"):  # training needs it
        experiment.build(cfg)


def test_sampling_is_seeded_and_stops_at_the_length_asked(corpus, trained):
    workdir, _ = trained
    cfg = _cfg(corpus)
    cfg.sample.update(prompt="the apple", max_new_tokens=12, temperature=1.0, top_k=20, seed=3)
    first = sample.sample(cfg, workdir, devices=jax.devices()[:1])
    again = sample.sample(cfg, workdir, devices=jax.devices()[:1])
    assert first == again and len(first) == 1 and first[0]["tokens"] <= 12
    cfg.sample.seed = 4
    other = sample.sample(cfg, workdir, devices=jax.devices()[:1])
    assert other[0]["completion"] != first[0]["completion"]
    prompts = os.path.join(workdir, "prompts.txt")
    with open(prompts, "w") as f:
        f.write("the apple\nmarkets\n")
    cfg.sample.update(prompts_file=prompts, temperature=0.0, max_new_tokens=5)
    greedy = sample.sample(cfg, workdir, devices=jax.devices()[:1])
    assert [r["prompt"] for r in greedy] == ["the apple", "markets"]
    assert all(r["tokens"] <= 5 for r in greedy)
    with open(os.path.join(workdir, "samples.jsonl")) as f:
        assert [json.loads(line)["completion"] for line in f] == [r["completion"] for r in greedy]
    cfg.sample.max_new_tokens = 32
    with pytest.raises(ValueError, match="max_new_tokens=32 must be in"):
        sample.sample(cfg, workdir)


def test_a_default_run_prints_no_library_info_lines(corpus, tmp_path):
    """One short run through each noisy path: TensorFlow's import, a SentencePiece pipeline,
    and params loaded from another run's checkpoint (init_from)."""
    import sentencepiece as spm
    texts = [f"the apple and the avocado {i}" for i in range(200)]
    spm.SentencePieceTrainer.train(  # the project's settings: identity normalisation
        sentence_iterator=iter(texts), model_prefix=str(tmp_path / "spm"), vocab_size=300,
        model_type="bpe", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True,
        normalization_rule_name="identity", minloglevel=2)
    pretrained = str(tmp_path / "pretrained")  # init_from needs a run of the same tokenizer
    cfg = _cfg(corpus)
    cfg.data.vocab = str(tmp_path / "spm.model")
    experiment.run(cfg, pretrained, devices=jax.devices()[:1])
    out = run_main(str(tmp_path / "run"), "--config=configs/tiny.py",
                   f"--config.data.domains=alpha={corpus}/alpha/{{split}}.jsonl",
                   f"--config.data.vocab={tmp_path / 'spm.model'}", "--config.data.heldout=False",
                   "--config.data.seq_len=32", "--config.model.vocab_size=320",
                   "--config.model.max_len=32", "--config.model.d_model=32",
                   "--config.model.mlp_dim=64", "--config.model.num_layers=2",
                   "--config.train.steps=2",
                   "--config.train.eval_every=2", "--config.train.batch_size=4",
                   "--config.data.eval_rows=4", "--config.train.peak_flops=1e9",
                   f"--config.init_from={pretrained}")
    text = out.stdout + out.stderr
    assert "eval at step 2" in text and "training" in text, text[-2000:]
    assert not [n for n in NOISE if n in text], [line for line in text.splitlines()
                                                 if any(n in line for n in NOISE)]


def test_plots_label_every_line_and_skip_what_shows_nothing(tmp_path):
    from lm import plots
    lines = [{"step": s, "train/a/loss": 3.0, "train/a/mean_weight": w, "eval/a/loss": 3.0 - s / 10,
              "eval/held/loss": 4.0, "eval/loss": 3.5, "eval/loss_domain_mean": 3.5}
             for s, w in ((1, 1.0), (2, 1.0))]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in lines)
    assert set(plots._series(lines, "eval", "loss")) == {"a", "held"}  # no aggregate line
    assert [os.path.basename(p) for p in plots.plot_run(str(tmp_path))] == ["eval_loss.png"]
    lines[1]["train/a/mean_weight"] = 1.3  # a weighter moved it
    lines[0]["mixture/a/weight"] = 1.0
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in lines)
    assert [os.path.basename(p) for p in plots.plot_run(str(tmp_path))] == [
        "eval_loss.png", "domain_weights.png", "mixture_weights.png"]
