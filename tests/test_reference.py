"""Frozen reference models: RHO-1 keeps exactly floor(k * n) of the global batch's loss tokens,
highest excess first, on any mesh and with accumulation; the model's own initial params as the
reference give zero excess; DoReMi's per-token excess is the hand computation; the reference
selectors keep the rows their scores rank first; a run with a reference resumes bit-exactly
after kill -9."""

import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from data import sources
from runs import experiment
from helpers import (run_main, start_main, synthetic, tiny_config, train_reference, untimed,
                     wait_for_step)
from lm import reference as reference_lib
from lm import train as train_lib
from lm import workdir as workdir_lib
from lm.metrics import read_metrics
from reweight.doremi import DoReMi
from reweight.interface import DomainSums, StepInputs
from reweight.ref_select import RefSelect
from reweight.rho1 import Rho1, kept_count


def save_reference(workdir, cfg, params, step=0):
    """A workdir holding `params` as its step-`step` checkpoint, as a run of `cfg` writes it."""
    workdir_lib.record(cfg, str(workdir))
    with ocp.StandardCheckpointer() as w:
        w.save(os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "params"),
               params)


@pytest.fixture(scope="module")
def trained_reference(tmp_path_factory):
    return train_reference(str(tmp_path_factory.mktemp("reference")))


def _spec(cfg, workdir):
    return reference_lib.ReferenceSpec("config.reference.workdir", workdir,
                                       experiment.recorded_config(workdir).model)


def _inputs(excess, mask, domain=None):
    b = excess.shape[0]
    return StepInputs(domain_B=jnp.asarray(domain if domain is not None else np.zeros(b, int)),
                      valid_B=jnp.asarray(mask.sum(-1) > 0), loss_mask_BxL=jnp.asarray(mask),
                      step=jnp.zeros((), jnp.int32), rng=jax.random.key(0),
                      token_loss_BxL=jnp.asarray(excess + 3.0),
                      reference_token_loss_BxL=jnp.full(excess.shape, 3.0, jnp.float32))


@pytest.mark.parametrize("keep", [0.6, 0.65, 0.7, 1.0, 0.001])
def test_rho1_keeps_exactly_floor_k_n_highest_excess_first_ties_by_position(keep):
    rng = np.random.default_rng(0)
    excess = rng.integers(-3, 4, size=(6, 10)).astype(np.float32) / 4  # many ties
    mask = (rng.random((6, 10)) < 0.8).astype(np.float32)
    mask[2] = 0  # a row without loss tokens
    w, _, m = Rho1(keep, ["a", "b"])((), _inputs(excess, mask, np.array([0, 1] * 3)))
    w = np.asarray(w)
    n = int(mask.sum())
    k = math.floor(keep * n)
    assert int(kept_count(jnp.int32(n), keep)) == k
    kept = w > 0
    assert kept.sum() == k and not kept[mask == 0].any()
    if k == 0:  # fewer tokens than one kept: nothing trains this step
        assert w.sum() == 0 and float(m["excess_threshold"]) == 0
        return
    np.testing.assert_allclose(w[kept], 1.0 / k, rtol=1e-6)
    assert w.sum() == pytest.approx(1.0, rel=1e-5)
    # The expected set: valid tokens by excess descending, then by flat position.
    flat = [(-excess.flat[i], i) for i in range(excess.size) if mask.flat[i]]
    expected = {i for _, i in sorted(flat)[:k]}
    assert set(np.flatnonzero(kept.reshape(-1))) == expected
    assert float(m["kept_fraction"]) == pytest.approx(k / n)
    assert float(m["excess_p100"]) == excess[mask > 0].max()
    assert float(m["excess_p0"]) == excess[mask > 0].min()
    assert float(m["excess_threshold"]) == excess.reshape(-1)[sorted(expected)].min()
    for d, name in enumerate(["a", "b"]):
        rows = np.arange(6) % 2 == d
        assert float(m[f"kept_fraction/{name}"]) == pytest.approx(
            kept[rows].sum() / mask[rows].sum())


def test_kept_count_is_exact_where_float32_rounds_down():
    # float32(0.7) * 10 = 6.9999998: a float floor would keep 6.
    assert int(kept_count(jnp.int32(10), 0.7)) == 7
    n = jnp.int32(2 ** 31 - 1)
    assert int(kept_count(n, 0.65)) == (2 ** 31 - 1) * 65 // 100


