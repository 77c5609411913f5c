"""Every experiment config loads, names its command, and every comparison's arms and
prerequisites resolve to configs whose overrides name real fields: a typo fails here, not an
hour into a comparison."""

import glob
import importlib
import os

import pytest

import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                 if not p.endswith("__init__.py"))
COMPARES = sorted(os.path.relpath(p, ROOT)
                  for p in glob.glob(os.path.join(ROOT, "configs", "compare", "*.py"))
                  if not p.endswith(("__init__.py", "base.py")))


@pytest.mark.parametrize("path", CONFIGS + COMPARES)
def test_config_loads_and_names_its_command(path):
    module = importlib.import_module(path[:-3].replace(os.sep, "."))
    module.get_config()
    assert "python " in (module.__doc__ or ""), f"{path}: its docstring gives no command"


@pytest.mark.parametrize("path", COMPARES)
def test_comparison_arms_and_prerequisites_resolve(path):
    cfg = compare.load_config_file(path)
    compare.check_config(cfg)
    for arm in cfg.compare.arms:
        run_cfg = compare.run_config(cfg, arm, 0, "workdir")
        assert run_cfg.seed == 0
    for name in cfg.compare.prerequisites:
        compare.prerequisite_config(cfg, name, "workdir")
