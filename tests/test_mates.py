"""MATES: Gumbel-top-k samples what it claims, the influence model learns a planted signal,
the staged source serves each chosen row once and regenerates its pool, the cloze rows score
only the answer, and a run resumed mid-stage is identical to an unbroken one."""

import itertools
import json

import jax
import numpy as np
import pytest
import scipy.stats

from data import sources
from runs import experiment
from data import cloze
from helpers import TIMING, host_methods_of, synthetic, tiny_config
from lm.metrics import read_metrics
from reweight import mates


def _plackett_luce_inclusion(p: np.ndarray, k: int) -> np.ndarray:
    """P(i among the first k draws without replacement, each draw ∝ p), by enumeration."""
    inclusion = np.zeros(len(p))
    for order in itertools.permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= p[i] / left
            left -= p[i]
        inclusion[list(order)] += prob
    return inclusion


def test_gumbel_top_k_samples_exp_scores_over_tau_and_tau_to_zero_is_top_k():
    scores, tau, draws = np.array([0.0, 0.5, 1.0, -1.0, 0.2]), 0.5, 20_000
    p = np.exp(scores / tau) / np.exp(scores / tau).sum()
    rng = np.random.default_rng(0)
    for k in (1, 2):
        counts = np.zeros(len(scores))
        for _ in range(draws):
            counts[mates.gumbel_top_k(scores, k, tau, rng)] += 1
        expected = _plackett_luce_inclusion(p, k)
        # binomial standard error < 0.0036 at 20k draws: 0.012 is > 3 sigma
        np.testing.assert_allclose(counts / draws, expected, atol=0.012)
    assert mates.gumbel_top_k(scores, 2, 1e-6, rng).tolist() == [1, 2]
    with pytest.raises(ValueError, match="tau"):
        mates.gumbel_top_k(scores, 2, 0.0, rng)


def test_influence_model_learns_clean_versus_shuffled_text():
    cfg = tiny_config()
    cfg.data.seq_len = 32
    it = synthetic(cfg)
    rng = np.random.default_rng(0)
    rows = [it.row(0, r, 1) for r in range(320)]
    tokens = np.stack([r["targets"] for r in rows])
    corrupt = np.arange(320) % 2 == 1
    for i in np.nonzero(corrupt)[0]:
        tokens[i] = rng.permutation(tokens[i])  # same tokens, no chain structure
    mask = np.ones_like(tokens, bool)
    y = np.where(corrupt, -1.0, 1.0) + 0.3 * rng.standard_normal(320)
    model = mates.InfluenceModel(cfg.model.vocab_size, dim=32, heads=2, layers=1, max_len=32)
    fitter = mates.InfluenceFitter(model, lr=3e-3, epochs=30, batch_size=32)
    train, hold = np.arange(256), np.arange(256, 320)
    params = fitter.init(jax.random.key(0), tokens, mask)
    params, _ = fitter.fit(params, tokens[train], mask[train], y[train], rng)
    pred = fitter.predict(params, tokens[hold], mask[hold])
    assert scipy.stats.spearmanr(pred, y[hold]).statistic > 0.5
    restored = mates.params_from_text(mates.params_to_text(params))
    np.testing.assert_allclose(fitter.predict(restored, tokens[hold], mask[hold]), pred)
    # Chunks and their padding do not change a prediction: 37 rows in 3 chunks of 16 (the
    # last padded) against one chunk of 64.
    whole = mates.InfluenceFitter(model, lr=3e-3, epochs=30, batch_size=32, predict_chunk=64)
    np.testing.assert_allclose(fitter.predict(params, tokens[:37], mask[:37]),
                               whole.predict(params, tokens[:37], mask[:37]), rtol=1e-5,
                               atol=1e-6)
    assert fitter.predict_rows(37) == 48 and whole.predict_rows(37) == 64


def test_staged_source_serves_each_chosen_row_once_and_redraws_its_pool():
    cfg = tiny_config()
    method = mates.Mates(_mates_config(), reference={})
    src = method.wrap(synthetic(cfg))
    first = next(src)  # stage 0: the mixture as drawn
    assert first["inputs"].shape == (8, 16)
    src.draw_pool(3)
    chosen = np.array([1, 4, 5, 9, 12, 13, 17, 20, 21, 22, 23, 2, 3, 6, 7, 8])
    src.serve(chosen)
    served = next(src)
    state = json.loads(json.dumps(method.get_state()))  # MATES's own checkpoint item
    data_state = json.loads(json.dumps(src.get_state()))  # the pipeline's: the inner source's
    fresh = mates.Mates(_mates_config(), reference={})
    fresh_src = fresh.wrap(synthetic(cfg))
    fresh.set_state(state)  # redraws the pool, as the loop restores methods first
    fresh_src.set_state(data_state)
    a, b = next(src), next(fresh_src)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(served[k], src.pool[k][chosen[:8]])
    with pytest.raises(RuntimeError, match="select"):
        next(src)
    np.testing.assert_array_equal(next(src.inner)["inputs"], next(fresh_src.inner)["inputs"])


