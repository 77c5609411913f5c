"""A bad config fails at start, naming the field."""

import pytest

from helpers import tiny_config
from lm.validation import validate_config


def _check(cfg, num_devices=8):
    validate_config(cfg, num_devices)


def test_the_tiny_config_is_valid():
    cfg = tiny_config()
    _check(cfg)


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c.train.update(batch_size=12), "config.train.batch_size"),
    (lambda c: c.train.update(batch_size=16, microbatches=4), "data-parallel size"),
    (lambda c: c.train.update(lr=0.0), "config.train.lr"),
    (lambda c: c.train.update(lr=-1.0), "config.train.lr"),
    (lambda c: c.mesh.update(rules=(("batch", "dp"),)), "config.mesh.rules"),
    (lambda c: c.data.update(seq_len=64), "config.data.seq_len"),
    (lambda c: c.model.update(num_heads=3), "config.model.d_model"),
    (lambda c: c.mesh.update(shape=(3, 1, 1)), "config.mesh.shape"),
    (lambda c: c.mesh.update(shape=(-1, -1, 1)), "config.mesh.shape"),
    (lambda c: c.train.update(schedule="linear"), "config.train.schedule"),
    (lambda c: c.model.update(remat="some"), "config.model.remat"),
])
def test_bad_config_names_the_field(mutate, field):
    cfg = tiny_config()
    mutate(cfg)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        _check(cfg)


def test_indivisible_sharding_names_the_parameter():
    import jax
    from lm import train as train_lib
    from reweight.interface import Uniform
    cfg = tiny_config()
    cfg.model.num_heads = 2
    cfg.mesh.shape = (2, 1, 4)
    with pytest.raises(ValueError, match=r"\['attn'\].*can't be laid out"):
        train_lib.build_runtime(cfg, Uniform(), 3, jax.devices()[:8])


def test_unknown_instance_weighter_is_rejected():
    from helpers import weighter_of
    cfg = tiny_config()
    cfg.reweight.instance = "nope"
    with pytest.raises(ValueError, match="config.reweight.instance"):
        weighter_of(cfg)


def test_a_method_field_set_for_a_method_not_chosen_is_warned_by_name():
    from runs import experiment
    cfg = tiny_config()
    assert experiment.warnings_of(cfg) == []
    cfg.reweight.loss_based.r = 0.4
    assert experiment.warnings_of(cfg) == [
        "config.reweight.loss_based.r is set, but config.reweight.instance='uniform' (not "
        "'loss_based') does not read it"]
