"""Several processes on one machine train as one: 2 processes x 4 devices == 1 x 8 devices.

Each run is a real multi-controller JAX program started by `lm.launch` (gloo collectives over
localhost), so the per-process data, the global batch, the collectives, the multi-process
checkpoint and process-0-only logging are all exercised.
"""

import os
import re
import signal
import time

import jax
import numpy as np
import pytest

from configs import tiny
from helpers import run_main, start_main, untimed
from lm import checkpoint as ckpt_lib
from lm import train as train_lib
from reweight.interface import Uniform

FLAGS = ("--config=configs/tiny.py", "--config.train.steps=6", "--config.train.log_every=1",
         "--config.train.checkpoint_every=3", "--config.train.eval_every=3",
         "--config.train.progress_bar=False", "--config.train.peak_flops=1e9",
         "--config.train.batch_size=8", "--config.data.seq_len=32",
         "--config.data.source=synthetic", "--config.model.vocab_size=256",
         "--config.model.d_model=64", "--config.model.num_layers=1")
LOSS_BASED = ("--config.reweight.instance=loss_based",
              "--config.reweight.loss_based.strategy=extremes",
              "--config.reweight.loss_based.r=0.4")


def _run(workdir, processes: int, *extra):
    return run_main(workdir, *FLAGS, *extra, processes=processes, devices=8)


def _assert_same_run(a, b):
    ma, mb = untimed(a), untimed(b)
    assert [m["step"] for m in ma] == [m["step"] for m in mb] and len(ma) >= 6
    for x, y in zip(ma, mb):
        assert x.keys() == y.keys()
        # f32 sums over gloo and over in-process devices differ in order: ~1e-5 relative.
        np.testing.assert_allclose([x[k] for k in x], [y[k] for k in x], rtol=2e-4, atol=1e-5,
                                   err_msg=f"step {x['step']}")
    pa, pb = _params(a), _params(b)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=2e-4, atol=1e-5), pa, pb)


def _params(workdir):
    cfg = tiny.get_config()
    cfg.model.update(vocab_size=256, d_model=64, num_layers=1)
    cfg.data.update(seq_len=32, num_domains=4)
    rt = train_lib.build_runtime(cfg, Uniform(), 4, jax.devices()[:1])
    with rt.context():
        return jax.device_get(ckpt_lib.load_params(workdir, rt.abstract.params)[0])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("one"))
    _run(workdir, 1, *LOSS_BASED)
    return workdir


def test_two_processes_train_as_one_with_loss_based_weights(one_process, tmp_path):
    out = _run(tmp_path, 2, *LOSS_BASED)
    _assert_same_run(str(tmp_path), one_process)
    assert "[0] params" in out.stdout and "[1] params" not in out.stdout  # only process 0 logs


def test_a_two_process_checkpoint_continues_in_one_process(one_process, tmp_path):
    _run(tmp_path, 2, *LOSS_BASED, "--config.train.run_steps=3")
    _run(tmp_path, 1, *LOSS_BASED)
    _assert_same_run(str(tmp_path), one_process)


@pytest.mark.slow
def test_a_one_process_checkpoint_continues_in_two_processes(one_process, tmp_path):
    _run(tmp_path, 1, *LOSS_BASED, "--config.train.run_steps=3")
    _run(tmp_path, 2, *LOSS_BASED)
    _assert_same_run(str(tmp_path), one_process)


@pytest.mark.slow
def test_two_processes_train_as_one_with_uniform_weights(tmp_path):
    _run(tmp_path / "one", 1)
    _run(tmp_path / "two", 2)
    _assert_same_run(str(tmp_path / "two"), str(tmp_path / "one"))


def test_killing_one_process_stops_the_run_with_a_clear_message(tmp_path):
    proc = start_main(tmp_path, *FLAGS, "--config.train.steps=100000", processes=2, devices=2)
    pids = {}
    while len(pids) < 2:
        line = proc.stdout.readline()
        assert line, "lm.launch ended before starting both processes"
        if m := re.match(r"lm\.launch: process (\d) of 2 is pid (\d+)", line):
            pids[int(m[1])] = int(m[2])
    metrics = os.path.join(str(tmp_path), "metrics.jsonl")
    t0 = time.time()
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        assert time.time() - t0 < 300 and proc.poll() is None, "the run never started training"
        time.sleep(0.2)
    os.kill(pids[1], signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGKILL
    assert "process 1 of 2 was killed by SIGKILL; stopped the others" in out
    for pid in pids.values():  # none is left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
