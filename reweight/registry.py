"""Every method by name, and the config fields that choose them. `lm/` never imports this.

Three config fields choose a run's methods; each takes a name below or, for a method kept
anywhere else, its import path "package.module:factory":
  config.reweight.instance  the in-step weighter (a `Weighter`);
  config.reweight.mixture   a mixture policy (a `MixturePolicy`, run by `MixtureMethod`);
  config.reweight.selector  a stage selector (a `HostMethod`).
A factory is called as factory(config, env) with the whole experiment config and a
`MethodEnv`. A mixture factory may also return a `HostMethod` of its own, used as it is.
"""

import importlib
from typing import Callable

import ml_collections

from reweight.interface import HostMethod, MethodEnv, Uniform, Weighter
from reweight.mixture import MixtureMethod

WEIGHTERS = {
    "uniform": lambda cfg, env: Uniform(),
    "loss_based": "reweight.loss_based:from_config",  # Sow et al. 2025
    "rho1": "reweight.rho1:from_config",  # Lin et al. 2024 (needs config.reference.workdir)
}
MIXTURES = {
    "fixed": None,  # config.data.weights throughout: no host method
    "natural": "reweight.schedule:natural",
    "schedule": "reweight.schedule:from_config",
    "upsample": "reweight.schedule:end_upsampling",  # Blakeney et al. 2024
    "doremi": "reweight.doremi:from_config",  # Xie et al. 2023
    "odm": "reweight.odm:from_config",  # Albalak et al. 2023
    "skill_it": "reweight.skill_it:from_config",  # Chen et al. 2023
}
SELECTORS = {
    "none": None,  # train on the mixture as drawn
    "mates": "reweight.mates:from_config",  # Yu et al. 2024
    "ref_select": "reweight.ref_select:from_config",  # perplexity / Moore & Lewis 2010
}
# The config.reweight fields only one method reads: set while another is chosen, they do
# nothing (the run warns).
FIELDS = {
    ("instance", "loss_based"): ("strategy", "r", "d", "warmup_steps", "r_schedule", "r_start",
                                 "r_schedule_steps"),
    ("mixture", "schedule"): ("schedule",),
    ("mixture", "upsample"): ("upsample",),
    ("mixture", "doremi"): ("doremi",),
    ("mixture", "odm"): ("odm",),
    ("mixture", "skill_it"): ("skill_it",),
    ("selector", "mates"): ("mates",),
    ("instance", "rho1"): ("rho1",),
    ("selector", "ref_select"): ("ref_select",),
}


def _factory(field: str, name: str, table: dict) -> Callable | None:
    if name in table:
        target = table[name]
    elif ":" in name:
        target = name
    else:
        raise ValueError(f"config.reweight.{field}={name!r} is not a known method; choose one "
                         f"of {sorted(table)} or give a factory's import path 'module:name'")
    if not isinstance(target, str):
        return target
    module_name, attr = target.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"config.reweight.{field}={name!r}: cannot import {target!r} ({e})") \
            from e
    return obj


def make_weighter(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Weighter:
    """The in-step weighter named by config.reweight.instance."""
    return _factory("instance", cfg.reweight.instance, WEIGHTERS)(cfg, env)


def make_host_methods(cfg: ml_collections.ConfigDict, env: MethodEnv) -> list[HostMethod]:
    """The host methods of config.reweight.mixture and config.reweight.selector, in the order
    they act at a shared step (the mixture first)."""
    methods = []
    for field, table in (("mixture", MIXTURES), ("selector", SELECTORS)):
        factory = _factory(field, cfg.reweight[field], table)
        if factory is None:
            continue
        method = factory(cfg, env)
        methods.append(method if isinstance(method, HostMethod)
                       else MixtureMethod(method, env.domain_names))
    names = [m.name for m in methods]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"host methods need distinct non-empty names (their checkpoint items); "
                         f"got {names} from config.reweight.mixture and .selector")
    return methods
