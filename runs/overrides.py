"""Config files and the overrides mini-language that comparisons and sweeps apply to them.

A comparison arm or prerequisite names an experiment config file and "field=value;..."
overrides; a sweep's transfer check names overrides of the target scale. Both read through
here, so a field is set one way everywhere.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

from lm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """get_config() of an experiment config file (relative to the cwd or the repository)."""
    full = path if os.path.exists(path) else os.path.join(ROOT, path)
    if not os.path.isfile(full):
        raise ValueError(f"config file {path!r} does not exist (looked in {os.getcwd()} and "
                         f"{ROOT})")
    spec = importlib.util.spec_from_file_location(
        "compare_arm_" + os.path.basename(full)[:-3], full)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def parse_overrides(text: str) -> list[tuple[str, str]]:
    """"field=value;field=value" -> [(field, value)]."""
    out = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        field, sep, value = part.partition("=")
        if not sep or not field.strip():
            raise ValueError(f"override {part!r} is not FIELD=VALUE (write e.g. "
                             "'reweight.instance=loss_based;reweight.loss_based.r=0.4')")
        out.append((field.strip(), value.strip()))
    return out


def apply_overrides(cfg: ml_collections.ConfigDict, text: str, where: str) -> None:
    """Sets each dotted field, the value read as the field's type (a string field takes the
    text as it is; any other a Python literal)."""
    for field, value in parse_overrides(text):
        *parents, leaf = field.split(".")
        node = cfg
        try:
            for p in parents:
                node = node[p]
            current = node[leaf]
        except (KeyError, AttributeError):
            renamed = (f" (renamed to {workdir_lib.RENAMED[field]})"
                       if field in workdir_lib.RENAMED else "")
            raise ValueError(f"{where}: override {field}={value!r} names no config "
                             f"field{renamed}") from None
        if isinstance(current, str):
            parsed = value
        else:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise ValueError(f"{where}: override {field}={value!r}: the field holds "
                                 f"{type(current).__name__}, and {value!r} is not one") from None
        try:
            node[leaf] = parsed
        except TypeError as e:
            raise ValueError(f"{where}: override {field}={value!r}: {e}") from None


def kind_of(cfg: ml_collections.ConfigDict) -> str:
    """What a config file is for: "compare" (a comparison: a compare section), or, for an
    experiment config, "sweep" / "skill_graph" when it sets that section away from the
    defaults (configs/sweep_regmix.py), else "experiment" (train, eval, sample)."""
    from configs import base
    if "compare" in cfg:
        return "compare"
    default = base.get_config()
    for section in ("sweep", "skill_graph"):
        if section in cfg and cfg[section].to_dict() != default[section].to_dict():
            return section
    return "experiment"


def check_mode(cfg: ml_collections.ConfigDict, mode: str | None, path: str) -> str:
    """The main.py mode to run config file `path` in: `mode` when given and it fits the
    config's kind, else the kind's own mode; a mismatch is one line naming the flag to use."""
    kind = kind_of(cfg)
    if kind == "compare" and mode not in (None, "compare"):
        raise ValueError(f"{path} is a comparison config (it has a compare section): run it "
                         f"with --mode=compare, not --mode={mode}")
    if kind != "compare" and mode == "compare":
        raise ValueError(f"{path} is an experiment config (no compare section): --mode=compare "
                         "takes a comparison config, e.g. configs/compare/demo.py")
    if mode is None and kind in ("sweep", "skill_graph"):
        raise ValueError(f"{path} sets config.{kind}.*: add --mode={kind} to run it as a "
                         f"{kind.replace('_', ' ')}, or --mode=train to train one run of it")
    return mode or ("compare" if kind == "compare" else "train")
