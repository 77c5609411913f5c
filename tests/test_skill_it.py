"""Skill-It: the update is the paper's formula, the window counts evaluations, weight flows to
the skills with edges into a lagging skill, the graph estimator finds a planted prerequisite,
and a LEGO run resumes identically."""

import json
import os

import jax
import numpy as np
import pytest

from data import sources
from runs import experiment
from configs import base
from data import lego
from helpers import TIMING, host_methods_of
from lm.metrics import read_metrics
from reweight.skill_it import SkillIt, parse_graph, reference_edges

NAMES = ["a", "b", "c"]
GRAPH = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 1.0]])


def _softmax(x):
    z = np.exp(x - x.max())
    return z / z.sum()


def test_update_is_the_formula_on_hand_made_losses():
    p = SkillIt(NAMES, GRAPH, eta=0.7, window=2, update_every=10)
    np.testing.assert_allclose(p.initial_weights(), _softmax(0.7 * GRAPH @ np.ones(3)))
    assert p.update(10, {}, {}) is None  # no evaluation yet: keep the weights
    evals = [[3.0, 2.0, 1.0], [2.5, 1.5, 0.9], [2.0, 1.4, 0.2]]
    for i, e in enumerate(evals):
        p.observe_eval(5 * (i + 1), dict(zip(NAMES, e)))
    window = np.sum(evals[-2:], axis=0)
    np.testing.assert_allclose(p.update(15, {"a": 9.0}, {}), _softmax(0.7 * GRAPH @ window))
    # Recomputed from scratch: the same window gives the same weights again.
    np.testing.assert_allclose(p.update(25, {}, {}), _softmax(0.7 * GRAPH @ window))


def test_window_counts_evaluations_not_rounds():
    p = SkillIt(NAMES, GRAPH, eta=1.0, window=3, update_every=100)
    for i in range(5):  # five evaluations within one round
        p.observe_eval(i, {n: float(i) for n in NAMES})
    assert [h[0] for h in p.history] == [2.0, 3.0, 4.0]
    np.testing.assert_allclose(p.update(100, {}, {}), _softmax(GRAPH @ np.full(3, 9.0)))


def test_weight_moves_to_the_skills_with_edges_into_the_lagging_one():
    graph = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # only a -> b
    p = SkillIt(NAMES, graph, eta=1.0, window=1, update_every=1)
    p.observe_eval(1, {"a": 0.1, "b": 0.1, "c": 0.1})
    before = p.update(1, {}, {})
    p.observe_eval(2, {"a": 0.1, "b": 3.0, "c": 0.1})
    w = p.update(2, {}, {})
    # a and c are equally good; a feeds the lagging b, c does not: weight shifts from c to a.
    assert w[0] / w[2] > 4 * before[0] / before[2] and w[1] > before[1]
    np.testing.assert_allclose(w[0] / w[2], np.exp(0.5 * 3.0))


def test_target_mask_and_normalisation():
    p = SkillIt(NAMES, GRAPH, eta=1.0, window=1, update_every=1, target=["c"],
                normalize="initial")
    np.testing.assert_allclose(p.initial_weights(), _softmax(GRAPH @ np.array([0, 0, 1.0])))
    p.observe_eval(1, {"a": 4.0, "b": 2.0, "c": 1.0})
    p.observe_eval(2, {"a": 2.0, "b": 2.0, "c": 0.5})
    np.testing.assert_allclose(p.update(2, {}, {}), _softmax(GRAPH @ np.array([0, 0, 0.5])))


