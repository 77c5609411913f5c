"""Domain Tasks and row streams on tiny local fixtures (ByteVocabulary, no corpus.py)."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import seqio

from data import records, tasks
from data.domains import DomainSpec
from helpers import remove_seqio_tasks

L = 32
VOCAB = seqio.ByteVocabulary()


def decode(tokens) -> str:
    """Byte ids -> text; drops padding (0) and EOS (1)."""
    return bytes(int(t) - 3 for t in tokens if t >= 3).decode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two JSONL shards per split with 'x' documents, and a text-line domain of 'y'."""
    root = tmp_path_factory.mktemp("tasks")
    for split in ("train", "validation"):
        for s in range(2):
            with open(root / f"{split}-{s}.jsonl", "w") as f:
                for i in range(20):
                    f.write(json.dumps({"body": "x" * (5 + 7 * i), "id": i}) + "\n")
                f.write("\n")  # blank lines are not documents
        (root / f"{split}.txt").write_text("".join("y" * (3 + i) + "\n" for i in range(30)))
    (root / "long-validation.jsonl").write_text(json.dumps({"text": "z" * (3 * L + 5)}) + "\n")
    yield root
    remove_seqio_tasks()


def jsonl_spec(root, name="xs"):
    return DomainSpec(name, "jsonl", str(root / "{split}-*.jsonl"), text_key="body")


def take(stream, n):
    return [next(stream) for _ in range(n)]


def test_rows_are_packed_consistently(corpus):
    for row in take(tasks.RowStream(jsonl_spec(corpus), VOCAB, L, seed=1), 30):
        seg, pos, inp, tgt = row["segment_ids"], row["positions"], row["inputs"], row["targets"]
        assert row["inputs"].dtype == np.int32 and row["loss_mask"].dtype == np.float32
        np.testing.assert_array_equal(row["loss_mask"], (seg > 0).astype(np.float32))
        for i in range(L):
            if seg[i] == 0:
                assert inp[i] == tgt[i] == pos[i] == 0
            elif i == 0 or seg[i] != seg[i - 1]:
                assert pos[i] == 0 and inp[i] == 0 and seg[i] == (seg[i - 1] + 1 if i else 1)
            else:
                assert pos[i] == pos[i - 1] + 1 and inp[i] == tgt[i - 1]
        assert set(decode(row["targets"])) == {"x"}


def test_long_documents_are_split_not_truncated(corpus):
    spec = DomainSpec("long", "jsonl", str(corpus / "long-{split}.jsonl"))
    rows = list(tasks.RowStream(spec, VOCAB, L, split="validation", shuffle=False,
                                repeat=False))
    tokens = np.concatenate([r["targets"][r["segment_ids"] > 0] for r in rows])
    assert decode(tokens) == "z" * (3 * L + 5)
    assert (tokens == 1).sum() == 1 and tokens[-1] == 1  # one EOS, at the document's end


def test_text_lines_domain(corpus):
    spec = DomainSpec("ys", "text", str(corpus / "{split}.txt"))
    rows = list(tasks.RowStream(spec, VOCAB, L, split="validation", shuffle=False,
                                repeat=False))
    docs = sum(int(r["segment_ids"].max() - (r["positions"][0] > 0)) for r in rows)
    text = decode(np.concatenate([r["targets"] for r in rows]))
    assert set(text) == {"y"} and len(text) == sum(3 + i for i in range(30))
    assert docs >= 30


def test_registration_is_idempotent_and_removable(corpus):
    spec = jsonl_spec(corpus, "idem")
    assert tasks.register_task(spec, VOCAB) is tasks.register_task(spec, VOCAB)
    assert tasks.task_name(spec, VOCAB) != tasks.task_name(jsonl_spec(corpus, "other"), VOCAB)
    assert tasks.task_name(spec, VOCAB) in remove_seqio_tasks()
    assert tasks.task_name(spec, VOCAB) not in seqio.TaskRegistry.names()


