"""One executor for every job that runs many trainings: a comparison's arms and prerequisites,
a sweep's trials and transfer trials, a skill-graph estimate.

A job is a name, a function with its arguments, an output directory and the names of the jobs
it needs (Marin's `ExecutorStep` is the model). The executor runs a set of them in dependency
order and keeps one status file per job (`DIR/run.json`: ok, failed or preempted, the error,
the seconds, the function's result), so every caller gets the same rules:
- skip if done: a job whose status is ok is never run again;
- resume if interrupted: a job that was stopped runs again, and its function resumes from
  what its directory holds (a training restarts from its checkpoint);
- record if failed: an exception is written to the status file and the other jobs go on; the
  jobs that need a failed one are not started (status "blocked", not written), and the next
  invocation retries them;
- dispatch: in this process (`local`), in spawned worker processes (`processes`), or as Ray
  tasks (`ray`); the same job set gives the same files on each.
A job's function must be picklable for `processes` and `ray` (a module-level function and
plain arguments); `local` takes any callable.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Sequence

from lm import workdir as workdir_lib

STATUS_FILE = "run.json"
BACKENDS = ("local", "processes", "ray")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # for Ray workers' imports


class Preempted(Exception):
    """A job set stopped by a signal (a job of it preempted): rerunning it resumes."""


@dataclasses.dataclass
class Job:
    name: str  # unique within a job set, e.g. "runs/uniform/seed0"; what messages call it
    fn: Callable[..., Any]  # fn(*args): does the work in outdir, resuming what it finds there
    args: tuple  # the function's arguments
    outdir: str  # the job's outputs and its status file
    needs: tuple[str, ...] = ()  # names of jobs of the same set that must be ok first
    cpus: float = 1.0  # Ray: CPUs a task reserves
    gpus: float = 0.0  # Ray: GPUs a task reserves


def status(outdir: str) -> dict | None:
    """A job directory's status record, None before the job ended once."""
    path = os.path.join(outdir, STATUS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def is_done(outdir: str) -> bool:
    return (status(outdir) or {}).get("status") == "ok"


def write_status(outdir: str, record: dict) -> None:
    workdir_lib.write_atomic(os.path.join(outdir, STATUS_FILE), json.dumps(record, indent=1))


_busy = threading.Event()  # set while execute() runs a job in this process
_orphaned = threading.Event()  # set once a worker's parent is gone (end_with_parent)


def execute(fn: Callable, args: tuple, outdir: str, cache_dir: str | None = None) -> dict:
    """Runs one job where it is called (this process, a worker, a Ray task) and writes its
    status; never raises for the job's own errors. A result with "preempted" (a training
    stopped by a signal), or `Preempted` raised, is status preempted. A worker whose parent
    is gone starts nothing (a job queued before the parent died)."""
    if _orphaned.is_set():
        return {"status": "preempted", "error": "its job set is gone"}
    _busy.set()
    try:
        return _execute(fn, args, outdir, cache_dir)
    finally:
        _busy.clear()


def _execute(fn: Callable, args: tuple, outdir: str, cache_dir: str | None) -> dict:
    from runs import experiment
    os.makedirs(outdir, exist_ok=True)
    if (done := status(outdir)) and done["status"] == "ok":  # finished meanwhile, by another
        return done  # job set sharing the directory
    t0, record = time.perf_counter(), {"status": "ok"}
    try:
        if cache_dir:
            with experiment.compile_cache(cache_dir):
                result = fn(*args)
        else:
            result = fn(*args)
        if isinstance(result, dict) and "preempted" in result:
            record = {"status": "preempted",
                      "error": f"stopped by a signal at step {result['preempted']}"}
        elif result is not None:
            record["result"] = result
    except Preempted as e:  # a job set inside this job was stopped
        record = {"status": "preempted", "error": str(e)}
    except Exception as e:  # recorded; the other jobs go on
        record = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc(limit=8)}
    record["seconds"] = time.perf_counter() - t0
    write_status(outdir, record)
    return record


