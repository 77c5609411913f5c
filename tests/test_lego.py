"""LEGO data: answers follow the clauses, skill s is s hops, examples are distinct and varied,
the rows carry the loss where they should, and greedy decoding agrees with exact match."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from data import lego
from lm import train as train_lib
from lm.decode import greedy_decode
from reweight.interface import Uniform


def _words(row):
    n = int(row["segment_ids"].sum())
    return [lego.VOCAB[t] for t in row["targets"][:n]], row["loss_mask"][:n]


def _hops(words, var):
    """Clauses followed from `var` to the digit."""
    body = " ".join(words).split("Input:")[1].split("Output:")[0]
    defs = {c.split()[0]: c.split()[3] for c in body.split(",")}
    hops = 1
    while defs[var] not in "01":
        var, hops = defs[var], hops + 1
    return hops


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_answer_resolves_the_chain_in_exactly_s_hops(k):
    gen = lego.Lego(k, "answer", lego.seq_len_needed(k, "answer"), seed=1, eval_examples=20)
    for s in range(1, k + 1):
        for index in range(20):
            words, mask = _words(gen.train_row(s, index))
            var, value = words[-4], int(words[-1])
            assert words[-5:-1] == ["Output:", var, "=", "val"]
            assert lego.resolve(words, var) == value
            assert _hops(words, var) == s
            assert mask.tolist() == [0.0] * (len(words) - 1) + [1.0]  # the answer digit only


def test_chain_supervision_spells_every_hop():
    """`x_1 v_1` then, per hop, `x_{i-1} x_i op_i v_i`: x_i's clause points to x_{i-1} with op_i,
    v_i is x_i's value, and x_i is i hops deep."""
    k = 5
    gen = lego.Lego(k, "chain", lego.seq_len_needed(k, "chain"), seed=2, eval_examples=10)
    for s in range(1, k + 1):
        n = lego.chain_len(s)
        for row in [gen.train_row(s, i) for i in range(10)] + gen.eval_rows(s):
            words, mask = _words(row)
            chain = words[-n:]
            assert mask.tolist() == [0.0] * (len(words) - n) + [1.0] * n
            body = " ".join(words).split("Input:")[1].split("Output:")[0]
            clauses = {c.split()[0]: c.split()[2:] for c in body.split(",")}
            assert clauses[chain[0]][1] in "01" and _hops(words, chain[0]) == 1
            assert lego.resolve(words, chain[0]) == int(chain[1])
            names = [chain[0]]
            for depth, (parent, var, op, value) in enumerate(
                    zip(*[iter(chain[2:])] * 4), start=2):
                assert parent == names[-1] and clauses[var] == [op, parent]
                assert lego.resolve(words, var) == int(value) and _hops(words, var) == depth
                names.append(var)
            assert words[-n - 3:-n] == ["Output:", names[-1], "="]


def test_examples_are_distinct_and_vary():
    k = 5
    gen = lego.Lego(k, "answer", 32, seed=0, eval_examples=100)
    for s in range(1, k + 1):
        evals = [tuple(r["targets"]) for r in gen.eval_rows(s)]
        train = [tuple(gen.train_row(s, i)["targets"]) for i in range(1000)]
        assert len(set(evals)) == 100 and len(set(train)) == 1000
        assert not set(evals) & set(train)
        words = [_words(gen.train_row(s, i))[0] for i in range(200)]
        answers = [w[-1] for w in words]
        assert 0.35 < answers.count("1") / len(answers) < 0.65
        assert len({w[-4] for w in words}) > 20  # the queried name varies over a-z
        assert len({tuple(w[1:5]) for w in words}) > 50  # so do the first clauses
    # Another seed, other examples; the same seed, the same ones.
    other = lego.Lego(k, "answer", 32, seed=1, eval_examples=100)
    assert not np.array_equal(other.train_row(3, 0)["targets"], gen.train_row(3, 0)["targets"])
    again = lego.Lego(k, "answer", 32, seed=0, eval_examples=100)
    assert np.array_equal(again.train_row(3, 7)["targets"], gen.train_row(3, 7)["targets"])


