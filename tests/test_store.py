"""The prepared token store (data/store.py): rows laid out as packed rows, read by global index
so that a checkpoint's data state is a few integers and restores onto any number of
processes; preparation on Ray Data from JSONL, .zst, parquet, text and saved HF datasets, with
any tokenizer; unfinished and mismatched stores refused."""

import json
import os
import shutil

import numpy as np
import pytest

from data import mixing, store

EOS, START = 1, 0


def _write_split(root, domain, split, tokens, dtype="uint16"):
    where = store.split_dir(str(root), domain, split)
    os.makedirs(where, exist_ok=True)
    np.asarray(tokens, dtype).tofile(os.path.join(where, store.TOKENS))
    with open(os.path.join(where, store.META), "w") as f:
        json.dump({"format": 1, "domain": domain, "split": split, "tokens": len(tokens),
                   "documents": int(np.sum(np.asarray(tokens) == EOS)), "dtype": dtype,
                   "tokenizer": {"kind": "byte"}, "sources": []}, f)


def test_rows_are_packed_rows_a_segment_per_document():
    # two documents (5 6 7 EOS) (8 EOS) then one cut by the row's end (9 10 | 11 EOS)
    rows = store.layout(np.array([[5, 6, 7, 1, 8, 1, 9, 10], [11, 1, 12, 13, 14, 1, 15, 1]]),
                        START, EOS)
    np.testing.assert_array_equal(rows["segment_ids"][0], [1, 1, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(rows["positions"][0], [0, 1, 2, 3, 0, 1, 0, 1])
    np.testing.assert_array_equal(rows["inputs"][0], [0, 5, 6, 7, 0, 8, 0, 9])
    np.testing.assert_array_equal(rows["targets"][0], [5, 6, 7, 1, 8, 1, 9, 10])
    # the cut document goes on as a new segment of the next row
    np.testing.assert_array_equal(rows["segment_ids"][1], [1, 1, 2, 2, 2, 2, 3, 3])
    np.testing.assert_array_equal(rows["inputs"][1], [0, 11, 0, 12, 13, 14, 0, 15])
    assert rows["loss_mask"].min() == 1.0
    custom = store.layout(np.array([[5, 1, 6, 7]]), start_id=50256, eos_id=1)
    np.testing.assert_array_equal(custom["inputs"][0], [50256, 5, 50256, 6])


def test_a_split_reads_rows_by_index_from_its_memory_map(tmp_path):
    tokens = np.arange(3, 3 + 50) % 40 + 2  # no EOS: one segment a row
    _write_split(tmp_path, "a", "train", tokens)
    split = store.Split.open(str(tmp_path), "a", "train", 8, START, EOS)
    assert split.num_rows == 6  # the last 2 tokens make no row
    rows = split.rows([5, 0])
    np.testing.assert_array_equal(rows["targets"], [tokens[40:48], tokens[0:8]])
    with pytest.raises(FileNotFoundError, match="--mode=prepare"):
        store.Split.open(str(tmp_path), "a", "validation", 8, START, EOS)
    os.makedirs(store.split_dir(str(tmp_path), "b", "train"))
    open(os.path.join(store.split_dir(str(tmp_path), "b", "train"), store.TOKENS + ".partial"),
         "w").close()
    with pytest.raises(FileNotFoundError, match="interrupted"):
        store.read_meta(str(tmp_path), "b", "train")
    with open(os.path.join(store.split_dir(str(tmp_path), "a", "train"), store.TOKENS),
              "ab") as f:
        f.write(b"\0\0")  # a damaged store is named, never read
    with pytest.raises(ValueError, match="damaged"):
        store.Split.open(str(tmp_path), "a", "train", 8, START, EOS)


def test_indexed_rows_shuffle_each_epoch_and_cover_every_row(tmp_path):
    _write_split(tmp_path, "a", "train", np.arange(2, 2 + 80) % 60 + 2)
    rows = store.IndexedRows(store.Split.open(str(tmp_path), "a", "train", 8, START, EOS), 7)
    first = rows.targets(range(10))[:, 0]
    second = rows.targets(range(10, 20))[:, 0]
    assert sorted(first) == sorted(second) and list(first) != list(second)
    again = store.IndexedRows(rows.split, 7).targets([13, 2])
    np.testing.assert_array_equal(again, rows.targets([13, 2]))


def _mixer(root, process_index=0, process_count=1, batch=8):
    names = ["a", "b", "c"]
    streams = [store.IndexedRows(store.Split.open(str(root), n, "train", 4, START, EOS), i)
               for i, n in enumerate(names)]
    return mixing.Mixer(streams, names, global_batch=batch, weights=[0.5, 0.3, 0.2], seed=3,
                        process_index=process_index, process_count=process_count)


@pytest.fixture
def three_domains(tmp_path):
    for i, n in enumerate("abc"):
        _write_split(tmp_path, n, "train", (np.arange(37 + 10 * i) * (i + 3)) % 50 + 2)
    return tmp_path


def test_processes_read_their_rows_of_one_global_stream(three_domains):
    one = _mixer(three_domains)
    two = [_mixer(three_domains, p, 2) for p in range(2)]
    for _ in range(7):  # past every domain's first epoch
        whole = next(one)
        halves = [next(m) for m in two]
        for key in mixing.BATCH_KEYS + ("domain_id",):
            np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])
    states = [m.get_state() for m in two]
    assert states[0] == states[1] == one.get_state()  # the same on every process
    assert len(json.dumps(states[0])) < 1000  # a few integers, not the pipeline's buffers


