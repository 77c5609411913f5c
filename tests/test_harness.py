"""lm-evaluation-harness over the model (lm/harness.py, lm/downstream.py): lm-eval's numbers are
the log-likelihoods computed here from the model's logits; they do not depend on the batch,
the padding or the mesh; long requests keep their end; tasks run in eval, in the loop and in
compare. Task YAMLs and their JSONL are written by the tests (no network)."""

import json
import math
import os

import jax
import numpy as np
import pytest
import seqio
from lm_eval.api.instance import Instance

from helpers import tiny_config
from lm import downstream, harness
from lm import train as train_lib
from lm.metrics import read_metrics
from reweight.interface import Uniform
from runs import compare, experiment

VOCAB = seqio.ByteVocabulary()
MAX_LENGTH = 40

MC_DOCS = [
    {"question": "The sky is", "choices": ["blue", "green", "very loud"], "label": 0},
    {"question": "Two plus two is", "choices": ["three", "four"], "label": 1},
    {"question": "Water is", "choices": ["wet", "dry", "square", "late"], "label": 0},
    {"question": "A long question that goes on for more bytes than the harness context holds,"
                 " so it is cut from the left:", "choices": ["yes", "no"], "label": 1},
]
TEXTS = ["The quick brown fox.",
         "A document longer than the context: " + "more and more words " * 6]


def _tiny(**model):
    cfg = tiny_config()
    cfg.model.update(vocab_size=320, max_len=64, **model)
    return cfg


@pytest.fixture(scope="module")
def model(one_device_module):
    cfg = _tiny()
    rt = train_lib.build_runtime(cfg, Uniform(), 1, one_device_module)
    with rt.context():
        params = rt.init_fn(jax.random.key(3)).params
    return cfg, rt, params


@pytest.fixture(scope="module")
def one_device_module():
    return jax.devices()[:1]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """A multiple-choice task and a rolling-loglikelihood one, as lm-eval YAML over JSONL."""
    root = tmp_path_factory.mktemp("tasks")
    with open(root / "mc.jsonl", "w") as f:
        f.writelines(json.dumps(d) + "\n" for d in MC_DOCS)
    with open(root / "text.jsonl", "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in TEXTS)
    (root / "toy_mc.yaml").write_text(
        f"task: toy_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {root}/mc.jsonl\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: \"{{question}}\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    (root / "toy_text.yaml").write_text(
        f"task: toy_text\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {root}/text.jsonl\ntest_split: test\noutput_type: loglikelihood_rolling\n"
        "doc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
        "metric_list:\n  - metric: bits_per_byte\n    aggregation: bits_per_byte\n"
        "    higher_is_better: false\n")
    return root


def own_logprob(cfg, params, stream, n, length=MAX_LENGTH):
    """The summed log-probability of the last `n` tokens of `stream` (its first token an input
    only), from the model's logits over its last length + 1 tokens, one row, no padding."""
    stream = stream[-(length + 1):]
    model = train_lib.make_model(cfg)
    m = len(stream) - 1
    logits = model.apply({"params": params}, np.array([stream[:-1]], np.int32),
                         np.arange(m, dtype=np.int32)[None], np.ones((1, m), np.int32))
    logits = np.asarray(logits[0], np.float64)
    top = logits.max(-1, keepdims=True)
    logprob = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return float(sum(logprob[i, stream[i + 1]] for i in range(m - n, m)))


def own_pair(cfg, params, context, continuation):
    """lm-eval's split of a (context, continuation) pair, scored by `own_logprob`."""
    ctx = list(VOCAB.encode(context))
    whole = list(VOCAB.encode(context + continuation))
    return own_logprob(cfg, params, [harness.START, *whole], len(whole) - len(ctx))


def _lm(rt, params, batch_size=4, length=MAX_LENGTH):
    return harness.HarnessLM(rt, params, VOCAB, max_length=length, batch_size=batch_size)


def test_tasks_report_the_log_likelihoods_of_the_models_logits(model, tasks):
    cfg, rt, params = model
    h = tiny_config().eval.harness
    h.update(tasks=f"{tasks}/toy_mc.yaml,{tasks}/toy_text.yaml", bootstrap_iters=0)
    results = downstream.run_tasks(_lm(rt, params), h)
    lls_by_doc = []
    for sample in results["samples"]["toy_mc"]:
        doc = sample["doc"]
        mine = [own_pair(cfg, params, doc["question"], " " + c) for c in doc["choices"]]
        theirs = [r[0] for r in sample["filtered_resps"]]
        np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=1e-4)
        lls_by_doc.append((mine, doc))
    acc = np.mean([np.argmax(m) == d["label"] for m, d in lls_by_doc])
    norm = np.mean([np.argmax(np.array(m) / [len(c) for c in d["choices"]]) == d["label"]
                    for m, d in lls_by_doc])
    assert results["results"]["toy_mc"]["acc,none"] == pytest.approx(acc)
    assert results["results"]["toy_mc"]["acc_norm,none"] == pytest.approx(norm)
    # The continuous scores, from the same log-likelihoods.
    per_char = [m[d["label"]] / len(d["choices"][d["label"]]) for m, d in lls_by_doc]
    prob = [np.exp(m[d["label"]]) / np.exp(m).sum() for m, d in lls_by_doc]
    c = results["continuous"]["toy_mc"]
    assert c["correct_logprob_per_char"]["mean"] == pytest.approx(np.mean(per_char), rel=1e-4)
    assert c["correct_prob"]["mean"] == pytest.approx(np.mean(prob), rel=1e-4)
    assert c["correct_prob"]["stderr"] == pytest.approx(
        np.std(prob, ddof=1) / math.sqrt(len(prob)), rel=1e-4)
    # Rolling: the first text fits in one window; the second is scored in lm-eval's windows,
    # each token once, with the most context the window allows.
    short = list(VOCAB.encode(TEXTS[0]))
    assert len(short) < MAX_LENGTH
    total_short = own_logprob(cfg, params, [harness.START, *short], len(short))
    tokens = list(VOCAB.encode(TEXTS[1]))
    assert len(tokens) > 2 * MAX_LENGTH
    total_long = own_logprob(cfg, params, [harness.START, *tokens[:MAX_LENGTH]], MAX_LENGTH)
    done = MAX_LENGTH
    while done < len(tokens):  # each later window predicts up to MAX_LENGTH new tokens
        end = min(done + MAX_LENGTH, len(tokens))
        total_long += own_logprob(cfg, params, tokens[:end], end - done)
        done = end
    size = sum(len(t.encode()) for t in TEXTS)
    expected = -(total_short + total_long) / size / math.log(2)
    assert results["results"]["toy_text"]["bits_per_byte,none"] == pytest.approx(expected,
                                                                                 rel=1e-4)
    table = downstream.table(results)
    assert "toy_mc" in table and "correct_prob" in table and "bits_per_byte" in table


