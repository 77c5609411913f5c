"""A new method is one file and one config: this file defines a toy method of each kind (an
in-step token weighter, a host-side mixture policy, a stage selector) and the config that runs
them, with nothing under lm/ knowing them; the run resumes bit-exactly after kill -9. And the
import rules hold: lm/ knows only the interface module of reweight/, reweight/ never imports lm/,
data/ knows neither, and no module imports itself back.

  python main.py --config=tests/test_method_interface.py --workdir=DIR   # (PYTHONPATH=tests)
"""

import ast
import glob
import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from helpers import ROOT, start_main, tiny_config, untimed, wait_for_step
from lm.metrics import read_metrics
from reweight.interface import HostMethod, MixturePolicy
from reweight.staged import StagedSource


class TokenDropout:
    """In-step, per token: trains on a random half of the loss tokens, drawn from the step's
    RNG; its state counts the tokens it kept."""
    needs_losses = False

    def init(self):
        return {"kept": jnp.zeros((), jnp.float32)}

    def __call__(self, state, inputs):
        keep = jax.random.bernoulli(inputs.rng, 0.5, inputs.loss_mask_BxL.shape)
        kept = keep * inputs.loss_mask_BxL
        metrics = {"kept_fraction": kept.sum() / inputs.loss_mask_BxL.sum()}
        return kept / jnp.maximum(kept.sum(), 1.0), {"kept": state["kept"] + kept.sum()}, metrics


def token_dropout(cfg, env):
    return TokenDropout()


class FavourHighLoss(MixturePolicy):
    """Host-side mixture: every 3 steps, weights proportional to exp(training loss)."""
    update_every = 3

    def __init__(self, names):
        self.names, self.updates = list(names), 0

    def update(self, step, train_loss, eval_loss):
        self.updates += 1
        losses = np.array([train_loss.get(n, 0.0) for n in self.names])
        w = np.exp(losses - losses.max())
        return w / w.sum()

    def get_state(self):
        return {"updates": self.updates}

    def set_state(self, state):
        self.updates = state["updates"]


def favour_high_loss(cfg, env):
    return FavourHighLoss(env.domain_names)


class HardestRows(HostMethod):
    """A stage selector: every 4 steps, draws 16 batches and trains on the quarter of their
    rows with the highest loss under the live params, each once."""
    name = "hardest_rows"

    def __init__(self, total_steps):
        self.total_steps, self.stage = total_steps, 0

    def wrap(self, source):
        self.source = StagedSource(source)
        return self.source

    def acts_at(self, step):
        return 0 < step < self.total_steps and step % 4 == 0

    def act(self, ctx):
        pool = self.source.draw_pool(16)
        losses = np.asarray(ctx.example_loss(ctx.params, ctx.to_global(pool)))
        mine = losses.reshape(ctx.process_count, -1)[ctx.process_index]
        hardest = np.sort(np.argsort(-mine)[:len(mine) // 4])
        self.source.serve(hardest)
        self.stage += 1
        return {"hardest/stage": self.stage, "hardest/pool_loss": mine.mean(),
                "hardest/kept_loss": mine[hardest].mean()}

    def get_state(self):
        return {"stage": self.stage, "selection": self.source.selection_state()}

    def set_state(self, state):
        self.stage = state["stage"]
        self.source.restore_selection(state["selection"])


def hardest_rows(cfg, env):
    return HardestRows(cfg.train.steps)


def get_config():
    cfg = tiny_config(steps=60, checkpoint_every=7, eval_every=20, log_every=1)
    cfg.reweight.update(instance="test_method_interface:token_dropout",
                        mixture="test_method_interface:favour_high_loss",
                        selector="test_method_interface:hardest_rows")
    return cfg


FLAGS = (f"--config={os.path.abspath(__file__)}",)


def _kill_at(workdir, step):
    proc = start_main(workdir, *FLAGS)
    wait_for_step(proc, workdir, step)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _finish(workdir):
    proc = start_main(workdir, *FLAGS)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]


def test_toy_methods_of_each_kind_run_and_resume_bit_exactly_after_kill_9(tmp_path):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    _finish(straight)
    _kill_at(killed, 23)  # mid-stage, mid mixture window, 2 steps past a checkpoint
    assert max(m["step"] for m in read_metrics(killed)) < 60
    _finish(killed)
    assert untimed(straight) == untimed(killed)
    metrics = read_metrics(straight)
    kept = [m["weighter/kept_fraction"] for m in metrics if "weighter/kept_fraction" in m]
    assert len(kept) == 60 and 0.4 < np.mean(kept) < 0.6 and len(set(kept)) > 1
    mixture_steps = [m["step"] for m in metrics if "mixture/synthetic_0/weight" in m]
    assert mixture_steps == list(range(3, 61, 3))  # no initial weights: the data config's
    stages = [m for m in metrics if "hardest/stage" in m]
    assert [m["step"] for m in stages] == list(range(4, 60, 4))
    assert all(m["hardest/kept_loss"] > m["hardest/pool_loss"] for m in stages)
    latest = os.path.join(killed, "checkpoints", "56")
    assert {"host_mixture", "host_hardest_rows", "data", "params", "state"} <= set(
        os.listdir(latest))
    with open(os.path.join(killed, "eval.json")) as a, \
            open(os.path.join(straight, "eval.json")) as b:
        assert json.load(a) == json.load(b)


def _imports(path: str) -> set[str]:
    """The repo modules a file imports, at any depth of the file (lazy imports included)."""
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _module_graph() -> dict[str, set[str]]:
    files = [p for p in glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(
        os.path.join(ROOT, "*", "*.py")) if os.path.basename(os.path.dirname(p)) in
        ("lm", "data", "reweight", "runs", os.path.basename(ROOT))]
    modules = {os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__"): p
               for p in files}
    return {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_imports_point_one_way_and_close_no_circle():
    graph = _module_graph()
    package = lambda m: m.split(".")[0] if m.split(".")[0] in ("lm", "data", "reweight") else ""
    for module, deps in graph.items():
        if package(module) == "lm":
            assert all(package(d) == "lm" or d in ("reweight", "reweight.interface")
                       for d in deps), (module, deps)
        if package(module) == "reweight":
            assert all(package(d) == "reweight" for d in deps), (module, deps)
        if package(module) == "data":
            assert all(package(d) == "data" for d in deps), (module, deps)
    seen, done = [], set()

    def visit(m):
        assert m not in seen, f"import circle: {' -> '.join(seen[seen.index(m):] + [m])}"
        if m in done:
            return
        seen.append(m)
        for d in graph[m]:
            visit(d)
        seen.pop()
        done.add(m)

    for m in graph:
        visit(m)


def test_importing_the_train_step_and_loop_loads_no_method_and_no_data_module():
    code = ("import sys, lm.train, lm.loop; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('reweight', 'data', 'runs')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True)
    assert out.stdout.split("\n")[-2] == "['reweight', 'reweight.interface']", out.stdout


def test_main_is_the_only_script_at_the_root():
    """Orchestration lives in runs/; the root shows the entry point alone."""
    assert [os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.py"))] == ["main.py"]