def test_state_round_trips_and_config_builds_it():
    cfg = base.get_config()
    cfg.data.domains = ",".join(f"{n}=/{n}/*.jsonl" for n in NAMES)
    cfg.reweight.mixture = "skill_it"
    cfg.reweight.skill_it.update(graph="1,0.5,0;0,1,0;0,0.5,1", eta=0.3, window=2,
                                 update_every=7)
    p = host_methods_of(cfg)[0].policy
    np.testing.assert_allclose(p.graph, GRAPH)
    p.observe_eval(1, {"a": 1.0, "b": 2.0, "c": 3.0})
    q = host_methods_of(cfg)[0].policy
    q.set_state(json.loads(json.dumps(p.get_state())))
    np.testing.assert_allclose(q.update(7, {}, {}), p.update(7, {}, {}))
    np.testing.assert_allclose(parse_graph("", NAMES), np.eye(3))
    with pytest.raises(ValueError, match="3x3"):
        parse_graph("1,0;0,1", NAMES)
    with pytest.raises(ValueError, match="eta must be > 0"):
        SkillIt(NAMES, GRAPH, eta=0.0, window=1, update_every=1)


def test_written_edges_weigh_half_as_in_the_reference_trainer():
    """HazyResearch/skill-it's trainer turns off-diagonal 1s into 0.5: the LEGO graph's first
    round is then [.163 .346 .163 .163 .163] (with 1s kept: [.118 .528 .118 .118 .118])."""
    from configs import lego_skill_it
    cfg = lego_skill_it.get_config()
    names = [f"skill_{i}" for i in range(1, 6)]
    cfg.data.domains = ",".join(f"{n}=/{n}/*.jsonl" for n in names)
    cfg.data.source = "seqio"
    p = host_methods_of(cfg)[0].policy
    np.testing.assert_allclose(p.initial_weights(), [.163, .346, .163, .163, .163], atol=5e-4)
    assert p.graph[1, 0] == 0.5 and p.graph[1, 1] == 1.0 and p.graph[0, 1] == 0.0
    cfg.reweight.skill_it.off_diagonal_ones = 1.0
    np.testing.assert_allclose(host_methods_of(cfg)[0].policy.initial_weights(),
                               [.118, .528, .118, .118, .118], atol=5e-4)
    np.testing.assert_array_equal(reference_edges(np.array([[1.0, 1.0], [0.3, 1.0]]), 0.5),
                                  [[1.0, 0.5], [0.3, 1.0]])


def _lego_config(**train):
    c = base.get_config()
    c.model.update(vocab_size=lego.VOCAB_SIZE, d_model=32, num_heads=2, num_layers=1,
                   mlp_dim=64, max_len=32)
    c.data.update(source="lego", lego_k=3, lego_supervision="answer", eval_rows=8,
                  seq_len=lego.seq_len_needed(3, "answer"))
    # Evals 4 steps apart from the barriers (saves, updates): see the report on lm/loop.py's
    # prefetch release at eval-only steps.
    c.train.update(batch_size=8, steps=16, lr=1e-2, warmup_steps=2, log_every=1, eval_every=4,
                   checkpoint_every=8, progress_bar=False, peak_flops=1e9)
    c.reweight.mixture = "skill_it"
    c.reweight.skill_it.update(graph="1,0,0;1,1,0;0,1,1", eta=2.0, window=3, update_every=8)
    c.train.update(eval_at_start=True, **train)
    return c


def _train(cfg, workdir):
    experiment.build(cfg).train(workdir, devices=jax.devices()[:1])


def test_lego_skill_it_run_resumes_identically(tmp_path):
    straight, halves = str(tmp_path / "straight"), str(tmp_path / "halves")
    _train(_lego_config(), straight)
    _train(_lego_config(run_steps=8), halves)
    _train(_lego_config(), halves)
    drop = TIMING
    a = [{k: v for k, v in m.items() if k not in drop} for m in read_metrics(straight)]
    b = [{k: v for k, v in m.items() if k not in drop} for m in read_metrics(halves)]
    assert a == b
    weights = [m for m in a if "mixture/skill_1/weight" in m]
    assert [m["step"] for m in weights] == [0, 8, 16]
    assert len({m["mixture/skill_1/weight"] for m in weights}) == 3
    # The eval at step 0 is in the first window, as in the reference trainer: the weights of
    # step 8 are the formula on the evals of steps 0, 4 and 8 (window 3).
    evals = {m["step"]: [m[f"eval/skill_{i}/loss"] for i in (1, 2, 3)]
             for m in a if "eval/skill_1/loss" in m}
    assert sorted(evals)[:3] == [0, 4, 8]
    graph = np.array([[1.0, 0, 0], [0.5, 1, 0], [0, 0.5, 1]])
    expected = _softmax(2.0 * graph @ np.sum([evals[0], evals[4], evals[8]], axis=0))
    np.testing.assert_allclose([weights[1][f"mixture/skill_{i}/weight"] for i in (1, 2, 3)],
                               expected, rtol=1e-5)
    assert os.path.exists(os.path.join(straight, "mixture_weights.png"))