def test_a_checkpointed_data_state_restores_onto_any_number_of_processes(three_domains):
    straight = _mixer(three_domains)
    for _ in range(3):
        next(straight)
    state = straight.get_state()
    expected = [next(straight) for _ in range(4)]
    resumed_two = [_mixer(three_domains, p, 2) for p in range(2)]  # 1 process -> 2
    for m in resumed_two:
        m.set_state(state)
    for batch in expected:
        halves = [next(m) for m in resumed_two]
        np.testing.assert_array_equal(np.concatenate([h["targets"] for h in halves]),
                                      batch["targets"])
    back = _mixer(three_domains)  # 2 processes -> 1
    back.set_state(resumed_two[1].get_state())
    np.testing.assert_array_equal(next(back)["targets"], next(straight)["targets"])
    other = _mixer(three_domains, batch=16)
    with pytest.raises(ValueError, match="global batch"):
        other.set_state(state)


def test_new_weights_apply_from_the_very_next_batch(three_domains):
    m = _mixer(three_domains)
    next(m)
    m.set_weights([0.0, 0.0, 1.0])
    assert set(next(m)["domain_id"]) == {2}


# Preparation (Ray Data, a local Ray of 2 CPUs) and training from the store.

TEXTS = {"train": [f"document {i}: " + "words and more words " * (i % 7 + 1) for i in range(40)],
         "validation": [f"held out {i} " * (i % 3 + 1) for i in range(12)]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One domain per input format, the same texts in each."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard
    root = tmp_path_factory.mktemp("formats")
    for split, texts in TEXTS.items():
        lines = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
        (root / f"jsonl-{split}.jsonl").write_bytes(lines)
        (root / f"zst-{split}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
        (root / f"lines-{split}.txt").write_text("".join(t + "\n" for t in texts))
        pq.write_table(pa.table({"text": texts, "n": list(range(len(texts)))}),
                       root / f"pq-{split}.parquet")
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": t})
                          for s, t in TEXTS.items()}).save_to_disk(str(root / "hf"))
    import tensorflow as tf
    import tensorflow_datasets as tfds
    tfds.dataset_builders.TfDataBuilder(
        name="store_text", version="1.0.0",
        split_datasets={s: tf.data.Dataset.from_tensor_slices({"text": t})
                        for s, t in TEXTS.items()},
        features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
        data_dir=str(root / "tfds")).download_and_prepare()
    return root


def _store_cfg(corpus, store_dir, **train):
    from helpers import tiny_config
    cfg = tiny_config(steps=6, checkpoint_every=3, eval_every=3, **train)
    cfg.data.update(source="seqio", vocab="byte", heldout=False, seq_len=32, eval_rows=8,
                    store=str(store_dir), domains=",".join([
                        f"jsonl={corpus}/jsonl-{{split}}.jsonl",
                        f"zst={corpus}/zst-{{split}}.jsonl.zst",
                        f"lines={corpus}/lines-{{split}}.txt",
                        f"pq={corpus}/pq-{{split}}.parquet",
                        f"hf=hf:{corpus}/hf", "tf=tfds:store_text:1.0.0"]),
                    tfds_data_dir=str(corpus / "tfds"))
    cfg.model.update(vocab_size=320, max_len=32)
    return cfg


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    from data import sources
    root = tmp_path_factory.mktemp("store")
    cfg = _store_cfg(corpus, root)
    return cfg, sources.source_of(cfg).prepare(log=lambda _: None)