def test_cloze_rows_score_only_the_last_word(tmp_path):
    (tmp_path / "corpus" / "tale").mkdir(parents=True)
    docs = ["The old man walked down to the river every morning to watch the boats. "
            "He never said a word to anyone, and nobody asked.",
            "short one."]
    with open(tmp_path / "corpus" / "tale" / "validation-00000.jsonl", "w") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    encode = lambda s: [3 + b for b in s.encode()]  # bytes, ids 0-2 reserved
    assert list(cloze.cloze_pairs(docs, every=1)) == [
        ("The old man walked down to the river every morning to watch the", "boats"),
        ("The old man walked down to the river every morning to watch the boats. He never "
         "said a word to anyone, and nobody", "asked")]
    (row,) = cloze.cloze_rows(str(tmp_path), "tale", encode, seq_len=40, count=1)
    answer = row["targets"][row["loss_mask"] > 0]
    assert bytes(int(t) - 3 for t in answer) == b" boats"
    n = int(row["segment_ids"].sum())
    np.testing.assert_array_equal(row["inputs"][1:n], row["targets"][:n - 1])
    assert row["inputs"][0] == 0 and n == 40 and row["positions"][n - 1] == n - 1
    (batch,) = cloze.batches([row] * 3, global_batch=4)
    assert batch["loss_mask"].shape == (4, 40) and batch["loss_mask"][3].sum() == 0
    with pytest.raises(ValueError, match="fewer"):
        cloze.cloze_rows(str(tmp_path), "tale", encode, seq_len=40, count=3)


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """The runs below compile the same steps: a persistent cache makes each resume ~10x
    cheaper. Restored afterwards, so other test modules are unaffected."""
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {k: getattr(jax.config, k) for k in keys}
    jax.config.update(keys[0], str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update(keys[1], 0)
    yield
    for k, v in old.items():
        jax.config.update(k, v)


def _mates_config(**mates_fields):
    cfg = tiny_config(steps=12, checkpoint_every=100)
    cfg.reweight.selector = "mates"
    cfg.reweight.mates.update(stage_steps=4, reference="validation",
                              reference_domain="synthetic_0", reference_rows=8,
                              probe_size=16, probe_chunk=8, fit_epochs=3, fit_batch=8,
                              model_dim=16, model_heads=2, holdout=0.25, **mates_fields)
    return cfg


def _train(cfg, workdir):
    exp = experiment.build(cfg)
    exp.train(workdir, devices=jax.devices()[:1])
    return exp.methods[0]


def test_random_mode_is_the_same_path_with_equal_scores_and_bad_fields_fail(tmp_path):
    cfg = _mates_config(mode="random")
    cfg.train.run_steps = 5  # same schedule as the runs below: the step compiles once
    selector = _train(cfg, str(tmp_path))
    (stage,) = [m for m in read_metrics(str(tmp_path)) if "mates/stage" in m]
    assert "mates/holdout_spearman" not in stage and selector.stage == 1
    assert len(selector.source.selected) == 4 * 8 and len(selector.source.pool["inputs"]) == 160
    cfg.reweight.mates.selection_ratio = 0.0
    with pytest.raises(ValueError, match="selection_ratio"):
        host_methods_of(cfg)


def test_resume_mid_stage_and_at_a_stage_boundary_is_identical(tmp_path):
    cfg = _mates_config()
    _train(cfg, str(tmp_path / "a"))
    for run_steps in (4, 2, 0):  # stop at a stage boundary (4), then mid-stage (6)
        cfg.train.run_steps = run_steps
        _train(cfg, str(tmp_path / "b"))
    strip = lambda ms: [{k: v for k, v in m.items() if k not in
                         (*TIMING, "mates/stage_train_seconds", "mates/overhead_seconds_fraction")
                         and not k.startswith("mates/seconds")}
                        for m in ms]
    parts = ("draw", "probe", "fit", "score")
    assert all(0 < sum(m[f"mates/seconds/{p}"] for p in parts) <= m["mates/seconds"]
               for m in read_metrics(str(tmp_path / "a")) if "mates/stage" in m)
    straight = strip(read_metrics(str(tmp_path / "a")))
    assert straight == strip(read_metrics(str(tmp_path / "b")))
    stages = [m for m in straight if "mates/stage" in m]
    assert [m["step"] for m in stages] == [4, 8]
    assert all(-1 <= m["mates/holdout_spearman"] <= 1 and m["mates/overhead_fraction"] > 0
               for m in stages)
    shares = [m[f"mates/selected/synthetic_{d}/share"] for m in stages for d in range(3)]
    assert np.isclose(sum(shares), 2.0)


def test_overhead_counts_each_probe_and_the_masked_reference_forward():
    """By hand, tiny config: a candidate is its row's fwd + bwd; the reference forward runs the
    unembedding (2 d V per position) only at its loss positions (3 per row here)."""
    cfg = _mates_config()
    fpt, n_params, row_len, probes = 1e6, 5000, 16, 16
    d, v = cfg.model.d_model, cfg.model.vocab_size
    mask = np.zeros((8, 12))
    mask[:, -3:] = 1
    ref_fwd = 8 * 12 * (fpt / 3 - 2 * d * v) + 8 * 3 * 2 * d * v
    stage = cfg.reweight.mates.stage_steps * cfg.train.batch_size * row_len * fpt
    probing = {}
    for probe in mates.PROBES:
        cfg.reweight.mates.probe = probe
        method = mates.Mates(cfg, {"targets": np.zeros((8, 12), np.int32), "loss_mask": mask})
        fitter = method._get_fitter(row_len)
        params = fitter.init(jax.random.key(0), np.zeros((2, row_len), np.int32),
                             np.ones((2, row_len), bool))
        out = method._overhead(params, fitter, fpt, n_params, probes, 12, 160, row_len)
        probing[probe] = out["mates/probe_flops_fraction"] * stage
        assert np.isclose(out["mates/overhead_flops"], out["mates/overhead_fraction"] * stage)
    np.testing.assert_allclose(probing["first_order"],
                               probes * (row_len * fpt + 2 * n_params) + 3 * ref_fwd)
    np.testing.assert_allclose(probing["exact"], probes * (row_len * fpt + ref_fwd) + ref_fwd)


def test_the_validation_reference_set_is_held_out_from_the_eval():
    """MATES tuned on the very rows it is scored on would win by construction: its
    "validation" reference set is the rows after the eval's first data.eval_rows."""
    cfg = tiny_config()
    env = experiment.Env(cfg)
    ref = env.reference_rows("validation", "synthetic_0", 8, 0)
    (evals,) = sources.build_data(cfg, train=False).eval_sets["synthetic_0"]
    assert ref["inputs"].shape == (8, cfg.data.seq_len) and ref["loss_mask"].all()
    eval_rows = {r.tobytes() for r in evals["inputs"]}
    assert not any(r.tobytes() in eval_rows for r in ref["inputs"])
    lego = tiny_config()
    lego.model.vocab_size = 64
    lego.data.update(source="lego", lego_k=3, lego_supervision="answer", seq_len=32)
    with pytest.raises(ValueError, match="after the eval's first config.data.eval_rows=8"):
        experiment.Env(lego).reference_rows("validation", "skill_1", 4, 0)


def test_diagnostics_measure_the_signal_without_changing_the_selection(tmp_path):
    """diagnostic_probes: more candidates probed against the whole reference set and each half
    (split-half reliability, the model's Spearman on unseen probes); the rows chosen and the
    overhead are those of the run without them."""
    runs = {}
    for n in (0, 16):
        cfg = _mates_config(diagnostic_probes=n)
        selector = _train(cfg, str(tmp_path / str(n)))
        runs[n] = ([m for m in read_metrics(str(tmp_path / str(n))) if "mates/stage" in m],
                   selector.source.selected)
    (plain, chosen), (checked, chosen_checked) = runs[0], runs[16]
    np.testing.assert_array_equal(chosen, chosen_checked)
    for a, b in zip(plain, checked):
        assert a["mates/overhead_flops"] == b["mates/overhead_flops"]
        assert not any(k.startswith("mates/diagnostic/") for k in a)
        assert b["mates/diagnostic/probes"] == 16
        for k in ("model_spearman", "split_half_spearman"):
            assert -1 <= b[f"mates/diagnostic/{k}"] <= 1
        r = b["mates/diagnostic/split_half_spearman"]
        assert b["mates/diagnostic/split_half_reliability"] == pytest.approx(2 * r / (1 + r))


def test_each_process_draws_apart_from_the_fit():
    """numpy pads a seed list with zeros: [seed, stage, 2] was both process 2's selection
    stream and the fit's. Every process's stream now differs from the shared fit's."""
    fit = mates.stage_rng(0, 1, 0, mates._FIT).random(4)
    for process in range(8):
        for stream in (mates._SELECT, mates._DIAGNOSTIC):
            assert not np.allclose(mates.stage_rng(0, 1, process, stream).random(4), fit)
    assert np.random.default_rng([0, 1, 2]).random() == np.random.default_rng([0, 1, 2, 0]).random()