def test_shards_are_disjoint(corpus):
    spec = jsonl_spec(corpus, "shards")
    texts = []
    for p in range(2):
        rows = list(tasks.RowStream(spec, VOCAB, L, split="validation", shuffle=False,
                                    repeat=False, shard_index=p, shard_count=2))
        texts.append(decode(np.concatenate([r["targets"] for r in rows])))
    assert len(texts[0]) == len(texts[1]) == sum(5 + 7 * i for i in range(20))


def test_stream_state_resumes_exactly(corpus):
    a = tasks.RowStream(jsonl_spec(corpus, "resume"), VOCAB, L, seed=3)
    take(a, 21)  # mid-block: the pending rows must be in the state
    state = json.loads(json.dumps(a.get_state()))
    expected = take(a, 40)
    b = tasks.RowStream(jsonl_spec(corpus, "resume"), VOCAB, L, seed=3)
    b.set_state(state)
    for e, g in zip(expected, take(b, 40)):
        for k in e:
            np.testing.assert_array_equal(e[k], g[k])


def test_tfds_domain(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    texts = {"train": ["q" * (4 + i) for i in range(40)],
             "validation": ["w" * (4 + i) for i in range(10)]}
    tfds.dataset_builders.TfDataBuilder(
        name="tiny_text", version="1.0.0",
        split_datasets={s: tf.data.Dataset.from_tensor_slices({"text": t})
                        for s, t in texts.items()},
        features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
        data_dir=str(tmp_path)).download_and_prepare()
    spec = DomainSpec("tiny", "tfds", "tiny_text:1.0.0", tfds_data_dir=str(tmp_path))
    rows = list(tasks.RowStream(spec, VOCAB, L, split="validation", shuffle=False,
                                repeat=False))
    text = decode(np.concatenate([r["targets"] for r in rows]))
    assert set(text) == {"w"} and len(text) == sum(4 + i for i in range(10))
    assert set(decode(next(tasks.RowStream(spec, VOCAB, L))["targets"])) == {"q"}


@pytest.mark.parametrize("line, match", [
    (b'{"text": "ok\xff\xfe"}\n', r"bad-0\.jsonl:2: not valid UTF-8"),
    (b'{"text": "cut\n', r"bad-0\.jsonl:2: not valid JSON"),
    (b'{"body": "wrong key"}\n', r"bad-0\.jsonl:2: no string field 'text'.*\['body'\]"),
    (b'{"text": null}\n', r"bad-0\.jsonl:2: 'text' is null, not a string"),
    (b'{"text": 42}\n', r"bad-0\.jsonl:2: 'text' is a number \(42\), not a string"),
    (b'{"text": ["a", "b"]}\n', r"bad-0\.jsonl:2: 'text' is a list, not a string"),
    (b'{"text": {"a": 1}}\n', r"bad-0\.jsonl:2: 'text' is an object, not a string"),
    (b'["text"]\n', r"bad-0\.jsonl:2: the line is a list, not a JSON object"),
])
def test_bad_jsonl_lines_name_file_and_line(tmp_path, line, match):
    (tmp_path / "bad-0.jsonl").write_bytes(b'{"text": "fine"}\n' + line)
    spec = DomainSpec("bad", "jsonl", str(tmp_path / "bad-*.jsonl"))
    with pytest.raises(ValueError, match=match):
        take(tasks.RowStream(spec, VOCAB, L), 3)


@pytest.mark.parametrize("kind, body", [("jsonl", b'{"text": "fine"}\n{"text": "also"}\n'),
                                        ("text", b"fine\nalso\n")])
def test_a_byte_order_mark_starts_a_file_not_its_text(tmp_path, kind, body):
    """Windows editors and spreadsheet exports begin UTF-8 files with a BOM: read as if absent."""
    for name, data in (("bom", b"\xef\xbb\xbf" + body), ("plain", body)):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"d-0.{kind}").write_bytes(data)
    rows = {name: take(tasks.RowStream(DomainSpec(name, kind, str(tmp_path / name / "d-*")),
                                       VOCAB, L, shuffle=False, repeat=False), 1)
            for name in ("bom", "plain")}
    np.testing.assert_array_equal(rows["bom"][0]["targets"], rows["plain"][0]["targets"])
    assert records.check("bom", kind, str(tmp_path / "bom" / "d-*"), "train", "text") == []


