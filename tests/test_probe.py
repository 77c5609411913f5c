"""The oracle probe is one real optimizer step on a single example, then the reference loss,
and it never changes the live train state."""

import jax
import jax.numpy as jnp
import numpy as np

from helpers import synthetic, tiny_config
from lm import probe as probe_lib
from lm import train as train_lib
from reweight.interface import Uniform


def _rows(batch, idx):
    return {k: v[idx] for k, v in batch.items()}


def test_probe_matches_a_real_train_step_and_leaves_the_state_alone(one_device):
    cfg = tiny_config()
    it = synthetic(cfg)
    rt = train_lib.build_runtime(cfg, Uniform(), len(it.domain_names), one_device)
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        for _ in range(3):  # non-trivial Adam moments and schedule position
            state, _ = rt.step_fn(state, rt.global_batch(next(it)))
        candidates = next(it)
        reference = it.eval_batches(8)[it.domain_names[0]][0]
        replicated = jax.sharding.NamedSharding(rt.mesh, jax.sharding.PartitionSpec())
        probes = probe_lib.make_probes(rt.model, rt.tx, replicated)
        probe, before = probes["loss_after_step"], probes["reference_loss"]
        live = jax.device_get((state.params, state.opt_state))
        post = np.asarray(probe(state.params, state.opt_state,
                                jax.tree.map(jnp.asarray, _rows(candidates, slice(0, 4))),
                                jax.tree.map(jnp.asarray, reference)))
        jax.tree.map(np.testing.assert_array_equal, live,
                     jax.device_get((state.params, state.opt_state)))
        ref_before = float(before(state.params, reference))
        assert post.shape == (4,) and np.all(np.isfinite(post))
        assert np.ptp(post) > 0 and np.all(post != ref_before)  # each candidate moves it its way

        for i in (0, 3):  # a batch of B copies of row i: uniform weights give row i's own loss
            copies = _rows(candidates, np.full(cfg.train.batch_size, i))
            stepped, _ = rt.step_fn(jax.tree.map(jnp.copy, state), rt.global_batch(copies))
            after = float(probe_lib.reference_loss(stepped.params, reference, rt.model))
            np.testing.assert_allclose(post[i], after, rtol=2e-5)
        losses = np.asarray(probes["example_loss"](state.params, jax.tree.map(jnp.asarray,
                                                                            candidates)))
        np.testing.assert_allclose(losses, train_lib.example_losses(
            state.params, candidates, rt.model)[0], rtol=1e-5)
