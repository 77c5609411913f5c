"""The one executor: jobs run in dependency order, each once; a failed job is recorded and the
jobs that need it wait for the rerun; a preempted job stops the set; and a comparison whose
prerequisite is a sweep, killed mid-way through main.py and rerun, runs nothing twice."""

import json
import os
import signal
import time

import pytest

from helpers import run_main, start_main
from runs import executor


def _append(log: str, name: str, fail: bool = False) -> dict:
    """A job: notes its name in `log` (so a test sees what ran, in which order)."""
    with open(log, "a") as f:
        f.write(name + "\n")
    if fail:
        raise RuntimeError(f"{name} broke")
    return {"name": name}


def _jobs(tmp_path, fail=()):
    log = str(tmp_path / "log")
    job = lambda name, *needs: executor.Job(  # noqa: E731
        name, _append, (log, name, name in fail), str(tmp_path / name), needs=needs)
    # declared out of order: c needs b needs a; d needs nothing
    return log, [job("c", "b"), job("b", "a"), job("a"), job("d")]


def _ran(log):
    with open(log) as f:
        return f.read().split()


def test_jobs_run_in_dependency_order_once(tmp_path):
    log, jobs = _jobs(tmp_path)
    records = executor.run(jobs)
    assert _ran(log) == ["a", "d", "b", "c"]
    assert {n: r["status"] for n, r in records.items()} == dict.fromkeys("abcd", "ok")
    assert executor.status(str(tmp_path / "c"))["result"] == {"name": "c"}
    executor.run(jobs)
    assert _ran(log) == ["a", "d", "b", "c"]  # all done: nothing ran again


def test_a_failed_job_is_recorded_and_what_needs_it_waits(tmp_path):
    log, jobs = _jobs(tmp_path, fail=("b",))
    records = executor.run(jobs)
    assert _ran(log) == ["a", "d", "b"]
    assert records["b"]["status"] == "failed" and "b broke" in records["b"]["error"]
    assert records["c"] == {"status": "blocked", "seconds": 0.0,
                            "error": "needs b, which is failed"}
    assert executor.status(str(tmp_path / "b"))["status"] == "failed"
    assert executor.status(str(tmp_path / "c")) is None  # never started: nothing written
    _, fixed = _jobs(tmp_path)
    executor.run(fixed)
    assert _ran(log) == ["a", "d", "b", "b", "c"]  # the rerun retries b, then runs c


def test_a_preempted_job_stops_the_set(tmp_path):
    log = str(tmp_path / "log")
    stop = lambda: {"preempted": 7}  # noqa: E731
    jobs = [executor.Job("first", stop, (), str(tmp_path / "first")),
            executor.Job("second", _append, (log, "second"), str(tmp_path / "second"))]
    records = executor.run(jobs)
    assert records["first"]["status"] == "preempted" and "second" not in records
    assert not os.path.exists(log)


def test_bad_job_sets_fail_before_any_work(tmp_path):
    log, jobs = _jobs(tmp_path)
    for bad, match in ((jobs + [jobs[0]], "names repeat"),
                       ([executor.Job("x", _append, (log, "x"), str(tmp_path / "a"))] + jobs,
                        "share an output directory"),
                       ([executor.Job("x", _append, (log, "x"), str(tmp_path / "x"), ("y",))],
                        "not in the set"),
                       ([executor.Job("x", _append, (log, "x"), str(tmp_path / "x"), ("y",)),
                         executor.Job("y", _append, (log, "y"), str(tmp_path / "y"), ("x",))],
                        "cycle")):
        with pytest.raises(ValueError, match=match):
            executor.run(bad)
    assert not os.path.exists(log)


def test_worker_processes_give_the_same_records(tmp_path):
    log, jobs = _jobs(tmp_path)
    records = executor.run(jobs, backend="processes", processes=2)
    assert sorted(_ran(log)) == ["a", "b", "c", "d"]
    assert _ran(log).index("a") < _ran(log).index("b") < _ran(log).index("c")
    assert all(r["status"] == "ok" for r in records.values())


ARM = '''from helpers import tiny_config


def get_config():
    return tiny_config(steps=6, eval_every=0, checkpoint_every=3, log_every=3)
'''

COMPARE = '''from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.update(baseline="uniform", seeds="0,1", eval_rows=8)
    c.compare.prerequisites.sweep = base.prerequisite(
        {arm!r}, "sweep.num_trials=4;sweep.num_simulations=2000;sweep.top_k=16;"
                 "sweep.holdout_fraction=0.5;train.steps=3", mode="sweep")
    c.compare.arms.uniform = base.arm({arm!r})
    c.compare.arms.regmix = base.arm({arm!r}, "data.weights=file:@sweep/mixture.txt")
    return c
'''