def test_every_input_format_prepares_to_the_same_tokens(prepared):
    cfg, metas = prepared
    expected = {s: np.array([b for t in texts for b in (*[c + 3 for c in t.encode()], 1)])
                for s, texts in TEXTS.items()}
    for domain in ("jsonl", "zst", "lines", "pq", "hf", "tf"):
        for split in ("train", "validation"):
            meta = metas[domain][split]
            assert meta["documents"] == len(TEXTS[split])
            assert meta["tokenizer"]["kind"] == "byte" and meta["dtype"] == "uint16"
            tokens = np.fromfile(os.path.join(store.split_dir(cfg.data.store, domain, split),
                                              store.TOKENS), np.uint16)
            if domain == "tf":  # TFDS writes its examples in its own (hashed) order
                docs = sorted(map(tuple, np.split(tokens, np.flatnonzero(tokens == 1) + 1)))
                want = sorted(map(tuple, np.split(expected[split],
                                                  np.flatnonzero(expected[split] == 1) + 1)))
                assert docs == want
            else:
                np.testing.assert_array_equal(tokens, expected[split])


def test_a_finished_split_is_never_redone_an_unfinished_one_is(prepared):
    from data import sources
    cfg, _ = prepared
    where = store.split_dir(cfg.data.store, "pq", "validation")
    before = {d: os.stat(os.path.join(store.split_dir(cfg.data.store, d, "train"),
                                      store.TOKENS)).st_mtime_ns for d in ("jsonl", "hf")}
    os.remove(os.path.join(where, store.META))  # as if killed before its marker
    os.rename(os.path.join(where, store.TOKENS), os.path.join(where, store.TOKENS + ".partial"))
    assert sources.source_of(cfg).check(train=True)  # refused while unfinished
    again = sources.source_of(cfg).prepare(log=lambda _: None)
    assert again["pq"]["validation"]["documents"] == len(TEXTS["validation"])
    assert not os.path.exists(os.path.join(where, store.TOKENS + ".partial"))
    assert {d: os.stat(os.path.join(store.split_dir(cfg.data.store, d, "train"),
                                    store.TOKENS)).st_mtime_ns for d in ("jsonl", "hf")} == before


def test_another_tokenizer_is_refused_naming_the_difference(prepared, tmp_path):
    from data import sources
    from test_vocabulary import train_bpe
    cfg, _ = prepared
    other = _store_cfg_from(cfg, vocab=str(train_bpe(tmp_path, ["<|endoftext|>"])))
    problems = sources.source_of(other).check(train=True)
    assert problems and all("tokenizer" in p or "kind" in p for p in problems)


def _store_cfg_from(cfg, **data):
    c = cfg.copy_and_resolve_references()
    c.data.update(**data)
    return c


def test_training_reads_the_store_and_resumes_exactly(prepared, tmp_path):
    import jax
    from helpers import untimed
    from runs import experiment
    cfg, _ = prepared
    devices = jax.devices()[:1]
    straight = experiment.run(cfg, str(tmp_path / "a"), devices=devices)
    assert {"eval/pq/loss", "eval/hf/bits_per_byte"} <= set(straight)
    assert straight["corpus/tokenizer"] == "byte:bytes"  # the run records its tokenizer
    short = _store_cfg_from(cfg)
    short.train.run_steps = 3
    experiment.run(short, str(tmp_path / "b"), devices=devices)
    resumed = experiment.run(cfg, str(tmp_path / "b"), devices=devices)
    assert resumed == straight
    assert untimed(tmp_path / "a") == untimed(tmp_path / "b")


def _flags(cfg, *extra):
    """main.py flags for a store config (the prepared fixture's)."""
    return ("--config=configs/base.py", f"--config.data.domains={cfg.data.domains}",
            f"--config.data.store={cfg.data.store}", "--config.data.vocab=byte",
            f"--config.data.tfds_data_dir={cfg.data.tfds_data_dir}",
            "--config.data.heldout=False", "--config.data.seq_len=32",
            "--config.data.eval_rows=8", "--config.model.vocab_size=320",
            "--config.model.max_len=32", "--config.model.d_model=32",
            "--config.model.num_heads=4", "--config.model.num_layers=2",
            "--config.model.mlp_dim=64", "--config.train.batch_size=8",
            "--config.train.steps=6", "--config.train.checkpoint_every=3",
            "--config.train.eval_every=3", "--config.train.log_every=1",
            "--config.train.warmup_steps=2", "--config.train.progress_bar=False",
            "--config.train.peak_flops=1e9", *extra)


def _data_items(workdir):
    """The data state of each checkpoint step, as restored (every process's)."""
    out = {}
    root = os.path.join(workdir, "checkpoints")
    for step in sorted(os.listdir(root)):
        with open(os.path.join(root, step, "data", "metadata")) as f:
            out[step] = json.load(f)["processes"]
    return out


@pytest.fixture(scope="module")
def straight_run(prepared, tmp_path_factory):
    from helpers import run_main
    cfg, _ = prepared
    workdir = tmp_path_factory.mktemp("straight")
    run_main(workdir, *_flags(cfg), devices=2)
    return workdir