def _requests(pairs):
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


PAIRS = [(d["question"], " " + c) for d in MC_DOCS for c in d["choices"]] + [
    ("", "No context at all."), ("Trailing space ", "moves"), ("x" * 100, " end")]


def test_the_answer_does_not_change_with_the_batch_or_the_padding(model):
    cfg, rt, params = model
    results = [_lm(rt, params, batch_size=b).loglikelihood(_requests(PAIRS)) for b in (2, 3, 8)]
    for other in results[1:]:
        np.testing.assert_allclose([r[0] for r in other], [r[0] for r in results[0]],
                                   rtol=1e-5, atol=1e-5)
        assert [r[1] for r in other] == [r[1] for r in results[0]]
    # A longer bucket (more padding) for the same request gives the same number.
    lm = _lm(rt, params, batch_size=2)
    alone = lm.loglikelihood(_requests([PAIRS[0]]))[0][0]
    padded = lm.loglikelihood(_requests([PAIRS[0], ("y" * 30, " long")]))[0][0]
    assert padded == pytest.approx(alone, abs=1e-5)


def test_requests_longer_than_the_context_keep_their_end(model):
    """lm-eval's rule: (context + continuation)[-(max_length + 1):], the first kept token an
    input only; the empty context conditions on the start token; trailing spaces of the
    context move to the continuation; greedy says whether argmax gives the continuation."""
    cfg, rt, params = model
    got = _lm(rt, params).loglikelihood(_requests(PAIRS))
    for (context, continuation), (logprob, _) in zip(PAIRS, got):
        if context:
            spaces = len(context) - len(context.rstrip())
            context, continuation = context.rstrip(), context[len(context.rstrip()):] + \
                continuation if spaces else continuation
            expected = own_pair(cfg, params, context, continuation)
        else:
            ids = list(VOCAB.encode(continuation))
            expected = own_logprob(cfg, params, [harness.START, *ids], len(ids))
        assert logprob == pytest.approx(expected, abs=1e-4)
    long_context = PAIRS[-1]
    assert len(VOCAB.encode("".join(long_context))) > MAX_LENGTH  # it was truncated
    # Greedy: a continuation made of the model's own argmax tokens is greedy, another is not.
    lm = _lm(rt, params)
    context = "The sky is"
    from lm import decode
    ids = np.zeros((1, 32), np.int32)
    prompt = list(VOCAB.encode(context))
    ids[0, :len(prompt)] = prompt
    with rt.context():
        new = np.asarray(decode.greedy_decode(rt.model, params, ids,
                                              np.array([len(prompt)], np.int32), 3))[0]
    # scored as token streams (random bytes need not decode to text and back)
    stream = [harness.START, *prompt, *new.tolist()]
    other = stream[:-1] + [(stream[-1] + 1) % 256 + 3]
    assert [g for _, g in lm.score([(stream, 3), (other, 3)])] == [True, False]
    too_long = [("a", "b" * (MAX_LENGTH + 5))]
    with pytest.raises(ValueError, match="max_length"):
        lm.loglikelihood(_requests(too_long))


