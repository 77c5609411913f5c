"""make_train_iter / make_eval_batches end to end, and config parsing."""

import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from data import domains, pipeline
from data.domains import DomainSpec
from data.mixing import Mixer, parse_weights
from helpers import remove_seqio_tasks

L, B = 32, 8
LETTERS = {"books": "b", "code": "c"}


def decode(tokens) -> str:
    return bytes(int(t) - 3 for t in tokens if t >= 3).decode()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A built-in-layout corpus of two domains; every document unique, one letter each."""
    root = tmp_path_factory.mktemp("pipe")
    for name, letter in LETTERS.items():
        os.makedirs(root / "corpus" / name)
        for split, n in (("train", 60), ("validation", 30)):
            for s in range(2):
                with open(root / "corpus" / name / f"{split}-{s:05d}-of-00002.jsonl", "w") as f:
                    for i in range(n):
                        text = f"{letter * (3 + i % 40)} {letter}{s}-{i}"
                        f.write(json.dumps({"text": text, "source": name, "id": i}) + "\n")
    yield str(root)
    remove_seqio_tasks()


@pytest.fixture(scope="module")
def vocab():
    import seqio
    return seqio.ByteVocabulary()


def train_iter(data_dir, vocab, **kw):
    args = dict(domains=["books", "code"], vocab=vocab, seq_len=L, global_batch=B,
                weights="uniform", seed=5, data_dir=data_dir)
    return pipeline.make_train_iter(**{**args, **kw})


def letters(row_tokens) -> set:
    return {c for c in decode(row_tokens) if c.isalpha()}


def test_provenance_and_weight_change(data_dir, vocab):
    m = train_iter(data_dir, vocab, weights="code:1")
    assert m.domain_names == ("books", "code")
    for _ in range(3):
        b = next(m)
        assert (b["domain_id"] == 1).all()
        assert all(letters(r) == {"c"} for r in b["targets"])
    m.set_weights([1, 0])
    b = next(m)
    assert (b["domain_id"] == 0).all()
    assert all(letters(r) == {"b"} for r in b["targets"])


def test_resume_gives_identical_batches(data_dir, vocab):
    m = train_iter(data_dir, vocab, weights="1,2")
    for _ in range(4):
        next(m)
    state = json.loads(json.dumps(m.get_state()))
    expected = [next(m) for _ in range(5)]
    fresh = train_iter(data_dir, vocab, weights="uniform")
    fresh.set_state(state)
    for e, g in zip(expected, [next(fresh) for _ in range(5)]):
        for k in e:
            np.testing.assert_array_equal(e[k], g[k])
    for r, d in zip(expected[0]["targets"], expected[0]["domain_id"]):
        assert letters(r) == {"bc"[d]}


def test_two_processes_same_draws_disjoint_rows(data_dir, vocab):
    its = [train_iter(data_dir, vocab, process_index=p, process_count=2) for p in range(2)]
    dummy = [{k: np.zeros(L) for k in ("inputs", "targets", "segment_ids", "positions",
                                       "loss_mask")}]
    whole = Mixer.from_rows({"books": dummy, "code": dummy}, global_batch=B,
                            weights=[.5, .5], seed=5)
    for _ in range(4):
        batches = [next(it) for it in its]
        np.testing.assert_array_equal(
            np.concatenate([b["domain_id"] for b in batches]), next(whole)["domain_id"])
        for p, b in enumerate(batches):
            assert b["inputs"].shape == (B // 2, L)
            # process p reads shard p only: every document id it sees is "<letter>p-<i>"
            seen = re.findall(r"[bc](\d)-\d", decode(b["targets"].ravel()))
            assert {int(m) for m in seen} <= {p}


def test_eval_batches_padded_and_split(data_dir, vocab):
    per = [pipeline.make_eval_batches(["books", "code"], vocab, L, B, max_rows_per_domain=11,
                                      process_index=p, process_count=2, data_dir=data_dir)
           for p in range(2)]
    for name, d in (("books", 0), ("code", 1)):
        assert len(per[0][name]) == len(per[1][name]) == 2  # ceil(11 / 8)
        for p in range(2):
            for b in per[p][name]:
                assert b["inputs"].shape == (B // 2, L) and (b["domain_id"] == d).all()
        real = sum(int((b["loss_mask"].sum(1) > 0).sum()) for p in range(2)
                   for b in per[p][name])
        assert real == 11
        assert per[1][name][1]["loss_mask"].sum() == 0  # rows 12..15 are padding


def test_specs_from_config(tmp_path):
    cfg = types.SimpleNamespace(domains="books, math", data_dir="/d", text_key="body",
                                tfds_data_dir="")
    specs = domains.specs_from_config(cfg)
    assert [s.name for s in specs] == ["books", "math"]
    assert specs[0] == DomainSpec("books", "jsonl", "/d/corpus/books/{split}-*.jsonl", "body")
    cfg.domains = ["web=/x/{split}-*.jsonl", "notes=/n/*.txt", "raw=text:/r/{split}.dat",
                   "tf=tfds:my_ds:1.0.0", "code"]
    cfg.tfds_data_dir = "/tfds"
    kinds = [(s.name, s.kind, s.pattern) for s in domains.specs_from_config(cfg)]
    assert kinds == [("web", "jsonl", "/x/{split}-*.jsonl"), ("notes", "text", "/n/*.txt"),
                     ("raw", "text", "/r/{split}.dat"), ("tf", "tfds", "my_ds:1.0.0"),
                     ("code", "jsonl", "/d/corpus/code/{split}-*.jsonl")]
    assert domains.specs_from_config(cfg)[3].tfds_data_dir == "/tfds"
    cfg.domains = "books,novels"
    with pytest.raises(ValueError, match=r"unknown built-in domain.*novels.*'books'"):
        domains.specs_from_config(cfg)
    cfg.domains = "books,books"
    with pytest.raises(ValueError, match="duplicate"):
        domains.specs_from_config(cfg)
    # Eval-only: a built-in name too, for a run that does not train on it.
    evals = domains.eval_only_domains("books,web=/x/{split}-*.jsonl", "/d")
    assert [(s.name, s.pattern, s.unsplit) for s in evals] == [
        ("books", "/d/corpus/books/{split}-*.jsonl", "validation"),
        ("web", "/x/{split}-*.jsonl", "validation")]
    with pytest.raises(ValueError, match="unknown built-in domain"):
        domains.eval_only_domains("novels", "/d")


def test_parse_weights():
    names = ["a", "b", "c"]
    np.testing.assert_allclose(parse_weights("uniform", names), [1 / 3] * 3)
    np.testing.assert_allclose(parse_weights("1,1,2", names), [.25, .25, .5])
    np.testing.assert_allclose(parse_weights("c:3, a:1", names), [.25, 0, .75])
    with pytest.raises(ValueError, match=r"unknown domain.*\['d'\]"):
        parse_weights("d:1", names)
    with pytest.raises(ValueError, match="cannot parse"):
        parse_weights("1,x,2", names)
    with pytest.raises(ValueError, match=">= 0"):
        parse_weights("1,-1,2", names)


def test_heldout_domains(tmp_path):
    os.makedirs(tmp_path / "heldout" / "poetry")
    assert domains.heldout_domains(str(tmp_path)) == [
        DomainSpec("poetry", "jsonl", str(tmp_path / "heldout/poetry/{split}-*.jsonl"))]
    assert domains.heldout_domains(str(tmp_path / "none")) == []


_RESUME_SCRIPT = """
import json, sys, numpy as np, seqio
from data import pipeline
data_dir, state_path, out = sys.argv[1:]
m = pipeline.make_train_iter(["books", "code"], seqio.ByteVocabulary(), {L}, {B},
                             weights="1,2", seed=5, data_dir=data_dir)
m.set_state(json.load(open(state_path)))
np.save(out, np.stack([next(m)["targets"] for _ in range(3)]))
"""


@pytest.mark.slow
def test_resume_in_fresh_process(data_dir, vocab, tmp_path):
    m = train_iter(data_dir, vocab, weights="1,2")
    for _ in range(3):
        next(m)
    (tmp_path / "state.json").write_text(json.dumps(m.get_state()))
    expected = np.stack([next(m)["targets"] for _ in range(3)])
    subprocess.run([sys.executable, "-c", _RESUME_SCRIPT.format(L=L, B=B), data_dir,
                    str(tmp_path / "state.json"), str(tmp_path / "out.npy")], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
