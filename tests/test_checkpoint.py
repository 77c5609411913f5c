"""Resume is bit-exact across processes; checkpoints restore onto other meshes."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from helpers import synthetic, tiny_config, untimed
from lm import checkpoint as ckpt_lib
from lm import train as train_lib
from lm.metrics import read_metrics
from reweight.instance import Uniform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def _main(workdir, *overrides):
    """Runs main.py in a fresh process on one CPU device."""
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    args = [sys.executable, os.path.join(ROOT, "main.py"), "--config=configs/tiny.py",
            f"--workdir={workdir}", "--config.train.steps=8", "--config.train.log_every=1",
            "--config.train.checkpoint_every=2", "--config.train.eval_every=4",
            "--config.train.progress_bar=False", "--config.train.peak_flops=1e9",
            "--config.train.batch_size=4", "--config.data.seq_len=32", "--config.data.source=synthetic",
            "--config.model.vocab_size=256", "--config.model.d_model=64", *overrides]
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, text=True)


def _plain(tree):
    """Key arrays as their raw bits, so states compare with numpy."""
    is_key = lambda x: jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    return jax.tree.map(lambda x: np.asarray(jax.random.key_data(x) if is_key(x) else x), tree)


def _restore(workdir, cfg):
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    ck = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir))
    with rt.context():
        state, data, host = ck.restore(ck.latest_step(), rt.abstract)
    ck.close()
    return _plain(state), data


def test_resume_in_a_fresh_process_is_bit_exact(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    _main(straight)
    _main(resumed, "--config.train.run_steps=5")  # stops at 5; the last checkpoint is step 5
    assert max(m["step"] for m in read_metrics(resumed)) == 5
    _main(resumed)  # a new process picks up at step 5 and finishes
    assert untimed(straight) == untimed(resumed)
    with open(os.path.join(straight, "eval.json")) as a, open(os.path.join(resumed, "eval.json")) as b:
        assert json.load(a) == json.load(b)
    from configs import tiny
    cfg = tiny.get_config()
    cfg.data.update(seq_len=32, source="synthetic")
    cfg.model.update(vocab_size=256, d_model=64)
    (s1, d1), (s2, d2) = _restore(straight, cfg), _restore(resumed, cfg)
    assert d1 == d2 and int(s1.step) == int(s2.step) == 8
    jax.tree.map(np.testing.assert_array_equal, s1, s2)  # params, opt state, rng: bit-exact


def _save_on(mesh_shape, directory):
    cfg = tiny_config()
    cfg.mesh.shape = mesh_shape
    devices = jax.devices()[:np.prod(mesh_shape)]
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, devices)
    it = synthetic(cfg)
    with rt.context():
        state, _ = rt.step_fn(rt.init_fn(jax.random.key(0)), rt.global_batch(next(it)))
        ck = ckpt_lib.Checkpointer(directory)
        ck.save(1, state, it.get_state(), {"method": {"x": 1}})
        ck.close()
    return _plain(state)


def test_a_4x2_checkpoint_restores_on_one_device_and_on_2x4(tmp_path):
    saved = _save_on((4, 1, 2), str(tmp_path))
    for shape, devices in (((1, 1, 1), jax.devices()[:1]), ((2, 1, 4), jax.devices()[:8])):
        cfg = tiny_config()
        cfg.mesh.shape = shape
        rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, devices)
        ck = ckpt_lib.Checkpointer(str(tmp_path))
        with rt.context():
            state, data, host = ck.restore(1, rt.abstract)
        ck.close()
        assert host == {"method": {"x": 1}} and data["step"] == 1
        gate = state.params["block_0"]["mlp"]["gate"]
        assert gate.sharding == rt.abstract.params["block_0"]["mlp"]["gate"].sharding
        jax.tree.map(np.testing.assert_array_equal, saved, _plain(state))


def test_init_from_loads_params(tmp_path):
    saved = _save_on((1, 1, 1), str(tmp_path / "checkpoints"))
    cfg = tiny_config()
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    with rt.context():
        params = ckpt_lib.load_params(str(tmp_path), rt.abstract)
    jax.tree.map(np.testing.assert_array_equal, saved.params, _plain(params))
