"""Schedules switch their mixture at the right step; upsampling touches only its domains;
natural weights follow token counts; weights files round-trip."""

import os

import jax
import numpy as np
import pytest

from runs import experiment
from data.mixing import parse_weights
from helpers import Recording, host_methods_of, synthetic, tiny_config
from lm import loop
from reweight import mixture, schedule
from reweight.interface import Uniform


def _policy(cfg):
    """The mixture policy the config names, over the config's domains."""
    (method,) = host_methods_of(cfg)
    return method.policy


def test_schedule_switches_at_the_fraction_of_training(tmp_path):
    cfg = tiny_config(steps=8)
    cfg.reweight.mixture = "schedule"
    cfg.reweight.schedule.phases = "0=synthetic_0:1; 0.5=synthetic_1:1,synthetic_2:0"
    it = Recording(synthetic(cfg))
    (method,) = host_methods_of(cfg)
    assert method.policy.starts == [0, 4] and method.policy.update_every == 4
    loop.train(cfg, str(tmp_path), source=it, eval_sets=it.it.eval_batches(4),
               weighter=Uniform(), methods=[method], devices=jax.devices()[:1])
    assert all((d == 0).all() for d in it.domains[:4])  # steps 1-4: the first phase
    assert all((d == 1).all() for d in it.domains[4:])  # from step 5 on: the second
    assert (tmp_path / "mixture_weights.png").stat().st_size > 1000


def test_phases_and_update_steps():
    cfg = tiny_config(steps=1000)
    cfg.data.update(source="seqio", domains="a=/a/*.jsonl,b=/b/*.jsonl,c=/c/*.jsonl")
    env = experiment.Env(cfg)
    s = schedule.parse_phases("0=uniform;0.6=a:1;0.9=0.2,0.3,0.5", 1000, env)
    assert s.starts == [0, 600, 900] and s.update_every == 300
    np.testing.assert_allclose(s.initial_weights(), [1 / 3] * 3)
    assert s.update(300, {}, {}) is None
    np.testing.assert_allclose(s.update(600, {}, {}), [1, 0, 0])
    np.testing.assert_allclose(s.update(900, {}, {}), [0.2, 0.3, 0.5])
    for bad in ("0=uniform;1.5=a:1", "0.5=a:1", "0=uniform;0.3", "0=uniform;0.5=z:1"):
        with pytest.raises(ValueError):
            schedule.parse_phases(bad, 1000, env)


def test_upsampling_changes_only_the_configured_domains():
    cfg = tiny_config(steps=100)
    cfg.data.num_domains = 4
    cfg.reweight.mixture = "upsample"
    cfg.reweight.upsample.update(base="0.1,0.2,0.3,0.4", domains="synthetic_1,synthetic_3",
                                 factor=3.0, last_fraction=0.15)
    policy = _policy(cfg)
    assert policy.starts == [0, 85]
    base, after = policy.initial_weights(), policy.update(85, {}, {})
    np.testing.assert_allclose(base, [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(after.sum(), 1.0)
    ratio = after / base
    assert ratio[0] == pytest.approx(ratio[2])  # untouched domains keep their proportions
    assert ratio[1] == pytest.approx(3 * ratio[0]) and ratio[3] == pytest.approx(3 * ratio[0])
    cfg.reweight.upsample.domains = "nope"
    with pytest.raises(ValueError, match="upsample.domains"):
        _policy(cfg)
    cfg.reweight.upsample.update(domains="synthetic_1", last_fraction=1.0)  # throughout
    throughout = _policy(cfg)
    assert throughout.starts == [0] and throughout.initial_weights()[1] > base[1]
    cfg.reweight.upsample.update(domains="synthetic_1", last_fraction=0.0)
    with pytest.raises(ValueError, match="last_fraction"):
        _policy(cfg)


@pytest.mark.skipif(not os.path.isdir("data_cache/corpus/books"), reason="corpus not built")
def test_natural_weights_follow_token_counts():
    from configs import tiny
    cfg = tiny.get_config()
    cfg.reweight.mixture = "natural"
    names = ["books", "reference", "code", "dialogue", "technical", "math"]
    w = _policy(cfg).initial_weights()
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    assert names[int(w.argmax())] == "reference"  # the largest domain by far


def test_weights_file_round_trips(tmp_path):
    names = ["a", "b", "c"]
    path = str(tmp_path / "mixture.txt")
    text = mixture.write_mixture(path, names, np.array([0.5, 0.25, 0.25]))
    assert text == "a:0.5,b:0.25,c:0.25"
    np.testing.assert_allclose(parse_weights(f"file:{path}", names), [0.5, 0.25, 0.25])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_weights(f"file:{tmp_path}/none.txt", names)
