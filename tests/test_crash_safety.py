"""Crash safety: kill -9 at random points, SIGTERM, corrupt checkpoints, NaN stop or skip."""

import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import last_step, start_main, synthetic, tiny_config, untimed, wait_for_step
from lm import checkpoint as ckpt_lib
from lm import loop
from lm import train as train_lib
from lm.metrics import read_metrics
from reweight.interface import Uniform

STEPS = 150
# A loss-based weighter, so the weighter state and the losses' order matter too.
FLAGS = ("--config=configs/tiny.py", f"--config.train.steps={STEPS}", "--config.train.log_every=1",
         "--config.train.checkpoint_every=7", "--config.train.eval_every=25",
         "--config.train.progress_bar=False", "--config.train.peak_flops=1e9",
         "--config.train.batch_size=4", "--config.data.seq_len=32",
         "--config.data.source=synthetic", "--config.model.vocab_size=256",
         "--config.model.d_model=64", "--config.model.num_layers=1",
         "--config.reweight.instance=loss_based",
         "--config.reweight.loss_based.strategy=linupper", "--config.reweight.loss_based.r=0.5")


def _start(workdir, *extra):
    return start_main(workdir, *FLAGS, *extra)


def _finish(proc) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("straight"))
    _finish(_start(workdir))
    return workdir


def test_kill_9_at_three_random_points_resumes_bit_exactly(straight, tmp_path):
    workdir = str(tmp_path)
    targets = sorted(np.random.default_rng(2).choice(np.arange(5, STEPS - 10), 3, replace=False))
    for target in targets:
        proc = _start(workdir)
        wait_for_step(proc, workdir, int(target))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert last_step(workdir) < STEPS
    _finish(_start(workdir))
    assert untimed(workdir) == untimed(straight)
    with open(os.path.join(workdir, "eval.json")) as a, \
            open(os.path.join(straight, "eval.json")) as b:
        assert json.load(a) == json.load(b)


def test_sigterm_saves_at_the_next_step_and_exits_0_then_resumes_exactly(straight, tmp_path):
    workdir = str(tmp_path)
    proc = _start(workdir)
    wait_for_step(proc, workdir, 10)
    proc.send_signal(signal.SIGTERM)
    out = _finish(proc)
    stopped = last_step(workdir)
    assert "SIGTERM received" in out and f"after step {stopped}" in out
    assert stopped < STEPS
    # The checkpoint is at the step the run stopped at, not an earlier periodic one.
    assert ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir)).latest_step() == stopped
    _finish(_start(workdir))
    assert untimed(workdir) == untimed(straight)


def _train(workdir, weighter=None, **train):
    cfg = tiny_config(**train)
    it = synthetic(cfg)
    return loop.train(cfg, str(workdir), source=it, eval_sets=it.eval_batches(4),
                      weighter=weighter or Uniform(), devices=jax.devices()[:1])


def _checkpoint_files(workdir) -> dict:
    out = {}
    for root, _, files in os.walk(ckpt_lib.checkpoint_dir(str(workdir))):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[path] = f.read()
    return out


def test_a_truncated_latest_checkpoint_is_skipped_with_a_warning(tmp_path):
    _train(tmp_path / "a", steps=8, run_steps=6, checkpoint_every=2)
    latest = ckpt_lib.checkpoint_dir(str(tmp_path / "a")) + "/6"
    for root, _, files in os.walk(os.path.join(latest, "state")):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(os.path.getsize(os.path.join(root, name)) // 2)
    good = {p: b for p, b in _checkpoint_files(tmp_path / "a").items() if "/6/" not in p}
    with pytest.warns(RuntimeWarning, match="step 6 failed to restore.*resumed from step 4"):
        _train(tmp_path / "a", steps=8, checkpoint_every=2)
    assert os.listdir(ckpt_lib.checkpoint_dir(str(tmp_path / "a")) + "-corrupt")  # kept aside
    after = _checkpoint_files(tmp_path / "a")
    assert all(after[p] == b for p, b in good.items() if "/4/" in p)  # the good one untouched
    # From step 4 the run went on exactly as one that never had a step 6 written.
    _train(tmp_path / "b", steps=8, checkpoint_every=2)
    assert untimed(tmp_path / "a") == untimed(tmp_path / "b")


def test_when_no_checkpoint_restores_the_run_stops_and_moves_nothing(tmp_path):
    _train(tmp_path, steps=4, checkpoint_every=2)
    for step in (2, 4):
        for root, _, files in os.walk(ckpt_lib.checkpoint_dir(str(tmp_path)) + f"/{step}/state"):
            for name in files:
                open(os.path.join(root, name), "w").close()
    before = _checkpoint_files(tmp_path)
    with pytest.raises(RuntimeError, match=r"no checkpoint .* restores \(tried steps \[4, 2\]\)"):
        _train(tmp_path, steps=6, checkpoint_every=2)
    assert _checkpoint_files(tmp_path) == before


class NaNAt(Uniform):
    """Uniform weights, except NaN at one step: a loss that blew up."""

    def __init__(self, step):
        self.step = step

    def __call__(self, state, inputs):
        w, state, metrics = super().__call__(state, inputs)
        return jnp.where(inputs.step + 1 == self.step, jnp.nan, w), state, metrics


def test_nan_stops_the_run_naming_the_step_and_domains_and_keeps_the_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError,
                       match=r"non-finite loss .* at step 7; domains in the batch: \['synthetic_"):
        _train(tmp_path, NaNAt(7), steps=10, checkpoint_every=3)
    assert ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(str(tmp_path))).latest_step() == 6


