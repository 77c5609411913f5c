"""Downstream tasks through lm-evaluation-harness: run `config.eval.harness` on a model, write
lm-eval's results, and a continuous score beside each multiple-choice accuracy.

Near chance, accuracy cannot rank small models; the correct choice's log-likelihood can
(OLMES, Gu et al. 2024; DataDecide, Magnusson et al. 2025). So every multiple-choice task also
reports, from lm-eval's own per-document log-likelihoods:
  correct_logprob_per_char  the correct choice's log-likelihood over its length in characters
                            (the quantity acc_norm takes the argmax of), mean over documents;
  correct_prob              the probability the model puts on the correct choice among the
                            choices, softmax of their log-likelihoods (lm-eval's Brier score
                            uses the same), mean over documents.
Each with its standard error over documents.

Outputs: `harness.json` (lm-eval's results without the per-document samples, with the
continuous scores under "continuous"), `harness_samples/TASK.jsonl` (the samples), and scalars
`harness/TASK/METRIC` (and `..._stderr`) for metrics.jsonl and TensorBoard.
"""

from __future__ import annotations

import json
import logging
import math
import os

import jax
import ml_collections
import numpy as np

from lm import hooks as hooks_lib
from lm import workdir as workdir_lib

RESULTS_FILE = "harness.json"
SAMPLES_DIR = "harness_samples"


def task_specs(tasks: str) -> list[str]:
    return [t.strip() for t in tasks.split(",") if t.strip()]


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad config.eval.harness field, with the fix."""
    h, out = cfg.eval.harness, []
    specs = task_specs(h.tasks)
    if not specs:
        return out
    if cfg.data.source != "seqio":
        out.append(f"config.eval.harness.tasks needs text, so config.data.source=seqio (got "
                   f"{cfg.data.source!r})")
    for spec in specs:
        if spec.endswith((".yaml", ".yml")) and not os.path.isfile(spec):
            out.append(f"config.eval.harness.tasks: {spec!r} is not a file (a task YAML path, "
                       "or an lm-eval task name)")
    names = [s for s in specs if not os.path.isfile(s) and not s.endswith((".yaml", ".yml"))]
    if names:  # lm-eval's index of its built-in tasks (a few seconds)
        from lm_eval.tasks import TaskManager
        known = set(TaskManager().all_tasks)
        if unknown := [n for n in names if n not in known]:
            out.append(f"config.eval.harness.tasks: lm-eval has no task {', '.join(unknown)} "
                       "(`.venv/bin/lm-eval ls tasks` lists them; a local task is a YAML path)")
    if h.batch_size < 1:
        out.append(f"config.eval.harness.batch_size={h.batch_size} must be >= 1")
    if h.limit < 0 or (1 < h.limit and h.limit != int(h.limit)):
        out.append(f"config.eval.harness.limit={h.limit} must be 0 (all), a whole number of "
                   "documents, or a fraction in (0, 1)")
    length = h.max_length or cfg.data.seq_len
    if not 2 <= length <= cfg.model.max_len:
        out.append(f"config.eval.harness.max_length={h.max_length} (0 = data.seq_len) gives "
                   f"{length} tokens: it must be in [2, model.max_len={cfg.model.max_len}]")
    if h.every < 0:
        out.append(f"config.eval.harness.every={h.every} must be >= 0 (0 = the last step only)")
    if h.num_fewshot < -1:
        out.append(f"config.eval.harness.num_fewshot={h.num_fewshot} must be >= 0, or -1 for "
                   "each task's default")
    return out


def make_lm(rt, params, vocab, cfg: ml_collections.ConfigDict):
    """The lm-eval model over `params` on the runtime `rt` (lm/harness.py)."""
    from lm import harness
    h = cfg.eval.harness
    return harness.HarnessLM(rt, params, vocab, max_length=h.max_length or cfg.data.seq_len,
                             batch_size=h.batch_size, seed=h.seed)


def run_tasks(lm, h: ml_collections.ConfigDict) -> dict:
    """lm-eval's `simple_evaluate` of `h.tasks` with `lm`; its results dict, samples included,
    and our "continuous" scores. Quiet unless absl's --verbosity asks."""
    import datasets
    import lm_eval
    from lm_eval.tasks import TaskManager
    specs = task_specs(h.tasks)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    # Indexing lm-eval's ~15k built-in tasks takes seconds: only when one is named.
    named = any(not os.path.isfile(s) for s in specs)
    limit = None if not h.limit else (int(h.limit) if h.limit >= 1 else float(h.limit))
    try:
        results = lm_eval.simple_evaluate(
            model=lm, tasks=specs, task_manager=TaskManager(include_defaults=named),
            num_fewshot=None if h.num_fewshot < 0 else h.num_fewshot, limit=limit,
            log_samples=True, bootstrap_iters=h.bootstrap_iters, random_seed=h.seed,
            numpy_random_seed=h.seed, fewshot_random_seed=h.seed)
    except KeyError as e:  # lm-eval's message names the task it does not know
        raise ValueError(f"config.eval.harness.tasks: {e.args[0] if e.args else e}") from None
    except ConnectionError as e:  # a task's dataset is neither cached nor reachable
        raise ValueError(f"config.eval.harness.tasks: {e}. Fill the Hugging Face datasets "
                         "cache on a machine with internet and point HF_HOME at it, or give a "
                         "task YAML over local files (docs/usage.md, Downstream tasks)") from None
    results["continuous"] = continuous_scores(results)
    return results