def end_with_parent(parent: int) -> None:
    """A worker's initializer: once the process that spawned it is gone (killed, even with
    SIGKILL), the worker gets the SIGTERM of a preempted run, so its training saves and exits
    rather than going on as an orphan; the rerun resumes it. Once the job has returned, the
    worker exits: idle, it would wait forever on the pool's queue (it holds both of the
    queue's ends, so it never sees the parent's end close), as orphans once did until killed
    by hand."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        _orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        while _busy.is_set():
            time.sleep(1)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


class _Local:
    """Runs a job at submission, in this process (caches such as built pipelines carry over)."""

    def submit(self, job: Job, cache_dir: str | None) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        future.set_result(execute(job.fn, job.args, job.outdir, cache_dir))
        return future

    def close(self) -> None:
        pass


class _Processes:
    """Spawned workers (JAX does not survive a fork), ended if this process dies."""

    def __init__(self, processes: int):
        self.pool = concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=end_with_parent, initargs=(os.getpid(),))

    def submit(self, job: Job, cache_dir: str | None) -> concurrent.futures.Future:
        return self.pool.submit(execute, job.fn, job.args, job.outdir, cache_dir)

    def close(self) -> None:
        self.pool.shutdown()


class _Ray:
    """Ray tasks, on the cluster at `address` (or a local one started here)."""

    def __init__(self, address: str):
        import ray
        if not ray.is_initialized():
            env = {"PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
                   "TF_CPP_MIN_LOG_LEVEL": "3"}
            ray.init(address=address or None, include_dashboard=False,
                     runtime_env={"env_vars": env}, log_to_driver=False)
        self.task = ray.remote(execute)

    def submit(self, job: Job, cache_dir: str | None) -> concurrent.futures.Future:
        return self.task.options(num_cpus=job.cpus, num_gpus=job.gpus).remote(
            job.fn, job.args, os.path.abspath(job.outdir),
            os.path.abspath(cache_dir) if cache_dir else None).future()

    def close(self) -> None:
        pass


def check_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Distinct names and directories, every need a job of the set, no cycle: the jobs in
    dependency order (`order`)."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    dirs = [os.path.abspath(j.outdir) for j in jobs]
    if len(set(dirs)) != len(dirs):
        raise ValueError("two jobs share an output directory: "
                         f"{sorted({d for d in dirs if dirs.count(d) > 1})}")
    unknown = [(j.name, n) for j in jobs for n in j.needs if n not in names]
    if unknown:
        raise ValueError(f"jobs need jobs that are not in the set: {unknown}")
    return order(jobs)


def order(jobs: Sequence[Job]) -> list[Job]:
    """The jobs, each after those it needs (a cycle is an error)."""
    done: list[str] = []
    out = []
    while len(out) < len(jobs):
        ready = [j for j in jobs if j.name not in done and set(j.needs) <= set(done)]
        if not ready:
            raise ValueError("jobs need each other in a cycle: "
                             f"{sorted(j.name for j in jobs if j.name not in done)}")
        out += ready
        done += [j.name for j in ready]
    return out


def run(jobs: Sequence[Job], *, backend: str = "local", processes: int = 1,
        ray_address: str = "", cache_dir: str | None = None,
        on_done: Callable[[Job, dict], None] | None = None) -> dict[str, dict]:
    """Runs every job of `jobs` that is not ok yet, each once those it needs are ok, and
    returns name -> status record (ok jobs skipped keep their recorded one). A preempted job
    stops the set: nothing new starts, running ones finish. `on_done(job, record)` is called
    as each job ends; `cache_dir` holds JAX's compilation cache, shared by every job."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is unknown; use one of {BACKENDS}")
    ordered = check_jobs(jobs)
    records = {j.name: r for j in jobs if (r := status(j.outdir)) and r["status"] == "ok"}
    waiting = [j for j in ordered if j.name not in records]
    if not waiting:
        return records
    pool = (_Local() if backend == "local" else
            _Processes(processes) if backend == "processes" else _Ray(ray_address))
    running: dict[concurrent.futures.Future, Job] = {}
    capacity = processes if backend == "processes" else len(waiting)
    stop = False

    def finish(job: Job, record: dict) -> None:
        nonlocal stop
        records[job.name] = record
        stop = stop or record["status"] == "preempted"
        if on_done:
            on_done(job, record)

    try:
        while waiting or running:
            for job in list(waiting):
                bad = [n for n in job.needs if n in records and records[n]["status"] != "ok"]
                if bad:
                    waiting.remove(job)
                    finish(job, {"status": "blocked", "seconds": 0.0, "error": (
                        f"needs {bad[0]}, which is {records[bad[0]]['status']}")})
                elif not stop and len(running) < capacity and all(
                        records.get(n, {}).get("status") == "ok" for n in job.needs):
                    waiting.remove(job)
                    running[pool.submit(job, cache_dir)] = job
                    if isinstance(pool, _Local):  # it has run: see how it ended first
                        break
            if not running:  # stopped, or what waits needs a job that never ran: leave it
                break
            done, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
            for future in done:
                job = running.pop(future)
                try:
                    record = future.result()
                except Exception as e:  # the worker died: record it like a failed job
                    record = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                              "seconds": 0.0}
                    write_status(job.outdir, record)
                finish(job, record)
    finally:
        pool.close()
    return records


def describe(job: Job, record: dict) -> str:
    """One line for a job's end, e.g. for a progress log."""
    return (f"{job.name}: {record['status']}" + (
        f" ({record['error']})" if record["status"] != "ok" else "") +
        f" in {record.get('seconds', 0.0):.0f} s")


def log_done(prefix: str) -> Callable[[Job, dict], None]:
    """An `on_done` that prints each job's end to stderr, e.g. "compare: runs/a/seed0: ok"."""
    return lambda job, record: print(f"{prefix}: {describe(job, record)}", file=sys.stderr,
                                     flush=True)
