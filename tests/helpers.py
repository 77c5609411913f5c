"""Small configs, method builders and the subprocess harness shared by the tests."""

import json
import os
import subprocess
import sys
import tempfile
import time

from runs import experiment
from configs import base
from data.synthetic import SyntheticMixture
from reweight import registry


def tiny_config(**train):
    """A model small enough that a step compiles and runs in well under a second."""
    c = base.get_config()
    c.model.update(vocab_size=64, d_model=32, num_heads=4, num_layers=2, mlp_dim=64, max_len=32)
    c.data.update(source="synthetic", seq_len=16, num_domains=3, eval_rows=8)
    c.train.update(batch_size=8, steps=20, lr=1e-2, warmup_steps=2, log_every=1, eval_every=0,
                   checkpoint_every=10, progress_bar=False, peak_flops=1e9)
    c.train.update(**train)
    c.mesh.shape = (-1, 1, 1)
    return c


def synthetic(cfg, **kw):
    return SyntheticMixture(num_domains=cfg.data.num_domains, vocab_size=cfg.model.vocab_size,
                            seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size,
                            seed=cfg.seed, **kw)


def train_reference(workdir: str) -> str:
    """A frozen reference for RHO-1 and DoReMi tests: the tiny config trained 6 steps on
    another seed (7) in `workdir`, returned."""
    import jax
    from lm import loop
    from lm import workdir as workdir_lib
    from reweight.interface import Uniform
    cfg = tiny_config(steps=6, checkpoint_every=6)
    cfg.seed = 7
    workdir_lib.record(cfg, workdir)
    it = synthetic(cfg)
    loop.train(cfg, workdir, source=it, eval_sets=it.eval_batches(4), weighter=Uniform(),
               devices=jax.devices()[:1])
    return workdir


def remove_seqio_tasks() -> list[str]:
    """Removes every seqio Task that data.tasks registered; returns their names."""
    import seqio
    from data import tasks
    names = [n for n in seqio.TaskRegistry.names() if n.startswith(tasks.TASK_PREFIX + "_")]
    for n in names:
        seqio.TaskRegistry.remove(n)
    return names


def weighter_of(cfg):
    """The weighter the config names, as a run builds it."""
    return registry.make_weighter(cfg, experiment.Env(cfg))


def host_methods_of(cfg):
    """The host methods the config names, as a run builds them."""
    return registry.make_host_methods(cfg, experiment.Env(cfg))


TIMING = ("tokens_per_s", "mfu", "data_wait_fraction", "elapsed_s")  # differ between identical runs


def untimed(workdir) -> list[dict]:
    """metrics.jsonl of a run without its wall-clock fields: equal for identical runs."""
    from lm.metrics import read_metrics
    return [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(str(workdir))]


class Recording:
    """A batch source that keeps the domain ids of every batch it hands out."""

    def __init__(self, it):
        self.it, self.domains, self.domain_names = it, [], it.domain_names

    def __next__(self):
        batch = next(self.it)
        self.domains.append(batch["domain_id"].copy())
        return batch

    def get_state(self):
        return self.it.get_state()

    def set_state(self, s):
        self.it.set_state(s)

    def set_weights(self, w):
        self.it.set_weights(w)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILE_CACHE = os.path.join(tempfile.gettempdir(), f"lm-tests-jax-cache-{os.getuid()}")


def main_command(workdir, *flags, processes: int = 1, devices: int = 1) -> tuple[list, dict]:
    """(argv, env) that run main.py in fresh processes on `devices` simulated CPU devices: one
    process, or `processes` of them through lm.launch. Modules under tests/ are importable, so
    a config may name a test's own method ("test_module:factory")."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env |= {"JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
            # The runs of a test compile the same programs: read them back from a cache.
            "JAX_COMPILATION_CACHE_DIR": COMPILE_CACHE,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    args = [f"--workdir={workdir}", *flags]
    if processes == 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        return [sys.executable, os.path.join(ROOT, "main.py"), *args], env
    return [sys.executable, "-m", "lm.launch", f"--num_processes={processes}",
            f"--devices_per_process={devices // processes}", "--", "main.py", *args], env


def run_main(workdir, *flags, processes: int = 1, devices: int = 1, check: bool = True,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs main.py to the end (see `main_command`); with `check`, fails the test on an error
    exit, showing the output's tail."""
    cmd, env = main_command(workdir, *flags, processes=processes, devices=devices)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out


def start_main(workdir, *flags, processes: int = 1, devices: int = 1) -> subprocess.Popen:
    """main.py started in the background (see `main_command`), stderr merged into stdout."""
    cmd, env = main_command(workdir, *flags, processes=processes, devices=devices)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def last_step(workdir) -> int:
    """The newest step in metrics.jsonl (the file may end in a half-written line)."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except json.JSONDecodeError:
            continue
    return 0


def wait_for_step(proc, workdir, step, timeout=120.0):
    """Returns once the run of `proc` has logged `step`; fails if it ends or times out first."""
    t0 = time.time()
    while last_step(workdir) < step:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}:\n{proc.stdout.read()[-3000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"run did not reach step {step} in {timeout} s")
        time.sleep(0.01)