def _statuses(workdir) -> dict:
    """Every job's run.json under `workdir` -> (its mtime, its status)."""
    out = {}
    for root, _, files in os.walk(workdir):
        if executor.STATUS_FILE in files:
            path = os.path.join(root, executor.STATUS_FILE)
            with open(path) as f:
                out[os.path.relpath(root, workdir)] = (os.path.getmtime(path),
                                                       json.load(f)["status"])
    return out


def _kill_when(proc, workdir, done: int, timeout: float = 300.0) -> None:
    """SIGKILL `proc` once `done` jobs under `workdir` are ok."""
    t0 = time.time()
    while sum(s == "ok" for _, s in _statuses(workdir).values()) < done:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() - t0 < timeout, f"fewer than {done} jobs ok in {timeout} s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_comparison_with_a_sweep_prerequisite_killed_and_rerun_runs_nothing_twice(tmp_path):
    """Through main.py (no --mode: a comparison config runs as one): killed with SIGKILL after
    two sweep trials, then after the sweep and one arm run; each rerun skips every job that
    was ok, and the last finishes the table."""
    arm = tmp_path / "arm.py"
    arm.write_text(ARM)
    config = tmp_path / "compare_sweep.py"
    config.write_text(COMPARE.format(arm=str(arm)))
    workdir = str(tmp_path / "out")
    for done in (2, 6):  # 2 of the 4 trials; the 4 trials, the sweep and one arm run
        before = {k: v for k, v in _statuses(workdir).items() if v[1] == "ok"}
        _kill_when(start_main(workdir, f"--config={config}"), workdir, done)
        after = _statuses(workdir)
        assert all(after[k] == v for k, v in before.items()), "a finished job ran again"
    before = {k: v for k, v in _statuses(workdir).items() if v[1] == "ok"}
    out = run_main(workdir, f"--config={config}")
    assert "| regmix | 2 ok" in out.stdout
    after = _statuses(workdir)
    assert all(after[k] == v for k, v in before.items()), "a finished job ran again"
    jobs = {"prerequisites/sweep"} | {f"prerequisites/sweep/trials/000{i}" for i in range(4)} | {
        f"runs/{a}/seed{s}" for a in ("uniform", "regmix") for s in (0, 1)}
    assert set(after) == jobs and all(s == "ok" for _, s in after.values())


def test_a_sweep_killed_and_rerun_runs_no_trial_twice(tmp_path):
    arm = tmp_path / "arm.py"
    arm.write_text(ARM)
    workdir = str(tmp_path / "sweep")
    flags = (f"--config={arm}", "--mode=sweep", "--config.sweep.num_trials=4",
             "--config.sweep.num_simulations=2000", "--config.sweep.top_k=16",
             "--config.sweep.holdout_fraction=0.5", "--config.train.steps=3")
    _kill_when(start_main(workdir, *flags), workdir, 2)
    before = {k: v for k, v in _statuses(workdir).items() if v[1] == "ok"}
    out = run_main(workdir, *flags)
    assert json.loads(out.stdout.splitlines()[-1])["trials_run"] == 4 - len(before)
    after = _statuses(workdir)
    assert all(after[k] == v for k, v in before.items()), "a finished trial ran again"
    assert sorted(after) == [f"trials/000{i}" for i in range(4)]


@pytest.mark.parametrize("config,mode,message", [
    ("configs/compare/demo.py", "train", "is a comparison config (it has a compare section): "
                                         "run it with --mode=compare, not --mode=train"),
    ("configs/tiny.py", "compare", "is an experiment config (no compare section): "
                                   "--mode=compare takes a comparison config"),
    ("configs/sweep_regmix.py", None, "sets config.sweep.*: add --mode=sweep"),
    ("configs/tiny.py", "sample", "--workdir='MISSING': no checkpoint there"),
])
def test_a_config_and_mode_that_do_not_fit_stop_with_one_line(tmp_path, config, mode, message):
    missing = str(tmp_path / "missing")
    out = run_main(missing, f"--config={config}", *([f"--mode={mode}"] if mode else []),
                   check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and message.replace("MISSING", missing) in out.stderr


def test_a_comparison_config_without_its_mode_runs_as_a_comparison(tmp_path):
    out = run_main(str(tmp_path / "w"), "--config=configs/compare/demo.py",
                   f"--config.compare.runs=natural={tmp_path}/none*", check=False)
    assert out.returncode == 1 and "config.compare.runs: natural=" in out.stderr
    assert "matches no directory" in out.stderr


def test_one_runner_for_every_multi_run_job():
    """No second runner: comparisons, sweeps and skill-graph estimates dispatch through the
    executor, never through Ray or a process pool of their own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("compare.py", "sweep.py", "skill_graph.py"):
        text = open(os.path.join(root, "runs", name)).read()
        assert "executor.run(" in text and "ray.init" not in text and "ProcessPool" not in text
