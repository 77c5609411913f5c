"""Resume is bit-exact across processes; checkpoints restore onto other meshes; params load
alone, whatever optimizer and methods wrote them."""

import json
import os

import jax
import numpy as np

from data import sources
from runs import experiment
from helpers import run_main, synthetic, tiny_config, untimed
from lm import checkpoint as ckpt_lib
from lm import train as train_lib
from lm.metrics import read_metrics
from reweight.interface import Uniform

FLAGS = ("--config=configs/tiny.py", "--config.train.steps=8", "--config.train.log_every=1",
         "--config.train.checkpoint_every=2", "--config.train.eval_every=4",
         "--config.train.progress_bar=False", "--config.train.peak_flops=1e9",
         "--config.train.batch_size=4", "--config.data.seq_len=32",
         "--config.data.source=synthetic", "--config.model.vocab_size=256",
         "--config.model.d_model=64")


def _main(workdir, *overrides):
    """Runs main.py in a fresh process on one CPU device."""
    run_main(workdir, *FLAGS, *overrides)


def _plain(tree):
    """Key arrays as their raw bits, so states compare with numpy."""
    is_key = lambda x: jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    return jax.tree.map(lambda x: np.asarray(jax.random.key_data(x) if is_key(x) else x), tree)


def _restore(workdir, cfg):
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    ck = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir))
    with rt.context():
        state, data, methods = ck.restore(ck.latest_step(), rt.abstract)
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
            state, data, methods = ck.restore(1, rt.abstract)
        ck.close()
        assert methods == {"method": {"x": 1}} and data["step"] == 1
        gate = state.params["block_0"]["mlp"]["gate"]
        assert gate.sharding == rt.abstract.params["block_0"]["mlp"]["gate"].sharding
        jax.tree.map(np.testing.assert_array_equal, saved, _plain(state))


def test_init_from_loads_params(tmp_path):
    saved = _save_on((1, 1, 1), str(tmp_path / "checkpoints"))
    cfg = tiny_config()
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    with rt.context():
        params, step = ckpt_lib.load_params(str(tmp_path), rt.abstract.params)
    assert step == 1
    jax.tree.map(np.testing.assert_array_equal, saved.params, _plain(params))


class Counter:
    """A stateful weighter: its state changes the train state's tree."""
    needs_losses = False

    def init(self):
        return {"steps": np.zeros((), np.int32), "sums": np.zeros(3, np.float32)}

    def __call__(self, state, inputs):
        w, _, m = Uniform()(state, inputs)
        return w, {"steps": state["steps"] + 1, "sums": state["sums"] + 1.0}, m


def test_eval_and_init_from_load_params_whatever_optimizer_and_weighter_wrote_them(tmp_path):
    source = tiny_config(steps=4, checkpoint_every=4, on_nonfinite="skip")  # another opt tree
    data = sources.build_data(source)
    exp = experiment.Experiment(source, data, Counter(), methods=[])
    exp.train(str(tmp_path / "src"), devices=jax.devices()[:1])
    target = tiny_config(steps=2)  # stop on non-finite, uniform weights: another state tree
    evaluated = experiment.build(target, train=False).evaluate(str(tmp_path / "src"),
                                                               jax.devices()[:1])
    assert evaluated.step == 4 and set(evaluated.loss) == set(data.domain_names)
    target.init_from = str(tmp_path / "src")
    result = experiment.build(target).train(str(tmp_path / "dst"), jax.devices()[:1])
    assert result.step == 2 and np.isfinite(result.eval.overall_loss)