def test_train_iter_mixes_skills_and_resumes():
    gen = lego.Lego(3, "answer", 32, seed=0, eval_examples=8)
    it = lego.make_train_iter(gen, global_batch=8, weights="1,0,3", seed=4)
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    after = [next(it) for _ in range(2)]
    assert set(np.concatenate([b["domain_id"] for b in first]).tolist()) == {0, 2}
    again = lego.make_train_iter(gen, global_batch=8, weights="uniform", seed=4)
    again.set_state(state)
    for a, b in zip(after, [next(again) for _ in range(2)]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    evals = lego.make_eval_batches(gen, global_batch=4, process_index=1, process_count=2)
    assert list(evals) == ["skill_1", "skill_2", "skill_3"]
    assert len(evals["skill_2"]) == 2 and evals["skill_2"][0]["inputs"].shape == (2, 32)
    assert (evals["skill_3"][1]["domain_id"] == 2).all()
    with pytest.raises(ValueError, match="at least 46"):
        lego.Lego(5, "chain", 32)


def test_greedy_decode_agrees_with_exact_match(one_device):
    """Rows whose answer is what the model decodes must be exact matches under teacher forcing,
    and every row's exact-match flag must equal 'greedy decoding reproduces the answer'."""
    k = 3
    n = lego.chain_len(k)
    cfg = base.get_config()
    cfg.model.update(vocab_size=lego.VOCAB_SIZE, d_model=32, num_heads=2, num_layers=2,
                     mlp_dim=64, max_len=32)
    cfg.data.seq_len = lego.seq_len_needed(k, "chain")
    cfg.train.batch_size = 8
    gen = lego.Lego(k, "chain", cfg.data.seq_len, seed=0, eval_examples=8)
    rows = gen.eval_rows(k)
    rt = train_lib.build_runtime(cfg, Uniform(), num_domains=8, devices=one_device)
    with rt.context():
        params = rt.init_fn(jax.random.key(3)).params
        batch = {key: np.stack([r[key] for r in rows]) for key in rows[0]}
        lengths = batch["segment_ids"].sum(-1)
        prompt = lengths - n
        decoded = np.asarray(greedy_decode(rt.model, params, jnp.asarray(batch["targets"]),
                                           jnp.asarray(prompt), n))
        # Half the rows get the model's own continuation as their answer.
        for b in range(0, 8, 2):
            batch["targets"][b, prompt[b]:lengths[b]] = decoded[b]
            batch["inputs"][b, prompt[b] + 1:lengths[b]] = decoded[b, :-1]
        batch["domain_id"] = np.arange(8, dtype=np.int32)  # one domain per row: per-row flags
        exact = np.asarray(rt.eval_fn(params, rt.global_batch(batch))["domain_exact"])
    answers = np.stack([batch["targets"][b, prompt[b]:lengths[b]] for b in range(8)])
    expected = (decoded == answers).all(-1)
    assert expected[::2].all() and not expected[1::2].all()
    np.testing.assert_array_equal(exact, expected.astype(np.float32))


def test_seqio_tasks_serve_the_same_rows():
    import seqio
    gen = lego.Lego(2, "answer", 16, seed=5, eval_examples=4)
    names = lego.register_seqio_tasks(gen, prefix="test_lego")
    assert len(names) == 2
    task = seqio.get_mixture_or_task(names[1])
    valid = list(task.get_dataset(None, split="validation", shuffle=False).as_numpy_iterator())
    assert len(valid) == 4
    np.testing.assert_array_equal(valid[2]["targets"], gen.eval_rows(2)[2]["targets"])
    train = task.get_dataset(None, split="train", shuffle=False).take(3).as_numpy_iterator()
    for i, ex in enumerate(train):
        np.testing.assert_array_equal(ex["loss_mask"], gen.train_row(2, i)["loss_mask"])
        np.testing.assert_array_equal(ex["inputs"], gen.train_row(2, i)["inputs"])
