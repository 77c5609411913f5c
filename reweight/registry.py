"""Every method by name, and the config fields that choose them. `lm/` never imports this.

Three config fields choose a run's methods; each takes a name below or, for a method kept
anywhere else, its import path "package.module:factory":
  config.reweight.instance  the in-step weighter (a `Weighter`);
  config.reweight.mixture   a mixture policy (a `MixturePolicy`, run by `MixtureMethod`);
  config.reweight.selector  a stage selector (a `HostMethod`).
A factory is called as factory(config, env) with the whole experiment config and a
`MethodEnv`. A mixture factory may also return a `HostMethod` of its own, used as it is.

A table entry without ":" is a method module: `from_config(config, env)` builds the method,
`defaults()` declares its fields (config.reweight.<name>, each with its default and a comment,
which configs/base.py collects) and `problems(config)` lists every bad value among them
without building anything (the builder reports them all at once, with the core config's).
A mixture module may also define `weighter(config, env)`: its in-step part, a `Weighter` (or
None where the config uses none), e.g. DoReMi's paper form, which weighs each domain's loss
inside the step from that step's own losses. The run then uses it in place of
config.reweight.instance's weighter, which must be uniform.
"""

import importlib
from typing import Callable, Sequence

import ml_collections

from reweight.interface import HostMethod, MethodEnv, Uniform, Weighter
from reweight.mixture import MixtureMethod

WEIGHTERS = {
    "uniform": lambda cfg, env: Uniform(),
    "loss_based": "reweight.loss_based",  # Sow et al. 2025
    "rho1": "reweight.rho1",  # Lin et al. 2024 (needs config.reference.workdir)
}
MIXTURES = {
    "fixed": None,  # config.data.weights throughout: no host method
    "natural": "reweight.schedule:natural",
    "schedule": "reweight.schedule",
    "upsample": "reweight.upsample",  # Blakeney et al. 2024
    "doremi": "reweight.doremi",  # Xie et al. 2023
    "odm": "reweight.odm",  # Albalak et al. 2023
    "skill_it": "reweight.skill_it",  # Chen et al. 2023
}
SELECTORS = {
    "none": None,  # train on the mixture as drawn
    "mates": "reweight.mates",  # Yu et al. 2024
    "ref_select": "reweight.ref_select",  # perplexity / Moore & Lewis 2010
}
KINDS = {"instance": WEIGHTERS, "mixture": MIXTURES, "selector": SELECTORS}
# (kind, name) -> the module of each method with fields of its own, config.reweight.<name>:
# set while another method of its kind is chosen, they do nothing (the run warns).
FIELDS = {(kind, name): target for kind, table in KINDS.items()
          for name, target in table.items() if isinstance(target, str) and ":" not in target}


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.<name> of every method in FIELDS, as its module declares them."""
    c = ml_collections.ConfigDict()
    for (_, name), module in FIELDS.items():
        c[name] = importlib.import_module(module).defaults()
    return c


def problems(cfg: ml_collections.ConfigDict, kinds: Sequence[str] = tuple(KINDS)) -> list[str]:
    """Every bad value of the fields of the methods chosen for `kinds` (config.reweight.<kind>),
    one message each, building nothing. An unknown name is the factory's error, not one here."""
    out = []
    for kind in kinds:
        module = FIELDS.get((kind, cfg.reweight[kind]))
        if module is not None:
            out += importlib.import_module(module).problems(cfg)
    return out


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
    module_name, attr = target.split(":", 1) if ":" in target else (target, "from_config")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"config.reweight.{field}={name!r}: cannot import {target!r} ({e})") \
            from e
    return obj


def make_weighter(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Weighter:
    """The in-step weighter: config.reweight.instance's, or the in-step part of the mixture
    method, where its module has one for this config (see the module docstring)."""
    weighter = _factory("instance", cfg.reweight.instance, WEIGHTERS)(cfg, env)
    own = mixture_weighter(cfg, env)
    if own is None:
        return weighter
    if cfg.reweight.instance != "uniform":
        raise ValueError(f"config.reweight.mixture={cfg.reweight.mixture!r} weighs the loss in "
                         "the step itself, in place of an instance weighter, and config.reweight."
                         f"instance={cfg.reweight.instance!r}: set reweight.instance=uniform")
    return own


def mixture_weighter(cfg: ml_collections.ConfigDict, env: MethodEnv) -> Weighter | None:
    """The mixture method's in-step part, if its module defines `weighter(config, env)` and
    returns one; None if it has bad fields (its host part reports them)."""
    module = FIELDS.get(("mixture", cfg.reweight.mixture))
    if module is None:
        return None
    module = importlib.import_module(module)
    if not hasattr(module, "weighter") or module.problems(cfg):
        return None
    return module.weighter(cfg, env)


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
