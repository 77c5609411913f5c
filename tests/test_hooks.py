"""A hook is the caller's own code: this file defines one (a tally of the training loss, with
its state in the checkpoint) and passes it to training with nothing under lm/ knowing it. A
run killed with -9 and resumed logs and saves what an uninterrupted run does; a hook acts at
its steps, after observing them; a hook's error ends the run.

  python tests/test_hooks.py WORKDIR   # trains with the tally (what the kill test runs)
"""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from helpers import ROOT, main_command, synthetic, tiny_config, untimed, wait_for_step
from lm import checkpoint as ckpt_lib
from lm import loop
from lm import train as train_lib
from lm.hooks import Hook, finite
from lm.metrics import read_metrics
from reweight.interface import Uniform

STEPS = 50


class LossTally(Hook):
    """Every `every` steps: the mean loss since its last line, the steps and tokens it has
    counted over the whole run, and the params' global norm."""
    name = "loss_tally"

    def __init__(self, every: int):
        self.every, self.steps, self.tokens, self.window = every, 0, 0.0, []

    def acts_at(self, step):
        return step > 0 and step % self.every == 0

    def observe(self, loop, step, metrics):
        if finite(metrics):
            self.steps += 1
            self.tokens += float(metrics["tokens"])
            self.window.append(float(metrics["loss"]))

    def act(self, loop, step):
        loop.writer.write(step, {"tally/window_loss": np.mean(self.window),
                                 "tally/steps": self.steps, "tally/tokens": self.tokens,
                                 "tally/param_norm": optax.global_norm(loop.state.params)})
        self.window = []

    def get_state(self):
        return {"steps": self.steps, "tokens": self.tokens, "window": self.window}

    def set_state(self, state):
        self.steps, self.tokens, self.window = state["steps"], state["tokens"], state["window"]


def _train(workdir, hooks, devices=None, **train):
    cfg = tiny_config(**train)
    it = synthetic(cfg)
    return loop.train(cfg, str(workdir), source=it, eval_sets=it.eval_batches(4),
                      weighter=Uniform(), hooks=hooks, devices=devices)


def _start(workdir) -> subprocess.Popen:
    _, env = main_command(workdir)
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(workdir)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(workdir):
    proc = _start(workdir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]


def _host_states(workdir, step) -> dict:
    """The hooks' checkpoint items of `step`."""
    rt = train_lib.build_runtime(tiny_config(), Uniform(), 3, jax.devices()[:1])
    with rt.context():
        return ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(str(workdir))).restore(
            step, rt.abstract)[2]


def test_a_hook_of_the_callers_resumes_exactly_after_kill_9(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(straight)
    proc = _start(killed)
    wait_for_step(proc, str(killed), 23)  # past checkpoint 21, mid tally window
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(m["step"] for m in read_metrics(str(killed))) < STEPS
    _finish(killed)
    assert untimed(straight) == untimed(killed)
    tally = [m for m in read_metrics(str(killed)) if "tally/steps" in m]
    assert [m["step"] for m in tally] == list(range(5, STEPS + 1, 5))
    assert [m["tally/steps"] for m in tally] == list(range(5, STEPS + 1, 5))  # none lost
    # The hook's state is a checkpoint item beside the run's own, equal to the straight run's.
    assert _host_states(killed, STEPS) == _host_states(straight, STEPS) == {
        "loss_tally": {"steps": STEPS, "tokens": tally[-1]["tally/tokens"], "window": []}}
    at_49 = _host_states(killed, 49)["loss_tally"]
    assert at_49["steps"] == 49 and len(at_49["window"]) == 4  # steps 46 to 49


class Recorder(Hook):
    """Records what the loop hands it, in order."""
    name = "recorder"

    def __init__(self):
        self.calls = []

    def acts_at(self, step):
        return step % 3 == 0

    def observe(self, loop, step, metrics):
        self.calls.append(("observe", step))

    def observe_eval(self, result):
        self.calls.append(("eval", result.step))

    def act(self, loop, step):
        self.calls.append(("act", step, int(loop.state.step)))

    def finish(self, loop):
        self.calls.append(("finish", loop.end))


def test_a_hook_acts_at_its_steps_after_observing_them_and_after_the_eval(tmp_path, one_device):
    hook = Recorder()
    _train(tmp_path, [hook], one_device, steps=8, eval_every=4, eval_at_start=True,
           checkpoint_every=4)
    steps = [c[1] for c in hook.calls if c[0] == "observe"]
    assert steps == list(range(1, 9))
    assert [c for c in hook.calls if c[0] == "act"] == [("act", s, s) for s in (0, 3, 6)]
    calls = hook.calls
    assert calls[:2] == [("eval", 0), ("act", 0, 0)]  # a fresh run, before the first batch
    assert calls.index(("act", 3, 3)) == calls.index(("observe", 3)) + 1
    assert calls.index(("eval", 4)) == calls.index(("observe", 4)) + 1
    assert calls[-1] == ("finish", 8)
    # A hook without state has no checkpoint item, and neither have the built-in hooks.
    checkpoint = os.path.join(tmp_path, "checkpoints", "8")
    assert not [n for n in os.listdir(checkpoint) if n.startswith("host_")]


class Raises(Hook):
    def __init__(self, where):
        self.where, self.name = where, where

    def acts_at(self, step):
        if self.where == "acts_at" and step == 3:
            raise RuntimeError("hook broke in acts_at")
        return step == 2

    def observe(self, loop, step, metrics):
        if self.where == "observe" and step == 3:
            raise RuntimeError("hook broke in observe")

    def act(self, loop, step):
        if self.where == "act":
            raise RuntimeError("hook broke in act")


@pytest.mark.parametrize("where", ["act", "observe", "acts_at"])
def test_a_hook_that_raises_ends_the_run_with_its_error(tmp_path, one_device, where):
    with pytest.raises(RuntimeError, match=f"hook broke in {where}"):
        _train(tmp_path, [Raises(where)], one_device, steps=5)


def test_hooks_and_methods_need_distinct_names(tmp_path):
    with pytest.raises(ValueError, match=r"distinct names .* got \['recorder', 'recorder'\]"):
        _train(tmp_path, [Recorder(), Recorder()])


def tally_every_5(cfg) -> LossTally:
    """A hook factory for config.train.hooks."""
    return LossTally(5)


def test_a_hook_named_in_the_config_runs_through_main(tmp_path):
    """config.train.hooks="module:factory" adds a hook from the command line; a bad entry is
    one of the problems the builder lists before any work."""
    from helpers import run_main
    workdir = str(tmp_path / "run")
    flags = ("--config=configs/tiny.py", "--config.data.source=synthetic",
             "--config.model.vocab_size=256", "--config.model.d_model=32",
             "--config.model.num_layers=1", "--config.train.steps=10",
             "--config.train.batch_size=4", "--config.data.seq_len=16",
             "--config.train.progress_bar=False", "--config.train.warmup_steps=1")
    run_main(workdir, *flags, "--config.train.hooks=test_hooks:tally_every_5")
    tally = [m for m in read_metrics(workdir) if "tally/steps" in m]
    assert [(m["step"], m["tally/steps"]) for m in tally] == [(5, 5), (10, 10)]
    from runs import experiment
    cfg = tiny_config(hooks="test_hooks:tally_every_5,test_hooks:nope")
    with pytest.raises(ValueError, match=r"1 problem\(s\) before any work:\n  config.train."
                                         "hooks: cannot import 'test_hooks:nope'"):
        experiment.build(cfg)


if __name__ == "__main__":
    _train(sys.argv[1], [LossTally(5)], steps=STEPS, checkpoint_every=7, eval_every=20)