def test_bad_text_line_names_file_and_line(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"fine\nbad \xc3\x28 byte\n")
    spec = DomainSpec("badtext", "text", str(tmp_path / "*.txt"))
    with pytest.raises(ValueError, match=r"t\.txt:2: not valid UTF-8"):
        take(tasks.RowStream(spec, VOCAB, L), 3)


def test_missing_empty_and_documentless_domains(tmp_path):
    missing = DomainSpec("gone", "jsonl", str(tmp_path / "nope" / "{split}-*.jsonl"))
    with pytest.raises(ValueError, match=r"domain 'gone': no files match .*nope/train-\*"):
        tasks.RowStream(missing, VOCAB, L)
    (tmp_path / "train-0.jsonl").write_text("")
    empty = DomainSpec("empty", "jsonl", str(tmp_path / "{split}-*.jsonl"))
    with pytest.raises(ValueError, match=r"domain 'empty'.*all empty"):
        tasks.RowStream(empty, VOCAB, L)
    (tmp_path / "train-0.jsonl").write_text('{"text": ""}\n\n')
    with pytest.raises(ValueError, match=r"domain 'empty'.*yields no documents"):
        tasks.RowStream(empty, VOCAB, L)
    with pytest.raises(ValueError, match=r"domain .empty.*yields no documents"):
        next(tasks.RowStream(empty, VOCAB, L, repeat=False))
    no_split = DomainSpec("nosplit", "jsonl", str(tmp_path / "train-*.jsonl"))
    with pytest.raises(ValueError, match=r"no '\{split\}' placeholder"):
        tasks.RowStream(no_split, VOCAB, L, split="validation")


def test_a_process_reads_the_same_files_once(tmp_path, monkeypatch):
    """Eval rows and the non-empty check are remembered per files; a rewrite reads again."""
    path = tmp_path / "validation-0.jsonl"
    path.write_text("".join(json.dumps({"text": "a" * (4 + i)}) + "\n" for i in range(12)))
    (tmp_path / "train-0.jsonl").write_text(path.read_text())
    spec = DomainSpec("cached", "jsonl", str(tmp_path / "{split}-*.jsonl"))
    built = []
    real = tasks.RowStream.__init__
    monkeypatch.setattr(tasks.RowStream, "__init__",
                        lambda self, *a, **k: built.append(k.get("split")) or real(self, *a, **k))
    first = tasks.eval_rows(spec, VOCAB, L, 3)
    assert [decode(r["targets"])[:4] for r in first] and len(built) == 1
    assert not first[0]["targets"].flags.writeable  # shared by every run: read-only
    again = tasks.eval_rows(spec, VOCAB, L, 2)
    assert len(built) == 1 and all(
        np.array_equal(a["targets"], b["targets"]) for a, b in zip(first, again))
    more = tasks.eval_rows(spec, VOCAB, L, 100)  # more than remembered: read again, to the end
    assert len(built) == 2 and tasks.eval_rows(spec, VOCAB, L, 200) == more and len(built) == 2
    path.write_text("".join(json.dumps({"text": "b" * (4 + i)}) + "\n" for i in range(12)))
    assert decode(tasks.eval_rows(spec, VOCAB, L, 1)[0]["targets"]).startswith("b")

    checks = []
    monkeypatch.setattr(tasks.RowStream, "_check_nonempty",
                        lambda self, ds: checks.append(1) or None)
    tasks.RowStream(spec, VOCAB, L, split="train", seed=1)
    tasks.RowStream(spec, VOCAB, L, split="train", seed=2)
    assert len(checks) == 1
    (tmp_path / "train-0.jsonl").write_text('{"text": ""}\n')  # rewritten: checked again
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"domain 'cached'.*yields no documents"):
        tasks.RowStream(spec, VOCAB, L, split="train")