def test_nan_skip_mode_skips_the_update_counts_it_and_trains_on(tmp_path):
    _train(tmp_path, NaNAt(7), steps=10, checkpoint_every=5, on_nonfinite="skip")
    metrics = [m for m in read_metrics(str(tmp_path)) if "loss" in m]
    assert [m["nonfinite_skipped"] for m in metrics] == [0] * 6 + [1] * 4
    cfg = tiny_config(on_nonfinite="skip")
    rt = train_lib.build_runtime(cfg, Uniform(), 3, jax.devices()[:1])
    with rt.context():
        _, state, _, _ = ckpt_lib.Checkpointer(
            ckpt_lib.checkpoint_dir(str(tmp_path))).restore_latest(rt.abstract)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(state.params))
    assert metrics[-1]["loss"] < metrics[0]["loss"]


def test_a_skipped_step_leaves_the_weighters_state_as_it_was(tmp_path):
    """A weighter's state (DoReMi's alpha, an EMA) moves with the params: not on a skipped step."""
    class Counting(NaNAt):
        def init(self):
            return jnp.zeros((), jnp.int32)

        def __call__(self, state, inputs):
            w, _, metrics = super().__call__(state, inputs)
            return w, state + 1, metrics

    _train(tmp_path, Counting(7), steps=10, checkpoint_every=10, on_nonfinite="skip")
    cfg = tiny_config(on_nonfinite="skip")
    rt = train_lib.build_runtime(cfg, Counting(7), 3, jax.devices()[:1])
    with rt.context():
        _, state, _, _ = ckpt_lib.Checkpointer(
            ckpt_lib.checkpoint_dir(str(tmp_path))).restore_latest(rt.abstract)
    assert int(state.weighter_state) == 9  # ten steps, one skipped


def test_too_many_skips_in_a_row_stop_the_run(tmp_path):
    class AlwaysNaN(Uniform):
        def __call__(self, state, inputs):
            w, state, m = super().__call__(state, inputs)
            return w * jnp.nan, state, m

    with pytest.raises(FloatingPointError, match="3 updates in a row skipped"):
        _train(tmp_path, AlwaysNaN(), steps=10, on_nonfinite="skip", max_nonfinite_skips=2)


def test_prefetch_never_draws_past_a_barrier():
    from lm.prefetch import Prefetcher

    class Counting:
        drawn = 0

        def __next__(self):
            self.drawn += 1
            return self.drawn

    src = Counting()
    batches = Prefetcher(src, lambda x: x, depth=2, first_step=1, last_step=20,
                         barrier=lambda s: s % 5 == 0)
    got = [next(batches) for _ in range(5)]
    time.sleep(0.2)
    assert got == [(s, s) for s in range(1, 6)] and src.drawn == 5  # paused at the barrier
    batches.release(4)  # not the barrier it waits at
    time.sleep(0.1)
    assert src.drawn == 5
    batches.release(5)
    assert next(batches) == (6, 6)
    batches.stop_after(6 + batches.depth + 1)  # the most the thread can have drawn by now
    assert list(batches) == [(7, 7), (8, 8), (9, 9)] and src.drawn == 9
    batches.close()

    def broken():
        yield {"x": 1}
        raise ValueError("bad row")

    batches = Prefetcher(broken(), lambda x: x, depth=2, first_step=1, last_step=5,
                         barrier=lambda s: False)
    assert next(batches) == (1, {"x": 1})
    with pytest.raises(ValueError, match="bad row"):
        next(batches)
    batches.close()