def test_rho1_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match=r"rho1\.keep must be in \(0, 1\]"):
        Rho1(1.5, ["a"])


def _rho1_cfg(reference, **train):
    cfg = tiny_config(**train)
    cfg.reweight.instance = "rho1"
    cfg.reweight.rho1.keep = 0.65
    cfg.reference.workdir = reference
    return cfg


def _steps(cfg, devices, batches, reference):
    weighter = experiment.build(cfg, data=sources.Data(None, {}, tuple(
        f"synthetic_{d}" for d in range(cfg.data.num_domains)))).weighter
    rt = train_lib.build_runtime(cfg, weighter, cfg.data.num_domains, devices,
                                 references={"workdir": _spec(cfg, reference)},
                                 step_reference="workdir")
    out = []
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        for b in batches:
            state, m = rt.step_fn(state, rt.global_batch(b))
            out.append(jax.device_get(m))
    return out, rt


@pytest.fixture(scope="module")
def rho1_batches():
    cfg = tiny_config()
    it = synthetic(cfg)
    batches = [next(it) for _ in range(2)]
    batches[0]["loss_mask"][3, 5:] = 0  # ragged loss masks: n_valid is not B * L
    batches[1]["loss_mask"][6] = 0
    return batches


@pytest.fixture(scope="module")
def one_device(trained_reference, rho1_batches):
    """RHO-1 against the trained reference, two steps on one device: (metrics, runtime)."""
    return _steps(_rho1_cfg(trained_reference), jax.devices()[:1], rho1_batches,
                  trained_reference)


def _check_kept(batches, metrics):
    for b, m in zip(batches, metrics):
        n = int(b["loss_mask"].sum())
        k = math.floor(0.65 * n)
        assert float(m["weighter/kept_fraction"]) == pytest.approx(k / n)
        # Each row's total weight is its kept tokens / k: they add up to exactly k tokens.
        kept_tokens = m["weights"] * k
        np.testing.assert_allclose(kept_tokens, np.round(kept_tokens), atol=1e-3)
        assert np.round(kept_tokens).sum() == k
        assert float(m["weighter/excess_threshold"]) <= float(m["weighter/excess_p100"])


@pytest.mark.parametrize("setup", ["4x2 mesh", "4 micro-batches"])
def test_rho1_in_the_step_keeps_exactly_k_of_the_global_batch(setup, trained_reference,
                                                              rho1_batches, one_device):
    cfg = _rho1_cfg(trained_reference, microbatches=4 if setup == "4 micro-batches" else 1)
    devices = jax.devices()[:1]
    if setup == "4x2 mesh":
        cfg.mesh.shape = (4, 1, 2)
        devices = jax.devices()[:8]
    metrics, rt = _steps(cfg, devices, rho1_batches, trained_reference)
    assert rt.mesh.size == len(devices)
    _check_kept(rho1_batches, one_device[0])
    _check_kept(rho1_batches, metrics)
    for a, b in zip(one_device[0], metrics):  # the same tokens kept whatever the layout
        np.testing.assert_allclose(a["weights"], b["weights"], atol=1e-6)
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def _losses(rt, batch):
    """(the initial model's, the reference's) per-token losses on `batch`."""
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        batch = rt.global_batch(batch)
        ref = rt.references["workdir"]
        return (train_lib.token_losses(state.params, batch, rt.model),
                train_lib.token_losses(ref.params, batch, ref.model))


def test_the_kept_tokens_have_the_highest_excess(rho1_batches, one_device):
    (m, _), rt = one_device
    b = rho1_batches[0]
    model_BxL, ref_BxL = _losses(rt, b)
    w, _, _ = Rho1(0.65, [f"synthetic_{d}" for d in range(3)])((), StepInputs(
        domain_B=jnp.asarray(b["domain_id"]), valid_B=jnp.asarray(b["loss_mask"].sum(-1) > 0),
        loss_mask_BxL=jnp.asarray(b["loss_mask"], jnp.float32), step=jnp.int32(0),
        rng=jax.random.key(0), token_loss_BxL=model_BxL, reference_token_loss_BxL=ref_BxL))
    excess = np.asarray(model_BxL - ref_BxL)
    mask, kept = b["loss_mask"] > 0, np.asarray(w) > 0
    assert excess[kept].min() >= excess[mask & ~kept].max()
    np.testing.assert_allclose(np.asarray(w).sum(-1), m["weights"], atol=1e-6)