def _assert_same_run(a, b):
    from helpers import untimed
    ma, mb = untimed(a), untimed(b)
    assert [m["step"] for m in ma] == [m["step"] for m in mb] and len(ma) >= 6
    for x, y in zip(ma, mb):
        # f32 sums over gloo and over in-process devices differ in order: ~1e-5 relative.
        np.testing.assert_allclose([x[k] for k in x], [y[k] for k in x], rtol=2e-4, atol=1e-5)


def test_a_two_process_store_checkpoint_continues_in_one_process(prepared, straight_run,
                                                                 tmp_path):
    """2 processes x 1 device to step 3, then 1 process x 2 devices to 6: the same batches
    (the data item, a few integers, is the same on both processes) and the same run."""
    from helpers import run_main
    cfg, _ = prepared
    run_main(tmp_path, *_flags(cfg, "--config.train.run_steps=3"), processes=2, devices=2)
    written = _data_items(tmp_path)["3"]
    assert len(written) == 2 and written[0] == written[1]
    assert len(json.dumps(written[0])) < 2000
    run_main(tmp_path, *_flags(cfg), devices=2)
    assert _data_items(tmp_path)["6"][0] == _data_items(straight_run)["6"][0]
    _assert_same_run(tmp_path, straight_run)


@pytest.mark.slow
def test_a_one_process_store_checkpoint_continues_in_two_processes(prepared, straight_run,
                                                                   tmp_path):
    from helpers import run_main
    cfg, _ = prepared
    run_main(tmp_path, *_flags(cfg, "--config.train.run_steps=3"), devices=2)
    run_main(tmp_path, *_flags(cfg), processes=2, devices=2)
    _assert_same_run(tmp_path, straight_run)


@pytest.mark.slow  # the in-process resume above and the on-the-fly kill -9 tests cover the rest
def test_a_store_run_killed_with_sigkill_resumes_bit_exactly(prepared, straight_run, tmp_path):
    import signal
    from helpers import run_main, start_main, untimed, wait_for_step
    cfg, _ = prepared
    proc = start_main(tmp_path, *_flags(cfg), devices=2)
    wait_for_step(proc, str(tmp_path), 4)  # past the step-3 checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_main(tmp_path, *_flags(cfg), devices=2)
    assert untimed(tmp_path) == untimed(straight_run)


def test_hugging_face_tokenizers_prepare_and_train(corpus, tmp_path):
    """A GPT-2-style tokenizer.json: ids as the tokenizer gives them, its EOS after each
    document, its EOS as the start input; a run trains from them."""
    import jax
    from tokenizers import Tokenizer
    from data import sources
    from runs import experiment
    from test_vocabulary import train_bpe
    path = train_bpe(tmp_path / "tok", ["<|endoftext|>"])
    cfg = _store_cfg(corpus, tmp_path / "store")
    cfg.data.update(vocab=str(path), domains=f"pq={corpus}/pq-{{split}}.parquet")
    cfg.model.vocab_size = 320
    metas = sources.source_of(cfg).prepare(log=lambda _: None)
    tok = Tokenizer.from_file(str(path))
    eos = tok.token_to_id("<|endoftext|>")
    expected = [i for t in TEXTS["train"] for i in (*tok.encode(t, add_special_tokens=False).ids,
                                                   eos)]
    tokens = np.fromfile(os.path.join(store.split_dir(cfg.data.store, "pq", "train"),
                                      store.TOKENS), metas["pq"]["train"]["dtype"])
    np.testing.assert_array_equal(tokens, expected)
    assert metas["pq"]["train"]["tokenizer"]["start_id"] == eos
    cfg.train.update(steps=2, checkpoint_every=2, eval_every=2)
    result = experiment.run(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    assert np.isfinite(result["eval/pq/loss"]) and result["eval/pq/bits_per_byte"] > 0

    # The run recorded its tokenizer's contents: a later run that reads its params (init_from,
    # evaluation, a reference) may name a copy of the file elsewhere, not a rewritten one.
    run = str(tmp_path / "run")
    assert experiment.recorded_tokenizer(run)["sha256"] == experiment.tokenizer_identity(
        cfg)["sha256"]
    copy = tmp_path / "moved" / "tokenizer.json"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    cfg.data.vocab = str(copy)
    assert experiment.tokenizer_problems(cfg, run, "config.init_from") == []
    train_bpe(copy.parent, ["<|endoftext|>"], extra_lines=["other words entirely"] * 50)
    problems = experiment.tokenizer_problems(cfg, run + "/checkpoints", "config.init_from")
    assert len(problems) == 1 and "sha256" in problems[0], problems
    with pytest.raises(ValueError, match=r"--workdir=.* was trained on another tokenizer's ids"):
        experiment.run(cfg, run, mode="eval", devices=jax.devices()[:1])
