"""The mixture sweep: trials run, resume and fail cleanly; the regression picks a mixture on
the simplex; the Ray backend gives the local backend's rows; bad configs fail clearly."""

import json
import os
import shutil

import numpy as np
import pytest

from data import sources
from runs import sweep
from helpers import tiny_config
from reweight import regmix


def _cfg(**sweep_fields):
    cfg = tiny_config(steps=3, checkpoint_every=3)
    cfg.sweep.update(num_trials=4, num_simulations=2000, top_k=16, holdout_fraction=0.5)
    cfg.sweep.update(**sweep_fields)
    return cfg


def _rows(workdir):
    with open(os.path.join(workdir, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A 4-trial sweep whose first trial fails (its data source fails to build)."""
    workdir = str(tmp_path_factory.mktemp("sweep"))
    calls = []

    def flaky(cfg):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return sources.build_data(cfg)

    first = sweep.run(_cfg(), workdir, flaky)
    return workdir, first


def test_sweep_runs_records_failures_and_resumes(local_sweep):
    workdir, first = local_sweep
    rows = _rows(workdir)
    assert [r["trial"] for r in rows] == [0, 1, 2, 3]
    assert [r["status"] for r in rows] == ["failed", "ok", "ok", "ok"]
    assert "disk on fire" in rows[0]["error"]
    assert first["trials_ok"] == 3 and first["trials_failed"] == 1
    second = sweep.run(_cfg(), workdir)  # retries only the failed trial
    assert second["trials_run"] == 1 and second["trials_ok"] == 4
    stamps = {p: os.path.getmtime(os.path.join(workdir, "trials", p, "run.json"))
              for p in os.listdir(os.path.join(workdir, "trials"))}
    third = sweep.run(_cfg(), workdir)
    assert third["trials_run"] == 0  # nothing reruns
    assert stamps == {p: os.path.getmtime(os.path.join(workdir, "trials", p, "run.json"))
                      for p in stamps}
    before = _rows(workdir)[1]
    os.remove(os.path.join(workdir, "trials", "0001", "run.json"))  # trained, status lost
    assert sweep.run(_cfg(), workdir)["trials_run"] == 1
    after = _rows(workdir)[1]  # evaluated from its final checkpoint, not retrained
    assert after["target"] == pytest.approx(before["target"], rel=1e-6)
    chosen = np.array(list(third["chosen"].values()))
    assert chosen.sum() == pytest.approx(1.0) and (chosen >= 0).all()
    with open(os.path.join(workdir, "mixture.txt")) as f:
        assert f.read().strip() == third["mixture"]
    for png in ("predicted_vs_actual.png", "chosen_mixture.png"):
        assert os.path.getsize(os.path.join(workdir, png)) > 1000
    weights = np.array([[r["weights"][n] for n in sorted(r["weights"])] for r in _rows(workdir)])
    assert len({tuple(w) for w in weights}) == 4  # four different mixtures
    np.testing.assert_allclose(weights.sum(1), 1.0)


def test_ray_backend_gives_the_local_rows(local_sweep, tmp_path):
    ray = pytest.importorskip("ray")
    workdir, _ = local_sweep
    for i in (1, 2, 3):  # already finished: the Ray sweep runs trial 0 only
        shutil.copytree(os.path.join(workdir, "trials", f"{i:04d}"),
                        tmp_path / "trials" / f"{i:04d}")
    shutil.copytree(os.path.join(workdir, "jax_cache"), tmp_path / "jax_cache")  # compiled
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}})
    try:
        summary = sweep.run(_cfg(backend="ray"), str(tmp_path))
    finally:
        ray.shutdown()
    assert summary["trials_run"] == 1
    local, remote = _rows(workdir), _rows(str(tmp_path))
    for a, b in zip(local, remote):
        assert a["weights"] == b["weights"] and a["status"] == b["status"] == "ok"
        assert a["target"] == pytest.approx(b["target"], rel=1e-6)
        assert a["eval"] == pytest.approx(b["eval"], rel=1e-6)


@pytest.mark.parametrize("field,value,match", [
    ("num_trials", 1, "num_trials must be >= 2"),
    ("target", "nope", "not an eval domain"),
    ("dirichlet_strengths", "1,0", "must be comma-separated floats > 0"),
    ("dirichlet_strengths", "-2", "must be comma-separated floats > 0"),
    ("backend", "slurm", "backend"),
])
def test_bad_sweep_configs_fail_clearly(tmp_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        sweep.run(_cfg(**{field: value}), str(tmp_path))
    assert not os.path.exists(tmp_path / "trials")


def test_draws_respect_the_safeguards():
    rng = np.random.default_rng(0)
    caps = np.array([0.5, 1.0, 1.0])
    w = regmix.draw_mixtures(rng, np.array([0.2, 0.3, 0.5]), [0.3, 3.0], 500, min_weight=0.05,
                             caps=caps)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert (w[:, 0] <= 0.5 + 1e-9).all() and ((w == 0) | (w >= 0.05)).all()
    assert (w == 0).any()  # spiky draws at strength 0.3 zero some domains
    with pytest.raises(ValueError, match="epoch caps"):
        regmix.draw_mixtures(rng, np.array([0.5, 0.5]), [1.0], 4, caps=np.array([0.1, 0.1]),
                             max_rounds=5)


def test_regmix_draws_are_the_references_and_spiky():
    """sail-sg/regmix: prior = center^0.5 renormalised, Dir(s * prior), s one of 15 log-spaced
    values over [0.1, 5]: most draws put most weight on one or two domains, unlike Dir(s K p)."""
    center = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    np.testing.assert_allclose(regmix.tempered(center, 0.5),
                               np.sqrt(center) / np.sqrt(center).sum())
    strengths = regmix.regmix_strengths(np.random.default_rng(0), 2000, 0.1, 5.0)
    np.testing.assert_allclose(np.unique(strengths), np.logspace(-1, np.log10(5), 15))
    ref = regmix.draw_regmix(np.random.default_rng(1), center, 2000)
    scaled = regmix.draw_mixtures(np.random.default_rng(1), center, [0.3, 1, 3], 2000)
    np.testing.assert_allclose(ref.sum(1), 1.0)
    spiky = lambda w: np.mean(w.max(1) > 0.8)
    assert spiky(ref) > 0.4 and spiky(scaled) < 0.15  # measured: 0.456 and 0.103
    caps = np.array([1.0, 1.0, 1.0, 0.3, 0.3])
    capped = regmix.draw_regmix(np.random.default_rng(2), center, 200, caps=caps, min_weight=0.01)
    assert (capped <= caps + 1e-9).all() and ((capped == 0) | (capped >= 0.01)).all()


def test_trials_are_distinct_mixtures_as_the_references():
    """A spiky prior draws the same one-domain mixture again and again (min_weight zeroes the
    rest); trained with the same seed, each repeat is a wasted proxy. The reference draws 100x,
    deduplicates and samples; here a sweep's trials are pairwise distinct."""
    center = np.full(7, 1 / 7)
    raw = regmix.draw_regmix(np.random.default_rng(0), center, 48, min_weight=0.01)
    assert len(np.unique(raw.round(6), axis=0)) == 45  # the old trials: 3 repeats among 48
    cfg = _cfg(num_trials=24, center="uniform", min_weight=0.01, strength_range="0.1,0.1")
    trials = sweep.draw_trials(cfg)  # the tiny config's 3 domains: 3 one-domain mixtures at most
    assert trials.shape == (24, 3) and len(np.unique(trials.round(6), axis=0)) == 24
    np.testing.assert_array_equal(trials, sweep.draw_trials(cfg))  # a function of the config
    one = np.eye(3)[[0, 1, 1, 2, 0]]
    with pytest.raises(ValueError, match="only 3 distinct mixtures"):
        regmix.distinct_sample(np.random.default_rng(0), one, 4)
    np.testing.assert_array_equal(regmix.distinct_sample(np.random.default_rng(0), one, 3),
                                  np.eye(3))


def test_regression_and_spearman():
    assert regmix.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert regmix.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert regmix.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)  # ties
    x = np.random.default_rng(1).dirichlet(np.ones(3), size=40)
    y = 2.0 + x @ np.array([1.0, -1.0, 0.5])
    predict = regmix.fit("ridge", x, y, ridge_alpha=1e-8, seed=0)
    np.testing.assert_allclose(predict(x), y, atol=1e-5)
    chosen, _ = regmix.top_k_mixture(predict, x, 5)
    assert chosen.argmax() == 1 and chosen.sum() == pytest.approx(1.0)


def test_gradient_boosted_regression_ranks_mixtures():
    pytest.importorskip("sklearn")
    x = np.random.default_rng(2).dirichlet(np.ones(3), size=160)
    y = (x[:, 0] - 0.5) ** 2 + x[:, 1]  # not linear
    predict = regmix.fit("gbm", x[:120], y[:120], ridge_alpha=0.0, seed=0)
    assert regmix.spearman(predict(x[120:]), y[120:]) > 0.9


@pytest.mark.slow
def test_vmapped_group_matches_separate_trials(local_sweep, tmp_path):
    workdir, _ = local_sweep
    cfg = _cfg(vmap_trials=2)
    sweep.group_job(cfg, [1, 2], str(tmp_path), sweep.RewoundData())  # ok in any test order
    rows = sweep.read_rows(str(tmp_path), sorted(_rows(workdir)[0]["weights"]),
                           sweep.draw_trials(cfg))
    for a, b in zip(_rows(workdir)[1:3], (rows[1], rows[2])):
        assert b["status"] == "ok" and a["weights"] == b["weights"]
        assert a["eval"] == pytest.approx(b["eval"], rel=1e-4)


def test_transfer_trains_the_same_mixtures_at_the_target_scale(tmp_path):
    """RegMix's rank-invariance check: the first N mixtures again at the target scale, and the
    Spearman of the two scales' target losses over them."""
    cfg = _cfg(transfer_trials=4, transfer_overrides="model.d_model=48;train.steps=4")
    summary = sweep.run(cfg, str(tmp_path))
    t = summary["transfer"]
    proxy, target = _rows(str(tmp_path)), _rows(str(tmp_path / "transfer"))
    assert t["n"] == 4 and [r["weights"] for r in proxy] == [r["weights"] for r in target]
    assert t["spearman"] == pytest.approx(regmix.spearman([r["target"] for r in proxy],
                                                          [r["target"] for r in target]))
    with open(tmp_path / "transfer" / "trials" / "0000" / "config.json") as f:
        recorded = json.load(f)
    assert recorded["model"]["d_model"] == 48 and recorded["train"]["steps"] == 4
    with open(tmp_path / "regmix.json") as f:
        assert json.load(f)["transfer"]["spearman"] == t["spearman"]
    r = sweep.rank_transfer({i: {"status": "ok", "target": v} for i, v in enumerate(range(8))},
                            {i: {"status": "ok", "target": v}
                             for i, v in enumerate([0, 2, 1, 3, 4, 6, 5, 7])})
    assert r["low"] < r["spearman"] < r["high"] < 1 and r["n"] == 8
    for bad, match in (("data.weights=uniform", "only model"), ("", "is empty")):
        with pytest.raises(ValueError, match=match):
            sweep.run(_cfg(transfer_trials=4, transfer_overrides=bad), str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad" / "trials")


def test_vmapped_groups_are_jobs_that_resume(local_sweep, tmp_path):
    """vmap_trials=2: two group jobs of two trials; each trial's run.json holds its row (the
    separate trials' losses), and a rerun trains nothing."""
    workdir, _ = local_sweep
    summary = sweep.run(_cfg(vmap_trials=2), str(tmp_path))
    assert summary["trials_run"] == 4 and summary["trials_ok"] == 4
    assert sorted(os.listdir(tmp_path / "groups")) == ["0000-0001", "0002-0003"]
    for a, b in zip(_rows(workdir), _rows(str(tmp_path))):
        assert a["weights"] == b["weights"] and b["status"] == "ok"
        assert a["target"] == pytest.approx(b["target"], rel=1e-4)
    assert sweep.run(_cfg(vmap_trials=2), str(tmp_path))["trials_run"] == 0


def test_every_sweep_problem_comes_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"3 problem\(s\) of the sweep before any work") as e:
        sweep.run(_cfg(num_trials=1, regression="lasso", target="nope"), str(tmp_path))
    assert all(m in str(e.value) for m in ("num_trials must be >= 2", "regression='lasso'",
                                           "target='nope' is not an eval domain"))
