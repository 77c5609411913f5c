"""Comparisons: a better arm by construction is called better with an interval that excludes 0,
an identical arm is no clear difference, a failing arm is recorded while the rest complete, a
rerun trains only what is missing, existing workdirs compare without training; and the
statistics are the textbook ones."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.stats

from runs import compare, executor, stats
from configs.compare import base
from lm.loop import _ratio_se

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARM = '''from helpers import tiny_config


def get_config():
    return tiny_config(steps=30, eval_every=10, checkpoint_every=30, log_every=10)
'''


def _config(tmp_path, **fields):
    arm_file = tmp_path / "arm.py"
    arm_file.write_text(ARM)
    c = base.get_config()
    c.compare.update(**{"baseline": "uniform", "seeds": "0,1,2", "eval_rows": 16, **fields})
    c.compare.arms.uniform = base.arm(str(arm_file))
    c.compare.arms.same = base.arm(str(arm_file))  # identical: the same runs again
    c.compare.arms.only0 = base.arm(str(arm_file), "data.weights=synthetic_0:1")
    c.compare.arms.broken = base.arm(str(arm_file), "reweight.instance=nope")
    return c


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    workdir = str(root / "out")
    return root, workdir, compare.run(_config(root), workdir)


def _q(summary, arm, name):
    return summary["arms"][arm]["quantities"][name]


def test_a_better_arm_is_better_and_an_identical_one_is_no_clear_difference(compared):
    _, workdir, summary = compared
    on0 = _q(summary, "only0", "loss/synthetic_0")
    assert on0["verdict"] == "better" and on0["diff"]["high"] < 0  # all its data is domain 0
    assert _q(summary, "only0", "loss/synthetic_1")["verdict"] == "worse"
    for name, entry in summary["arms"]["same"]["quantities"].items():
        if "diff" in entry and entry["diff"]["n"] > 1:  # steps to target: the seeds reaching it
            assert entry["diff"]["mean"] == 0 and entry["verdict"] == "no clear difference", name
    assert summary["arms"]["only0"]["seeds"] == [0, 1, 2]
    se = _q(summary, "uniform", "loss_se/synthetic_0")
    assert 0 < se["mean"] < 0.5  # 16 rows of one domain
    text = open(os.path.join(workdir, "compare.md")).read()
    assert "| only0 | 3 ok |" in text and "better" in text and "no clear difference" in text
    assert ("`same` leaves the mean final loss on the training domains unchanged against "
            "`uniform` (95% interval +0.000 to +0.000 over 3 paired seeds): no clear difference, "
            "the interval includes 0.") in text  # the plain sentence under the title
    assert "`only0` " in text.split("\n|")[0] and "`broken`" not in text.split("\n|")[0]
    for name in ("compare.csv", "compare.json", "compare_curves.png", "compare_differences.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 100, name


def test_a_failing_arm_is_recorded_and_the_rest_complete(compared):
    _, workdir, summary = compared
    failed = summary["arms"]["broken"]["failed"]
    assert [f["seed"] for f in failed] == [0, 1, 2]
    assert all("config.reweight.instance='nope'" in f["error"] for f in failed)
    with open(os.path.join(compare.run_dir(workdir, "broken", 0), executor.STATUS_FILE)) as f:
        assert json.load(f)["status"] == "failed"
    assert "## Runs left out" in open(os.path.join(workdir, "compare.md")).read()


def _untimed(summary):
    out = json.loads(json.dumps(summary))
    for arm in out["arms"].values():
        arm["quantities"].pop("seconds")
        for failure in arm["failed"]:
            failure.pop("workdir")
    return out


def test_a_rerun_trains_only_the_missing_runs_and_gives_the_same_table(compared):
    root, workdir, summary = compared
    copy = str(root / "copy")
    shutil.copytree(workdir, copy)
    shutil.rmtree(compare.run_dir(copy, "only0", 2))  # never trained
    os.remove(os.path.join(compare.run_dir(copy, "same", 1), executor.STATUS_FILE))  # finished,
    # its record lost: resumes at its last step, trains nothing
    stamps = {d: os.path.getmtime(os.path.join(d, executor.STATUS_FILE))
              for d in (compare.run_dir(copy, "uniform", s) for s in (0, 1, 2))}
    again = compare.run(_config(root), copy)
    assert _untimed(again) == _untimed(summary)  # the same numbers
    assert all(os.path.getmtime(os.path.join(d, executor.STATUS_FILE)) == t
               for d, t in stamps.items())  # finished runs were not rerun
    assert os.path.exists(os.path.join(compare.run_dir(copy, "only0", 2), executor.STATUS_FILE))


def test_existing_workdirs_compare_without_training(compared):
    root, workdir, summary = compared
    runs = ";".join(f"{arm}={workdir}/runs/{arm}/seed*" for arm in ("uniform", "only0"))
    cfg = base.get_config()
    cfg.compare.update(baseline="uniform", runs=runs)
    before = {p: os.path.getmtime(p) for p in _files(workdir + "/runs")}
    out = compare.run(cfg, str(root / "existing"))
    assert {p: os.path.getmtime(p) for p in _files(workdir + "/runs")} == before
    for name in ("loss/synthetic_0", "loss/train_mean", "auc/train_mean"):
        assert _q(out, "only0", name)["diff"] == _q(summary, "only0", name)["diff"], name
    assert out["arms"]["only0"]["seeds"] == [0, 1, 2]


def _files(root):
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_bad_compare_configs_fail_before_training(tmp_path):
    for fields, match in ((dict(baseline="nope"), "not an arm"),
                          (dict(seeds="0,0"), "distinct integers"),
                          (dict(overrides="train.steps"), "not FIELD=VALUE")):
        with pytest.raises(ValueError, match=match):
            compare.run(_config(tmp_path, **fields), str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"3 problem\(s\) of the comparison") as e:
        compare.run(_config(tmp_path, baseline="nope", seeds="0,0", confidence=1.5),
                    str(tmp_path / "out"))
    assert all(m in str(e.value) for m in ("not an arm", "distinct integers", "(0, 1)"))
    cfg = _config(tmp_path)
    cfg.compare.arms.uniform.overrides = "train.stepz=3"
    with pytest.raises(ValueError, match="names no config field"):
        compare.run_config(cfg, "uniform", 0)
    assert not os.path.exists(tmp_path / "out" / "runs")


def test_overrides_take_the_fields_type(tmp_path):
    cfg = _config(tmp_path)
    cfg.compare.overrides = "train.lr=0.5;data.weights=0.5,0.5,0;train.progress_bar=True"
    run_cfg = compare.run_config(cfg, "only0", 4)
    assert run_cfg.train.lr == 0.5 and run_cfg.seed == 4 and run_cfg.data.eval_rows == 16
    assert run_cfg.data.weights == "synthetic_0:1"  # the arm's override comes after
    assert run_cfg.train.progress_bar is False  # the comparison's own settings come last


def test_intervals_differences_and_curves_are_the_textbook_ones():
    values = [1.0, 2.0, 4.0]
    e = stats.mean_ci(values, 0.95)
    half = scipy.stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert e.mean == pytest.approx(7 / 3) and e.high - e.mean == pytest.approx(half)
    assert stats.mean_ci([3.0]).n == 1 and math.isnan(stats.mean_ci([3.0]).low)
    diff = stats.paired_difference({0: 1.0, 1: 2.0, 2: 3.0, 5: 9.0},
                                          {0: 2.0, 1: 3.1, 2: 3.9})
    assert diff.n == 3 and diff.mean == pytest.approx(-1.0)
    assert stats.verdict(diff) == "better"
    assert stats.verdict(diff, lower_is_better=False) == "worse"
    assert stats.verdict(stats.mean_ci([-1.0, 1.0])) == "no clear difference"
    assert stats.verdict(stats.mean_ci([-1.0])) == "too few seeds"
    assert stats.first_step_at([10, 20, 30], [5.0, 4.0, 3.0], 3.5) == pytest.approx(25)
    assert stats.first_step_at([10, 20], [5.0, 4.0], 4.5) == pytest.approx(15)
    assert stats.first_step_at([10], [2.0], 3.0) == 10
    assert math.isnan(stats.first_step_at([10, 20], [5.0, 4.0], 1.0))
    assert stats.curve_mean([0, 10, 30], [3.0, 1.0, 1.0]) == pytest.approx(
        (20 + 20) / 30)


def test_eval_standard_error_is_the_ratio_estimators():
    rng = np.random.default_rng(0)
    tokens = np.full(400, 16.0)
    loss_sums = tokens * rng.normal(3.0, 0.5, 400)
    # Equal token counts: the SE of the mean of the row means.
    assert _ratio_se(loss_sums, tokens) == pytest.approx(
        np.std(loss_sums / tokens, ddof=1) / np.sqrt(400), rel=1e-9)
    tokens = rng.integers(1, 32, 400).astype(float)
    loss_sums = tokens * rng.normal(3.0, 0.5, 400)
    boot = [loss_sums[i].sum() / tokens[i].sum()
            for i in rng.integers(0, 400, (2000, 400))]
    assert _ratio_se(np.append(loss_sums, 0.0), np.append(tokens, 0.0)) == pytest.approx(
        np.std(boot), rel=0.1)  # padding rows (no tokens) drop out


def test_the_headline_mean_can_leave_out_the_junk_domains():
    """compare.domains: the headline mean, AUC and steps-to-target over the clean domains only,
    even for an arm that trains on other domains than the baseline."""
    def run(arm, seed, clean, junk, domains):
        evals = [{"step": s, "eval/a/loss": clean + 1 / s, "eval/b/loss": clean + 1 / s,
                  "eval/junk/loss": junk} for s in (1, 2)]
        return compare.Run(arm, seed, "", "ok", steps=2, eval_rows=8, train_domains=domains,
                           evals=evals, tokens=1.0, flops=1.0, seconds=1.0)
    runs = [run("base", s, 3.0 + 0.01 * s, 6.0, ["a", "b", "junk"]) for s in range(3)]
    runs += [run("clean", s, 2.9 + 0.01 * s, 7.0, ["a", "b"]) for s in range(3)]
    for r in runs[3:]:
        r.heldout_domains = ["junk"]  # eval-only for it, but the baseline trains on it
    summary = compare.summarize(runs, "base", 0.95, ["a", "b"])
    assert summary["heldout_domains"] == [] and "loss/heldout_mean" not in \
        summary["arms"]["clean"]["quantities"]
    diff = summary["arms"]["clean"]["quantities"]["loss/train_mean"]["diff"]
    assert diff["mean"] == pytest.approx(-0.1) and summary["headline_domains"] == ["a", "b"]
    assert summary["arms"]["clean"]["quantities"]["loss/train_mean"]["verdict"] == "better"
    # Without it, the baseline's training domains count: the junk makes "clean" look worse.
    default = compare.summarize(runs, "base", 0.95)
    assert default["arms"]["clean"]["quantities"]["loss/train_mean"]["diff"]["mean"] > 0
    with pytest.raises(ValueError, match="config.compare.domains"):
        compare.summarize(runs, "base", 0.95, ["a", "missing"])


def test_steps_until_every_skill_is_accurate(tmp_path):
    def run(arm, seed, reach):
        evals = [{"step": t, **{f"eval/s{i}/loss": 1.0 for i in (1, 2)},
                  "eval/s1/accuracy": 1.0 if t >= 10 else 0.5,
                  "eval/s2/accuracy": 0.95 if t >= reach else 0.1} for t in (10, 20, 30, 40)]
        return compare.Run(arm, seed, "", "ok", steps=40, eval_rows=8, train_domains=["s1", "s2"],
                           evals=evals, tokens=1.0, flops=1.0, seconds=1.0)
    runs = [run("base", s, 40) for s in range(3)] + [run("fast", s, 20 + 10 * (s == 2))
                                                    for s in range(3)]
    runs += [run("never", s, 99) for s in range(3)]
    summary = compare.summarize(runs, "base", 0.95)
    q = lambda arm: summary["arms"][arm]["quantities"]["steps_to_accuracy"]
    assert q("base")["mean"] == 1.0 and q("fast")["mean"] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    assert q("fast")["verdict"] == "better" and q("never")["reached"] == 0
    # The final mean accuracy over the skills: (1 + 0.95) / 2 for all but `never` (1 + 0.1) / 2.
    acc = lambda arm: summary["arms"][arm]["quantities"]["accuracy/skills_mean"]
    assert acc("fast")["mean"] == pytest.approx(0.975) and acc("fast")["diff"]["mean"] == 0
    assert acc("never")["diff"]["mean"] == pytest.approx(-0.425)
    assert acc("never")["verdict"] == "worse"  # higher accuracy is better
    text = compare.write_markdown(summary, str(tmp_path / "compare.md"), "t")
    assert "- never: never (0/3 reached)" in text and "- fast: 0.583" in text
    assert "final mean accuracy 0.550" in text


def test_a_run_another_comparison_finished_meanwhile_is_not_touched(tmp_path):
    """Two comparisons may share a run: once it is ok, neither trains nor overwrites it."""
    record = {"status": "ok", "seconds": 12.0}
    (tmp_path / executor.STATUS_FILE).write_text(json.dumps(record))
    cfg = base.get_config()  # no experiment fields at all: training it would fail at once
    assert executor.execute(compare.jobs_lib.run_kind, ("train", cfg, str(tmp_path)),
                            str(tmp_path)) == record
    assert json.loads((tmp_path / executor.STATUS_FILE).read_text()) == record


def test_prerequisites_train_first_in_order_and_arms_name_them(tmp_path):
    """DoReMi's three steps in one comparison: the reference, then the proxy reading it, then
    an arm on the proxy's mixture.txt; declared in reverse, trained once, named by "@name"."""
    arm_file = tmp_path / "arm.py"
    arm_file.write_text(ARM.replace("steps=30", "steps=10").replace("eval_every=10",
                                                                   "eval_every=0"))
    cfg = base.get_config()
    cfg.compare.update(baseline="uniform", seeds="0", eval_rows=8)
    cfg.compare.prerequisites.proxy = base.arm(
        str(arm_file), "reweight.mixture=doremi;reweight.doremi.excess=token;"
                       "reference.workdir=@reference")
    cfg.compare.prerequisites.reference = base.arm(str(arm_file))
    cfg.compare.arms.uniform = base.arm(str(arm_file))
    cfg.compare.arms.doremi = base.arm(str(arm_file), "data.weights=file:@proxy/mixture.txt")
    workdir = str(tmp_path / "out")
    compare.run(cfg, workdir)
    proxy = compare.prerequisite_dir(workdir, "proxy")
    with open(os.path.join(proxy, "config.json")) as f:
        assert json.load(f)["reference"]["workdir"] == compare.prerequisite_dir(workdir,
                                                                               "reference")
    with open(os.path.join(compare.run_dir(workdir, "doremi", 0), "config.json")) as f:
        assert json.load(f)["data"]["weights"] == f"file:{proxy}/mixture.txt"
    # The proxy's steps ran the reference's forward too: a third of a same-size step's FLOPs.
    plain = compare.read_run(compare.run_dir(workdir, "uniform", 0), "uniform")
    assert compare.read_run(proxy, "proxy").step_flops == pytest.approx(plain.step_flops * 4 / 3)
    assert compare.needed_prerequisites(cfg, ["uniform"]) == set()
    assert compare.needed_prerequisites(cfg, ["doremi"]) == {"proxy", "reference"}
    before = {p: os.path.getmtime(p) for p in _files(os.path.join(workdir, "prerequisites"))}
    shutil.rmtree(compare.run_dir(workdir, "doremi", 0))
    compare.run(cfg, workdir)  # retrains the missing arm run, never a finished prerequisite
    assert {p: os.path.getmtime(p)
            for p in _files(os.path.join(workdir, "prerequisites"))} == before
    for spec, match in (("data.weights=file:@nope/mixture.txt", "names no prerequisite"),
                        ("reference.workdir=@proxy", None)):
        cfg.compare.prerequisites.reference.overrides = spec
        with pytest.raises(ValueError, match=match or "cycle"):
            compare.run(cfg, str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad" / "runs")


def test_flops_to_target_counts_a_selection_from_the_step_it_is_made():
    """Equal compute: an arm that reaches the baseline's final loss in 3/4 of its steps, having
    spent 10 steps' FLOPs on a selection at step 0, took the baseline's FLOPs; a selection
    logged after it got there does not count."""
    def run(arm, seed, losses, overhead):
        evals = [{"step": t, "eval/a/loss": l + 0.001 * seed} for t, l in zip((10, 20, 30, 40),
                                                                             losses)]
        r = compare.Run(arm, seed, "", "ok", steps=40, eval_rows=8, train_domains=["a"],
                        evals=evals, tokens=1.0, step_flops=2.0, overhead=overhead, seconds=1.0)
        r.flops = r.flops_at(40)
        return r
    runs = [run("base", s, (4.0, 3.0, 2.0, 1.0), []) for s in range(3)]
    runs += [run("select", s, (3.0, 2.0, 1.0, 0.5), [(0, 20.0), (35, 200.0)]) for s in range(3)]
    summary = compare.summarize(runs, "base", 0.95)
    q = summary["arms"]["select"]["quantities"]
    assert q["steps_to_target"]["mean"] == pytest.approx(0.75, abs=0.01)
    assert q["flops_to_target"]["mean"] == pytest.approx((30 * 2 + 20) / 80, abs=0.01)
    assert q["flops"]["mean"] == 40 * 2 + 220
    assert summary["arms"]["base"]["quantities"]["flops_to_target"]["mean"] == pytest.approx(
        1.0, abs=0.01)


def test_runs_of_different_corpora_are_flagged():
    """A comparison whose runs read different files says so above its table."""
    def run(arm, seed, corpus):
        evals = [{"step": 10, "eval/a/loss": 1.0 + 0.01 * seed}]
        return compare.Run(arm, seed, "", "ok", steps=10, eval_rows=8, train_domains=["a"],
                           evals=evals, tokens=1.0, step_flops=1.0, flops=10.0, seconds=1.0,
                           corpus=corpus)
    same = [run(a, s, "abc") for a in ("base", "other") for s in range(2)]
    text = compare.write_markdown(compare.summarize(same, "base", 0.95), "/dev/null", "t")
    assert "Every run read the corpus with fingerprint `abc`." in text
    mixed = same[:3] + [run("other", 1, "def")]
    summary = compare.summarize(mixed, "base", 0.95)
    assert summary["corpora"] == {"abc": ["base seed 0", "base seed 1", "other seed 0"],
                                  "def": ["other seed 1"]}
    text = compare.write_markdown(summary, "/dev/null", "t")
    assert "**Warning: these runs read 2 different corpora**" in text
    assert "`def`: other seed 1" in text
    generated = [run(a, s, "") for a in ("base", "other") for s in range(2)]
    text = compare.write_markdown(compare.summarize(generated, "base", 0.95), "/dev/null", "t")
    assert "corpus" not in text


def test_bits_per_byte_are_tabled_with_paired_differences():
    def run(arm, seed, bpb):
        evals = [{"step": 10, "eval/a/loss": 2.0 + 0.01 * seed,
                  "eval/a/bits_per_byte": bpb + 0.01 * seed}]
        return compare.Run(arm, seed, "", "ok", steps=10, eval_rows=8, train_domains=["a"],
                           evals=evals, tokens=1.0, step_flops=1.0, flops=10.0, seconds=1.0)
    runs = [run("base", s, 1.5) for s in range(3)] + [run("other", s, 1.4) for s in range(3)]
    summary = compare.summarize(runs, "base", 0.95)
    entry = summary["arms"]["other"]["quantities"]["bpb/a"]
    assert entry["diff"]["mean"] == pytest.approx(-0.1) and entry["verdict"] == "better"
    text = compare.write_markdown(summary, "/dev/null", "t")
    assert "## Bits per byte (comparable across tokenizers)" in text
    assert "| a | — | 1.5100 [" in text and "-0.1000 [-0.1000, -0.1000] better" in text


def test_a_skill_graph_prerequisite_feeds_an_arm(tmp_path):
    """Skill-It with the estimated graph as an arm: the graph is a prerequisite run in
    --mode=skill_graph, its skill_graph.json read by the arm as @graph/skill_graph.json."""
    arm_file = tmp_path / "arm.py"
    arm_file.write_text(ARM.replace("steps=30", "steps=8").replace("eval_every=10",
                                                                  "eval_every=4"))
    cfg = base.get_config()
    cfg.compare.update(baseline="uniform", seeds="0", eval_rows=8)
    cfg.compare.prerequisites.graph = base.prerequisite(
        str(arm_file), "skill_graph.start_steps=2;skill_graph.steps=2", mode="skill_graph")
    cfg.compare.arms.uniform = base.arm(str(arm_file))
    cfg.compare.arms.skill_it = base.arm(
        str(arm_file), "reweight.mixture=skill_it;reweight.skill_it.update_every=4;"
                       "reweight.skill_it.graph=@graph/skill_graph.json")
    workdir = str(tmp_path / "out")
    summary = compare.run(cfg, workdir)
    graph = os.path.join(compare.prerequisite_dir(workdir, "graph"), "skill_graph.json")
    with open(graph) as f:
        assert len(json.load(f)["graph"]) == 3  # the three synthetic skills
    assert summary["arms"]["skill_it"]["seeds"] == [0]
    cfg.compare.prerequisites.graph.mode = "eval"
    with pytest.raises(ValueError, match="mode='eval' is unknown"):
        compare.check_config(cfg)


def test_a_sweep_prerequisite_feeds_an_arm(tmp_path):
    """RegMix's last step as a comparison: the sweep is a prerequisite run in --mode=sweep,
    its chosen mixture read by an arm as @sweep/mixture.txt; a sweep whose trials failed is
    not a finished prerequisite, and its rerun retries them."""
    arm_file = tmp_path / "arm.py"
    arm_file.write_text(ARM.replace("steps=30", "steps=4").replace("eval_every=10",
                                                                  "eval_every=0"))
    cfg = base.get_config()
    cfg.compare.update(baseline="uniform", seeds="0", eval_rows=8)
    cfg.compare.prerequisites.sweep = base.prerequisite(
        str(arm_file), "sweep.num_trials=4;sweep.num_simulations=2000;sweep.top_k=16;"
                       "sweep.holdout_fraction=0.5;train.steps=3", mode="sweep")
    cfg.compare.arms.uniform = base.arm(str(arm_file))
    cfg.compare.arms.regmix = base.arm(str(arm_file), "data.weights=file:@sweep/mixture.txt")
    workdir = str(tmp_path / "out")
    sweep_dir = compare.prerequisite_dir(workdir, "sweep")
    good = cfg.compare.prerequisites.sweep.overrides
    cfg.compare.prerequisites.sweep.overrides += ";reweight.instance=nope"  # every trial fails
    with pytest.raises(SystemExit, match="prerequisite sweep"):
        compare.run(cfg, workdir)
    assert executor.status(sweep_dir)["status"] == "failed"
    # the arm that needs it never started; the baseline, which does not, trained
    assert not os.path.exists(compare.run_dir(workdir, "regmix", 0))
    assert executor.is_done(compare.run_dir(workdir, "uniform", 0))
    cfg.compare.prerequisites.sweep.overrides = good
    summary = compare.run(cfg, workdir)
    assert executor.is_done(sweep_dir)
    with open(os.path.join(sweep_dir, "regmix.json")) as f:
        assert json.load(f)["trials_ok"] == 4
    with open(os.path.join(compare.run_dir(workdir, "regmix", 0), "config.json")) as f:
        assert json.load(f)["data"]["weights"] == f"file:{sweep_dir}/mixture.txt"
    assert summary["arms"]["regmix"]["seeds"] == [0]


def test_workers_end_when_the_comparison_is_killed(tmp_path):
    """A comparison killed with SIGKILL leaves no worker training on (they once did, until
    killed by hand): the worker gets SIGTERM, which a run answers by saving and exiting."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import concurrent.futures, multiprocessing, os, signal, sys, time
        sys.path.insert(0, {ROOT!r})
        from runs import executor
        if __name__ == "__main__":
            pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"),
                initializer=executor.end_with_parent, initargs=(os.getpid(),))
            print(pool.submit(os.getpid).result(), flush=True)
            pool.submit(time.sleep, 120)
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    worker = int(out.stdout.split()[0])
    deadline = time.time() + 30
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker outlived its killed comparison"


def test_a_worker_whose_run_saved_exits_and_starts_nothing_queued(tmp_path):
    """The worker's SIGTERM went to a running training, which saved and returned: the worker,
    now idle, exits too (it once waited on the dead pool's queue until killed by hand), and a
    job queued behind it never starts."""
    started = tmp_path / "started"
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import concurrent.futures, multiprocessing, os, signal, sys, time
        sys.path.insert(0, {ROOT!r})
        from runs import executor

        def guarded(outdir):  # a training: SIGTERM sets a flag, it returns, the handler goes
            stop = []
            signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
            while not stop:
                time.sleep(0.05)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            return {{"preempted": 1}}

        def touch(outdir):
            open({str(started)!r}, "w").close()

        if __name__ == "__main__":
            pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"),
                initializer=executor.end_with_parent, initargs=(os.getpid(),))
            print(pool.submit(os.getpid).result(), flush=True)
            for fn, d in ((guarded, {str(tmp_path / "a")!r}), (touch, {str(tmp_path / "b")!r})):
                pool.submit(executor.execute, fn, (d,), d)
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    log = tmp_path / "parent.log"  # a file, not a pipe: the worker holds no pipe open
    with open(log, "w") as f:
        subprocess.run([sys.executable, str(script)], stdout=f, stderr=subprocess.STDOUT,
                       timeout=120)
    worker = int(log.read_text().split()[0])
    deadline = time.time() + 30
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    if _alive(worker):
        os.kill(worker, signal.SIGKILL)  # leave no stray process behind the failure
        pytest.fail("the idle worker outlived its killed comparison by 30 s")
    assert executor.status(str(tmp_path / "a"))["status"] == "preempted"  # it saved first
    assert not started.exists(), "a job queued before the parent died started anyway"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_the_compile_cache_reaches_spawned_workers(tmp_path, monkeypatch):
    """reproduce.py's runs share one compilation cache: with environ=True a process spawned
    inside the block (a comparison's worker) uses it too; afterwards nothing is left set."""
    import jax
    chosen = jax.config.jax_compilation_cache_dir  # e.g. another test's
    jax.config.update("jax_compilation_cache_dir", None)
    for k in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        monkeypatch.delenv(k, raising=False)
    child = [sys.executable, "-c", "import jax; print(jax.config.jax_compilation_cache_dir)"]
    try:
        with compare.experiment.compile_cache(str(tmp_path), environ=True):
            seen = subprocess.run(child, capture_output=True, text=True,
                                  check=True).stdout.strip()
        assert seen == str(tmp_path / "jax_cache")
        assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", chosen)