def _pair_rows(rng, maps, n, seq_len=16):
    """Rows of (x, map(x)) pairs, the maps taking turns; the loss is on each map(x)."""
    rows = []
    for _ in range(n):
        tokens = []
        for p in range(seq_len // 2):
            domain, table = maps[p % len(maps)]
            x = int(rng.choice(domain))
            tokens += [x, int(table[x])]
        targets = np.array(tokens, np.int32)
        rows.append({"inputs": np.concatenate([[0], targets[:-1]]).astype(np.int32),
                     "targets": targets, "segment_ids": np.ones(seq_len, np.int32),
                     "positions": np.arange(seq_len, dtype=np.int32),
                     "loss_mask": np.tile([0.0, 1.0], seq_len // 2).astype(np.float32)})
    return rows


@pytest.mark.slow  # five short trainings: ~30 s alone, 95 s on the shared machine
def test_graph_estimator_recovers_a_planted_prerequisite(tmp_path):
    """Skill "fg" teaches two maps f and g; skill "f" uses only f. Training on fg alone must
    help f (relatively) more than training on f alone helps fg: A[0, 1] > A[1, 0]."""
    from runs import skill_graph
    from helpers import tiny_config
    from data.mixing import Mixer
    from data.mixing import parse_weights

    table_rng = np.random.default_rng(0)
    f = dict(zip(range(3, 33), table_rng.permutation(np.arange(3, 33))))
    g = dict(zip(range(33, 63), table_rng.permutation(np.arange(33, 63))))
    maps = {"fg": [(np.arange(3, 33), f), (np.arange(33, 63), g)], "f": [(np.arange(3, 33), f)]}
    train = {n: _pair_rows(np.random.default_rng([1, i]), m, 512) for i, (n, m) in
             enumerate(maps.items())}
    evals = {n: _pair_rows(np.random.default_rng([2, i]), m, 8) for i, (n, m) in
             enumerate(maps.items())}

    def make_data(cfg):
        it = Mixer.from_rows(train, global_batch=cfg.train.batch_size, seed=cfg.seed,
                             weights=parse_weights(cfg.data.weights, list(train)))
        return sources.Data(it, {n: [{**{k: np.stack([r[k] for r in rows]) for k in rows[0]},
                                         "domain_id": np.full(8, d, np.int32)}]
                                    for d, (n, rows) in enumerate(evals.items())}, tuple(train))

    cfg = tiny_config(lr=1e-2, warmup_steps=5, checkpoint_every=1000, log_every=100)
    cfg.skill_graph.update(start_steps=5, steps=30)
    out = skill_graph.estimate(cfg, str(tmp_path), make_data=make_data,
                               devices=jax.devices()[:1])
    graph = np.array(out["graph"])
    assert out["skills"] == ["fg", "f"] and graph.shape == (2, 2)
    assert graph[0, 1] > graph[1, 0] + 0.05, graph
    assert graph[0, 0] > 0.1 and graph[1, 1] > 0.1, graph  # each skill learns from itself
    saved = json.load(open(tmp_path / "skill_graph.json"))
    np.testing.assert_allclose(parse_graph(str(tmp_path / "skill_graph.json"), ["fg", "f"]),
                               graph)
    assert saved["steps"] == 30 and os.path.exists(tmp_path / "skill_graph.png")
    for run in ("start", "on_fg"):  # every training records what its ids mean
        assert json.load(open(tmp_path / run / "tokenizer_identity.json")) == {
            "kind": "synthetic ids"}
