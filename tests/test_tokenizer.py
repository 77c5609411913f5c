"""Tests of tokenizer training, caching and round trips on a tiny fixture corpus."""
import json
import os

import pytest

from data import tokenizer as t

TEXTS = {
    "books": ["It is a truth universally acknowledged, that a single man in possession\n"
              "of a good fortune, must be in want of a wife.\n\nChapter 2\n"] * 30,
    "code": ["def add(a, b):\n    \"\"\"Adds two numbers.\"\"\"\n    return a + b  # 12345\n"] * 30,
    "dialogue": ["Hello there!\nHi, how are you doing today?\nFine, thanks.\n"] * 30,
}


@pytest.fixture
def fixture_dir(tmp_path):
    for domain, texts in TEXTS.items():
        directory = tmp_path / "corpus" / domain
        directory.mkdir(parents=True)
        with open(directory / "train-00000-of-00001.jsonl", "w") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"text": text, "source": domain, "id": str(i)}) + "\n")
    return tmp_path


def test_sample_is_equal_per_domain_and_deterministic(fixture_dir):
    sample = list(t.sample_documents(str(fixture_dir), sample_bytes=3000))
    assert sample == list(t.sample_documents(str(fixture_dir), sample_bytes=3000))
    per_domain = {d: sum(s in texts for s in sample) for d, texts in TEXTS.items()}
    assert all(n > 0 for n in per_domain.values())
    assert sum(len(s) for s in sample) < 3000 + 3 * 200


def test_train_roundtrip_and_cache(fixture_dir):
    import sentencepiece as spm

    path = t.train_tokenizer(str(fixture_dir), vocab_size=400, sample_bytes=100_000)
    assert path.endswith("tokenizer/spm_bpe_400.model")
    sp = spm.SentencePieceProcessor(model_file=path)
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert sp.get_piece_size() == 400
    for text in ["def add(a, b):\n    return a + b\n", "Ünïcödé 漢字 and  two  spaces\t\n",
                 "It is a truth universally acknowledged. 2024"]:
        ids = sp.encode(text)
        assert sp.decode(ids) == text
        assert sp.unk_id() not in ids
    assert sp.encode("12345", out_type=str)[-5:] == ["1", "2", "3", "4", "5"]  # split digits
    mtime = os.stat(path).st_mtime_ns
    assert t.train_tokenizer(str(fixture_dir), vocab_size=400) == path
    assert os.stat(path).st_mtime_ns == mtime
    assert json.loads(open(path.replace(".model", ".json")).read())["settings"]["vocab_size"] == 400


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data.corpus"):
        t.train_tokenizer(str(tmp_path), vocab_size=400)
    with pytest.raises(ValueError, match="vocab_size must be > 259"):
        t.train_tokenizer(str(tmp_path), vocab_size=100)


def test_load_vocabulary_through_seqio(fixture_dir):
    path = t.train_tokenizer(str(fixture_dir), vocab_size=400, sample_bytes=100_000)
    vocab = t.load_vocabulary(path)
    text = "def add(a, b):\n    return a + b\n"
    assert vocab.decode(vocab.encode(text)) == text
    assert (vocab.pad_id, vocab.eos_id, vocab.vocab_size) == (0, 1, 400)
    assert type(t.load_vocabulary("byte")).__name__ == "ByteVocabulary"
    with pytest.raises(FileNotFoundError, match="python -m data.tokenizer"):
        t.load_vocabulary(str(fixture_dir / "missing.model"))