def test_a_4x2_mesh_gives_the_one_device_numbers(model):
    cfg, rt, params = model
    one = _lm(rt, params, batch_size=8).loglikelihood(_requests(PAIRS))
    cfg8 = _tiny()
    cfg8.mesh.shape = (4, 2, 1)
    rt8 = train_lib.build_runtime(cfg8, Uniform(), 1, jax.devices()[:8])
    shardings = jax.tree.map(lambda a: a.sharding, rt8.abstract.params)
    params8 = jax.device_put(jax.device_get(params), shardings)
    with pytest.raises(ValueError, match="multiple"):
        _lm(rt8, params8, batch_size=4)  # 8 data shards
    eight = _lm(rt8, params8, batch_size=8).loglikelihood(_requests(PAIRS))
    np.testing.assert_allclose([r[0] for r in eight], [r[0] for r in one], rtol=1e-5, atol=1e-5)
    rolled = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(TEXTS)]
    np.testing.assert_allclose(_lm(rt8, params8, batch_size=8).loglikelihood_rolling(rolled),
                               _lm(rt, params, batch_size=8).loglikelihood_rolling(rolled),
                               rtol=1e-5)


def test_generation_is_greedy_text_cut_at_the_stop_sequence(model):
    cfg, rt, params = model
    from lm import decode
    lm = _lm(rt, params)
    prompts = ["Once upon a time", "Q: 2+2?"]
    requests = [Instance("generate_until", {}, (p, {"until": ["\n\n"], "max_gen_toks": 6}), i)
                for i, p in enumerate(prompts)]
    got = lm.generate_until(requests)
    for prompt, text in zip(prompts, got):
        ids = np.zeros((1, 32), np.int32)
        p = list(VOCAB.encode(prompt))
        ids[0, :len(p)] = p
        with rt.context():
            new = np.asarray(decode.greedy_decode(rt.model, params, ids,
                                                  np.array([len(p)], np.int32), 6))[0].tolist()
        if VOCAB.eos_id in new:
            new = new[:new.index(VOCAB.eos_id)]
        assert text == VOCAB.decode(new).split("\n\n")[0]
    assert lm._text(list(VOCAB.encode("ab STOP cd")), ["STOP"]) == "ab "


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    os.makedirs(root / "a")
    for split, n in (("train", 40), ("validation", 6)):
        with open(root / "a" / f"{split}-00000.jsonl", "w") as f:
            f.writelines(json.dumps({"text": f"The sky is blue. Water is wet. {i}"}) + "\n"
                         for i in range(n))
    return root


def _run_cfg(corpus, tasks, **harness_fields):
    cfg = tiny_config(steps=4, checkpoint_every=4)
    cfg.data.update(source="seqio", vocab="byte", heldout=False, seq_len=32,
                    shuffle_buffer_size=16, domains=f"a={corpus}/a/{{split}}-*.jsonl")
    cfg.model.update(vocab_size=320, max_len=64)
    cfg.eval.harness.update(tasks=f"{tasks}/toy_mc.yaml", batch_size=8, bootstrap_iters=0,
                            **harness_fields)
    return cfg