def test_the_models_own_initial_params_as_reference_give_zero_excess(tmp_path, rho1_batches,
                                                                     one_device):
    _, rt = one_device
    with rt.context():
        save_reference(tmp_path / "init", tiny_config(), rt.init_fn(jax.random.key(0)).params)
    cfg = _rho1_cfg(str(tmp_path / "init"))
    (m, _), _ = _steps(cfg, jax.devices()[:1], rho1_batches, str(tmp_path / "init"))
    for q in (0, 50, 100):
        assert abs(float(m[f"weighter/excess_p{q}"])) <= 1e-6
    assert np.abs(m["domain_excess_sum"]).max() <= 1e-5
    np.testing.assert_allclose(m["reference_token_loss"], m["token_loss"], rtol=1e-6)


def test_doremi_per_token_excess_matches_a_hand_computation(rho1_batches, one_device):
    (m, _), rt = one_device
    b = rho1_batches[0]
    model_BxL, ref_BxL = (np.asarray(x) for x in _losses(rt, b))
    clipped = np.maximum(model_BxL - ref_BxL, 0) * b["loss_mask"]
    by_hand = np.array([clipped[b["domain_id"] == d].sum() for d in range(3)])
    np.testing.assert_allclose(m["domain_excess_sum"], by_hand, rtol=1e-5)
    # The policy: lambda = the window's summed clipped excess / its tokens, then the update.
    policy = DoReMi(["a", "b", "c"], None, eta=0.5, smoothing=0.1, update_every=2,
                    excess="token")
    assert policy.needs_reference
    tokens = np.array([b["loss_mask"][b["domain_id"] == d].sum() for d in range(3)])
    sums = DomainSums(loss=np.zeros(3), tokens=tokens, rows=np.ones(3), weight=np.ones(3),
                      excess=by_hand)
    policy.observe_train(1, sums)
    policy.observe_train(2, sums)
    w = policy.update(2, {}, {})
    lam = np.where(tokens > 0, by_hand / np.maximum(tokens, 1), 0.0)  # unseen: keeps 0
    a = np.exp(0.5 * lam)
    np.testing.assert_allclose(w, 0.9 * a / a.sum() + 0.1 / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="signal=train"):
        DoReMi(["a"], None, signal="eval", excess="token")


class _Ctx:
    """The parts of HostContext a selector reads, with reference losses given by a table."""
    step, process_count, process_index, train_flops_per_token = 0, 1, 0, 1.0
    domain_names = ("d0", "d1")

    def __init__(self, losses):
        self.losses = losses  # name -> function of rows -> [R]
        self.to_global = lambda rows: rows

    def reference_row_loss(self, name, rows):
        return self.losses[name](rows)


class _Pool:
    """A source of rows whose first input token is the row's index."""
    domain_names = ("d0", "d1")

    def __init__(self, batch):
        self.batch, self.n = batch, 0

    def __next__(self):
        i = np.arange(self.n, self.n + self.batch)
        self.n += self.batch
        inputs = np.stack([i, np.zeros_like(i)], 1).astype(np.int32)
        return {"inputs": inputs, "targets": inputs, "segment_ids": np.ones_like(inputs),
                "positions": np.zeros_like(inputs), "loss_mask": np.ones(inputs.shape, np.float32),
                "domain_id": (i % 2).astype(np.int32)}

    def get_state(self):
        return {"n": self.n}

    def set_state(self, s):
        self.n = s["n"]

    def set_weights(self, w):
        pass


def test_perplexity_keeps_the_lowest_reference_loss_rows():
    sel = RefSelect("perplexity", 0.25, 0, total_steps=3, batch_size=4, score_batch=5)
    src = sel.wrap(_Pool(4))
    loss = lambda rows: np.abs(rows["inputs"][:, 0] - 20.0)  # lowest near row 20
    metrics = sel.act(_Ctx({"workdir": loss}))
    served = np.concatenate([next(src)["inputs"][:, 0] for _ in range(3)])
    assert sorted(served) == list(range(14, 26)) and len(set(served)) == 12  # 12 best of 48
    assert metrics["ref_select/workdir/kept_loss"] < metrics["ref_select/workdir/pool_loss"]
    assert sel.acts_at(0) and not sel.acts_at(1) and not sel.acts_at(3)