def _gold(sample: dict, choices: list[str]) -> int | None:
    target = sample["target"]
    if isinstance(target, list):  # several correct choices: the first
        target = target[0] if target else None
    if isinstance(target, str):
        target = choices.index(target) if target in choices else (
            int(target) if target.isdigit() else None)
    return target if isinstance(target, int) and 0 <= target < len(choices) else None


def continuous_scores(results: dict) -> dict:
    """Per multiple-choice task: the mean and standard error over documents of
    correct_logprob_per_char and correct_prob (see the module docstring)."""
    out = {}
    for task, samples in (results.get("samples") or {}).items():
        config = results["configs"].get(task, {})
        if config.get("output_type") != "multiple_choice":
            continue
        delimiter = config.get("target_delimiter", " ")
        mutual_info = any(m.get("metric") == "acc_mutual_info"
                          for m in config.get("metric_list", []))
        per_char, prob = [], []
        for s in samples:
            args = s["arguments"][:len(s["arguments"]) // 2] if mutual_info else s["arguments"]
            lls = np.array([float(r[0]) for r in s["filtered_resps"][:len(args)]])
            choices = [c[1][len(delimiter):] if c[1].startswith(delimiter) else c[1]
                       for c in args]
            gold = _gold(s, choices)
            if gold is None:
                continue
            per_char.append(lls[gold] / max(len(choices[gold]), 1))
            p = np.exp(lls - lls.max())
            prob.append(p[gold] / p.sum())
        if per_char:
            out[task] = {name: {"mean": float(np.mean(v)), "stderr": _se(v), "n": len(v)}
                         for name, v in (("correct_logprob_per_char", per_char),
                                         ("correct_prob", prob))}
    return out


def _se(values: list) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def scalars(results: dict) -> dict:
    """harness/TASK/METRIC (and METRIC_stderr) for every number lm-eval reports and every
    continuous score; a metric under a filter other than "none" is METRIC.FILTER."""
    out = {}
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            if not filt or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            name = name if filt == "none" else f"{name}.{filt}"
            out[f"harness/{task}/{name}"] = float(value)
    for task, scores in results.get("continuous", {}).items():
        for name, s in scores.items():
            out[f"harness/{task}/{name}"] = s["mean"]
            out[f"harness/{task}/{name}_stderr"] = s["stderr"]
    return out


def higher_is_better(results: dict) -> dict:
    """TASK/METRIC -> whether higher is better, as lm-eval's tasks declare it (continuous
    scores: higher)."""
    out = {f"{t}/{m}": bool(v) for t, ms in results.get("higher_is_better", {}).items()
           for m, v in ms.items() if v is not None}
    for task, scores in results.get("continuous", {}).items():
        out |= {f"{task}/{name}": True for name in scores}
    return out


def table(results: dict) -> str:
    """lm-eval's own markdown table, and one of the continuous scores."""
    from lm_eval.utils import make_table
    text = make_table(results)
    if results.get("groups"):
        text += "\n" + make_table(results, "groups")
    if results.get("continuous"):
        rows = ["| Task | correct_logprob_per_char | correct_prob | docs |", "|---|---|---|---|"]
        for task, s in results["continuous"].items():
            a, b = s["correct_logprob_per_char"], s["correct_prob"]
            rows.append(f"| {task} | {a['mean']:.4f} ± {a['stderr']:.4f} | "
                        f"{b['mean']:.4f} ± {b['stderr']:.4f} | {a['n']} |")
        text += "\nContinuous scores of the multiple-choice tasks (± stderr over documents):\n\n"
        text += "\n".join(rows) + "\n"
    return text


def write(results: dict, workdir: str, step: int) -> str:
    """harness.json and harness_samples/ in `workdir` (process 0); returns the JSON's path."""
    from lm_eval.utils import handle_non_serializable  # as lm-eval writes its own results
    path = os.path.join(workdir, RESULTS_FILE)
    if jax.process_index() != 0:
        return path
    os.makedirs(os.path.join(workdir, SAMPLES_DIR), exist_ok=True)
    for task, samples in (results.get("samples") or {}).items():
        with open(os.path.join(workdir, SAMPLES_DIR, f"{task}.jsonl"), "w") as f:
            f.writelines(json.dumps(s, default=handle_non_serializable) + "\n" for s in samples)
    kept = {k: v for k, v in results.items() if k != "samples"} | {"step": step}
    workdir_lib.write_atomic(path, json.dumps(kept, indent=2, default=handle_non_serializable))
    return path


def read(workdir: str) -> dict | None:
    """A run's harness.json, or None."""
    path = os.path.join(workdir, RESULTS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class Harness(hooks_lib.Hook):
    """The tasks in the loop: at `last_step` and every `every` steps, logged as harness/...
    scalars; the last step's results also go to harness.json. The model adapter is built on the
    loop's runtime at the first act and reads the live params each time."""
    name = "harness"

    def __init__(self, cfg: ml_collections.ConfigDict, vocab):
        self.cfg, self.vocab, self.lm = cfg, vocab, None
        self.every, self.last_step = cfg.eval.harness.every, cfg.train.steps

    def acts_at(self, step: int) -> bool:
        return step > 0 and (step == self.last_step or bool(self.every and
                                                             step % self.every == 0))

    def act(self, loop: hooks_lib.Loop, step: int) -> None:
        if self.lm is None:
            self.lm = make_lm(loop.runtime, loop.state.params, self.vocab, self.cfg)
        self.lm.params = loop.state.params
        results = run_tasks(self.lm, self.cfg.eval.harness)
        loop.writer.write(step, scalars(results))
        if step == self.last_step:
            write(results, loop.workdir, step)
        loop.writer.note(f"downstream tasks at step {step}:\n{table(results)}")


def evaluate(cfg: ml_collections.ConfigDict, checkpoint: str, vocab, workdir: str, *,
             devices=None, field: str = "the checkpoint") -> dict:
    """The tasks on the params of `checkpoint`'s latest step (a workdir), written to
    `workdir`; returns lm-eval's results (with "step" and "continuous")."""
    from lm import checkpoint as ckpt_lib
    from lm import train as train_lib
    from reweight.interface import Uniform
    rt = train_lib.build_runtime(cfg, Uniform(), 1, devices)
    with rt.context():
        params, step = ckpt_lib.load_params(checkpoint, rt.abstract.params, field)
    results = run_tasks(make_lm(rt, params, vocab, cfg), cfg.eval.harness)
    write(results, workdir, step)
    return results | {"step": step}