def test_tasks_run_in_the_loop_and_in_eval(corpus, tasks, tmp_path, one_device_module):
    cfg = _run_cfg(corpus, tasks, every=2)
    result = experiment.run(cfg, str(tmp_path / "run"), devices=one_device_module)
    logged = [m for m in read_metrics(str(tmp_path / "run")) if "harness/toy_mc/acc" in m]
    assert [m["step"] for m in logged] == [2, 4]
    assert "harness/toy_mc/correct_prob" in logged[-1]
    written = downstream.read(str(tmp_path / "run"))
    assert written["step"] == 4 and "samples" not in written
    with open(tmp_path / "run" / "harness_samples" / "toy_mc.jsonl") as f:
        assert len(f.readlines()) == len(MC_DOCS)
    assert result["harness/toy_mc/acc"] == logged[-1]["harness/toy_mc/acc"]
    # --mode=eval on the same checkpoint: the same numbers, in eval.json too.
    again = experiment.run(cfg, str(tmp_path / "run"), mode="eval", devices=one_device_module)
    assert again["harness/toy_mc/correct_prob"] == pytest.approx(
        logged[-1]["harness/toy_mc/correct_prob"], abs=1e-6)
    with open(tmp_path / "run" / "eval.json") as f:
        assert "harness/toy_mc/acc_norm" in json.load(f)
    on, off = (experiment.build(_run_cfg(corpus, tasks, in_loop=flag)) for flag in (True, False))
    assert [h.name for h in on.hooks] == ["harness"] and not off.hooks  # eval mode only


def test_bad_harness_fields_are_named_before_any_work(corpus, tasks, tmp_path):
    cfg = _run_cfg(corpus, tasks)
    cfg.eval.harness.update(tasks=f"no_such_task_anywhere,{tasks}/missing.yaml", limit=-1.0,
                            max_length=1000)
    with pytest.raises(ValueError) as e:
        experiment.run(cfg, str(tmp_path / "bad"), devices=jax.devices()[:1])
    text = str(e.value)
    for part in ("no_such_task_anywhere", "missing.yaml", "limit", "max_length"):
        assert part in text
    assert not os.path.exists(tmp_path / "bad" / "checkpoints")
    cfg = _run_cfg(corpus, tasks)
    cfg.data.source = "synthetic"
    assert any("data.source" in p for p in downstream.problems(cfg))


def test_compare_tables_task_metrics_with_paired_intervals(tmp_path):
    def run(arm, seed, acc, nll):
        r = compare.Run(arm, seed, "", "ok", steps=10, eval_rows=8, train_domains=["a"],
                        evals=[{"step": 10, "eval/a/loss": 2.0 + 0.01 * seed}], tokens=1.0,
                        step_flops=1.0, flops=10.0, seconds=1.0)
        r.tasks = {"t/acc": acc, "t/acc_stderr": 0.02, "t/bits_per_byte": nll}
        r.higher_is_better = {"t/acc": True, "t/bits_per_byte": False}
        return r
    runs = [run("base", s, 0.30 + 0.01 * s, 1.5) for s in range(3)] + \
           [run("new", s, 0.35 + 0.01 * s, 1.4 + 0.001 * s) for s in range(3)]
    summary = compare.summarize(runs, "base", 0.95)
    assert summary["tasks"] == {"t/acc": True, "t/bits_per_byte": False}
    acc = summary["arms"]["new"]["quantities"]["task/t/acc"]
    assert acc["diff"]["mean"] == pytest.approx(0.05) and acc["verdict"] == "better"
    assert summary["arms"]["new"]["quantities"]["task/t/bits_per_byte"]["verdict"] == "better"
    text = compare.write_markdown(summary, str(tmp_path / "c.md"), "t")
    assert "## Downstream tasks" in text and "| t/acc | higher | 0.0200 |" in text


def test_length_buckets_pad_under_a_quarter_with_few_shapes(model):
    widths = [harness.bucket(n, 1024) for n in range(1, 1025)]
    assert all(n <= w <= max(16, 1.25 * n) for n, w in zip(range(1, 1025), widths))
    assert len(set(widths)) <= 4 * 7 + 1  # four a doubling from 16 to 1024
    assert harness.bucket(700, 512) == 512 and harness.scored_bucket(5, 6) == 6
    cfg, rt, params = model
    assert _lm(rt, params).loglikelihood(_requests([("The cat", "")])) == [(0.0, True)]


def test_a_task_whose_dataset_is_not_cached_offline_says_how_to_fix_it(model, tmp_path,
                                                                       monkeypatch):
    """No network in tests (conftest): a hub dataset missing from the cache is named, with the
    two fixes."""
    cfg, rt, params = model
    (tmp_path / "hub.yaml").write_text(
        "task: hub_only\ndataset_path: no-such-org/no-such-dataset\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: ['a', 'b']\n"
        "doc_to_target: 0\n")
    h = tiny_config().eval.harness
    h.tasks = str(tmp_path / "hub.yaml")
    with pytest.raises(ValueError, match="HF_HOME.*task YAML over local files"):
        downstream.run_tasks(_lm(rt, params), h)
