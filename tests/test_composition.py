"""Methods of three kinds in one run (issue 34's compositions): a stage selector (MATES), an
in-step weighter with a frozen reference (RHO-1) and a mixture schedule (end-of-training
upsampling) each do their part, and the run resumes bit-exactly."""

import jax
import numpy as np
import pytest

from helpers import tiny_config, train_reference, untimed
from lm.metrics import read_metrics
from runs import experiment


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train_reference(str(tmp_path_factory.mktemp("reference")))


def _config(reference):
    cfg = tiny_config(steps=12, checkpoint_every=100)
    cfg.reweight.selector = "mates"
    cfg.reweight.mates.update(stage_steps=4, reference="validation",
                              reference_domain="synthetic_0", reference_rows=8,
                              probe_size=16, probe_chunk=8, fit_epochs=3, fit_batch=8,
                              model_dim=16, model_heads=2, holdout=0.25)
    cfg.reweight.instance = "rho1"
    cfg.reweight.rho1.keep = 0.5
    cfg.reference.workdir = reference
    cfg.reweight.mixture = "upsample"
    cfg.reweight.upsample.update(base="uniform", domains="synthetic_0", factor=10.0,
                                 last_fraction=0.5)  # from step 6 on
    return cfg


def _train(cfg, workdir):
    experiment.build(cfg).train(workdir, devices=jax.devices()[:1])


def test_a_selector_a_reference_weighter_and_a_mixture_compose_and_resume_exactly(
        tmp_path, reference):
    cfg = _config(reference)
    _train(cfg, str(tmp_path / "a"))
    metrics = read_metrics(str(tmp_path / "a"))
    train = [m for m in metrics if "loss" in m and "weighter/kept_fraction" in m]
    # RHO-1 ran in every step, against its reference.
    assert len(train) == 12 and all(
        0.45 < m["weighter/kept_fraction"] <= 0.5 and "reference_token_loss" in m for m in train)
    # MATES chose a stage at steps 4 and 8; its second pool was drawn from the upsampled
    # mixture (synthetic_0 at 10/12 from step 6), its first from the uniform one.
    stages = {m["step"]: m for m in metrics if "mates/stage" in m}
    assert sorted(stages) == [4, 8]
    share = {s: stages[s]["mates/pool/synthetic_0/share"] for s in stages}
    assert 0.2 < share[4] < 0.5 and share[8] > 0.7
    weights = [m for m in metrics if "mixture/synthetic_0/weight" in m]
    assert weights[-1]["mixture/synthetic_0/weight"] == pytest.approx(10 / 12)

    for run_steps in (6, 0):  # stopped inside the second stage, after the switch
        cfg.train.run_steps = run_steps
        _train(cfg, str(tmp_path / "b"))
    strip = lambda ms: [{k: v for k, v in m.items()
                         if not k.startswith("mates/seconds") and k not in (
                             "mates/stage_train_seconds", "mates/overhead_seconds_fraction")}
                        for m in ms]
    assert strip(untimed(tmp_path / "a")) == strip(untimed(tmp_path / "b"))
    np.testing.assert_array_equal(*[
        [m["loss"] for m in read_metrics(str(tmp_path / d)) if "loss" in m] for d in "ab"])
