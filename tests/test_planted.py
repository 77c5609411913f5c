"""Planted domains are deterministic, do what their names say, and read as ordinary domains;
unigram entropy is the entropy of the token frequencies."""

import collections
import json
import math

import numpy as np
import pytest

from data import domains, planted, unigram


def _corpus(root, domain, split, docs):
    path = root / "corpus" / domain / f"{split}-00000-of-00001.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    for domain in ("books", "math"):
        for split, n in (("train", 200), ("validation", 20)):
            _corpus(tmp_path, domain, split,
                    [" ".join(rng.choice(words, 40)) + f" {domain}{k}" for k in range(n)])
    return tmp_path


def _docs(path):
    return [json.loads(line)["text"] for line in open(path)]


def test_transformations_are_deterministic_and_do_what_they_say(data_dir):
    kinds = ("duplicated", "shuffled", "target")
    first = planted.build(str(data_dir), train_mb=0.05, validation_mb=0.01, target_mb=0.01,
                          unique_docs=3, kinds=kinds)
    second = planted.build(str(data_dir), train_mb=0.05, validation_mb=0.01, target_mb=0.01,
                           unique_docs=3, kinds=kinds)
    assert first == second and len(first["files"]) == 6
    root = data_dir / "planted"
    dup = _docs(root / "duplicated/train-00000-of-00001.jsonl")
    assert len(set(dup)) == 3 and len(dup) > 30  # a few documents, many times
    assert set(_docs(root / "duplicated/validation-00000-of-00001.jsonl")) <= set(dup)
    source = _docs(data_dir / "corpus/books/train-00000-of-00001.jsonl")
    shuffled = _docs(root / "shuffled/train-00000-of-00001.jsonl")
    for s, o in zip(shuffled, source):  # the same words, another order
        assert collections.Counter(s.split()) == collections.Counter(o.split()) and s != o
    target = _docs(root / "target/train-00000-of-00001.jsonl")
    math_docs = _docs(data_dir / "corpus/math/train-00000-of-00001.jsonl")
    assert target == math_docs[:len(target)] and 0 < len(target) < len(math_docs)
    other_seed = planted.build(str(data_dir), train_mb=0.05, validation_mb=0.01, unique_docs=3,
                               kinds=("shuffled",), seed=1)
    assert other_seed["files"]["shuffled/train-00000-of-00001.jsonl"]["sha256"] != \
        first["files"]["shuffled/train-00000-of-00001.jsonl"]["sha256"]


def test_planted_domains_are_ordinary_domain_entries(data_dir):
    planted.build(str(data_dir), train_mb=0.05, validation_mb=0.01, kinds=("shuffled",))
    (entry,) = planted.domain_entries(str(data_dir), ["shuffled"])
    spec = domains.parse_domain(entry)
    assert (spec.name, spec.kind) == ("shuffled", "jsonl")
    assert spec.pattern.endswith("planted/shuffled/{split}-*.jsonl")


def test_noise_is_uniform_over_the_pieces_and_errors_name_the_fix(data_dir):
    ids = np.arange(10, 20)
    docs = planted.noise_documents(ids, lambda t: " ".join(map(str, t)), 50, 100,
                                   np.random.default_rng(0))
    drawn = np.array([int(x) for d in docs for x in d.split()])
    assert set(drawn) == set(ids)
    counts = np.bincount(drawn - 10)
    assert unigram.entropy(counts) > 0.99 * math.log(10)
    with pytest.raises(FileNotFoundError, match="python -m data.tokenizer"):
        planted.build(str(data_dir), vocab_size=777, kinds=("noise",))
    with pytest.raises(FileNotFoundError, match="python -m data.corpus"):
        planted.build(str(data_dir), source="nowhere", kinds=("shuffled",))
    with pytest.raises(ValueError, match="unknown planted kind"):
        planted.build(str(data_dir), kinds=("junk",))


def test_unigram_entropy():
    assert unigram.entropy(np.array([5, 5, 0, 0])) == pytest.approx(math.log(2))
    assert unigram.entropy(np.zeros(3, np.int64)) == 0.0
    encode = lambda text: [ord(c) - 96 for c in text]  # "ab" -> [1, 2]; EOS 1 is appended
    counts = unigram.token_counts(["ab", "bb"], encode, 4)
    np.testing.assert_array_equal(counts, [0, 3, 3, 0])
    assert unigram.token_counts(["ab", "bb"], encode, 4, max_tokens=4).sum() == 4