def test_cross_entropy_difference_keeps_the_largest_general_minus_target():
    sel = RefSelect("xent_diff", 0.5, 2, total_steps=4, batch_size=2, score_batch=3)
    src = sel.wrap(_Pool(2))
    ctx = _Ctx({"general": lambda r: np.zeros(len(r["inputs"])),
                "target": lambda r: (r["inputs"][:, 0] % 2).astype(float)})  # even rows win
    sel.act(ctx)
    served = np.concatenate([next(src)["inputs"][:, 0] for _ in range(2)])
    assert sorted(served) == [0, 2, 4, 6]  # the 4 even rows of an 8-row pool, pool order
    assert sel.acts_at(2) and not sel.acts_at(4)
    state = sel.get_state()
    again = RefSelect("xent_diff", 0.5, 2, total_steps=4, batch_size=2, score_batch=3)
    src2 = again.wrap(_Pool(2))
    again.set_state(state)
    assert again.stage == 1 and list(src2.selected) == list(src.selected)


def test_reference_selectors_run_end_to_end(trained_reference, tmp_path):
    cfg = tiny_config(steps=4, checkpoint_every=4)
    cfg.reweight.selector = "ref_select"
    cfg.reweight.ref_select.update(mode="xent_diff", selection_ratio=0.5, stage_steps=2,
                                   score_batch=8)
    cfg.reference.update(general=trained_reference, target=trained_reference)
    experiment.run(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    stages = [m for m in read_metrics(str(tmp_path / "run")) if "ref_select/stage" in m]
    assert [m["step"] for m in stages] == [0, 2]
    assert all(m["ref_select/kept_score"] == 0.0 for m in stages)  # the same model twice


def get_config():
    """RHO-1 and per-token DoReMi (its resampling form) against a reference
    (--config.reference.workdir=...)."""
    cfg = tiny_config(steps=30, checkpoint_every=7, log_every=1)
    cfg.reweight.update(instance="rho1", mixture="doremi")
    cfg.reweight.doremi.update(sampling="alpha", excess="token", update_every=3)
    return cfg


def test_resume_after_kill_9_is_bit_exact_with_a_reference(trained_reference, tmp_path):
    flags = (f"--config={os.path.abspath(__file__)}",
             f"--config.reference.workdir={trained_reference}")
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    run_main(straight, *flags)
    proc = start_main(killed, *flags)
    wait_for_step(proc, killed, 9)
    while not os.path.isdir(os.path.join(killed, "checkpoints", "7")):  # resume from one
        assert proc.poll() is None, "the run ended before its checkpoint at step 7 committed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # past a checkpoint, mid DoReMi window
    proc.wait()
    assert max(m["step"] for m in read_metrics(killed)) < 30
    run_main(killed, *flags)
    assert untimed(straight) == untimed(killed)
    metrics = read_metrics(straight)
    assert len([m for m in metrics if "weighter/kept_fraction" in m]) == 30
    assert len([m for m in metrics if "mixture/synthetic_0/weight" in m]) == 11  # 0, 3, ..., 30
    assert reference_lib.recorded(killed)["workdir"]["step"] == 6


def test_a_resume_that_finds_another_reference_says_so(trained_reference, tmp_path):
    cfg = tiny_config()
    spec = _spec(cfg, trained_reference)
    (tmp_path / reference_lib.RECORD_FILE).write_text(
        f'{{"workdir": {{"workdir": "{os.path.abspath(trained_reference)}", "step": 6}}}}')
    assert experiment.reference_changes(str(tmp_path), {"workdir": spec}) == []
    (tmp_path / reference_lib.RECORD_FILE).write_text(
        f'{{"workdir": {{"workdir": "{os.path.abspath(trained_reference)}", "step": 3}}}}')
    (change,) = experiment.reference_changes(str(tmp_path), {"workdir": spec})
    assert "trained against" in change and "at step 3" in change and "now step 6" in change
