"""Loss-based instance reweighting on a tiny LM: does down-weighting easy data save steps?

  python benchmarks/reweight_lm.py           # 4 methods x 3 seeds x 400 steps, ~30 min on 2 cores
  python benchmarks/reweight_lm.py --quick   # 1 seed x 120 steps, ~8 min

Scale: configs/tiny.py (D=128, 2 layers, BPE 8192, L=128, batch 16) on the built-in six
domains plus a seventh, "redundant", domain: 8 short documents (about a row each) repeated
2000 times, drawn as often as any other domain (uniform mixture). Once memorised its loss is low, so a strategy that
deprioritises low-loss rows (LinUpper) should spend those rows' weight on useful text.

Reports, per method (mean +- std over seeds): final validation loss on the six real domains
(token-weighted), on the redundant domain, on the held-out domains, and the step at which the
method first reaches uniform's final real-domain loss (linear interpolation between evals), as
a fraction of the run. Goal from the issue: <= 0.8x for a strategy that deprioritises easy data.
Also writes reweight_lm.png (real-domain loss vs step). Prints a table, then one JSON line.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data import sources  # noqa: E402
from runs import experiment  # noqa: E402
from configs import tiny  # noqa: E402
from data import corpus  # noqa: E402
from lm.metrics import read_metrics  # noqa: E402

METHODS = {  # name -> config.reweight overrides (the papers' temperatures)
    "uniform": dict(instance="uniform"),
    "linupper": dict(instance="loss_based", loss_based=dict(strategy="linupper", r=0.4)),
    "quadratic": dict(instance="loss_based", loss_based=dict(strategy="quadratic", r=1.0)),
    "extremes": dict(instance="loss_based", loss_based=dict(strategy="extremes", r=0.4)),
}
REAL = corpus.DOMAINS


def make_redundant_domain(data_dir: str, docs: int = 8, chars: int = 500,
                          repeats: int = 2000) -> str:
    """A JSONL domain of `docs` short (`chars`-character, about one row) documents cut from the
    technical domain's train split, repeated `repeats` times (train), and the same documents
    once (validation, so its loss shows memorisation): returns its glob. The technical domain's
    own validation split stays disjoint from them."""
    out = os.path.join(data_dir, "bench_redundant")
    os.makedirs(out, exist_ok=True)
    src = corpus.shard_paths(data_dir, "technical", "train")[0]
    with open(src) as f:
        lines = [json.dumps({"text": json.loads(f.readline())["text"][:chars]}) + "\n"
                 for _ in range(docs)]
    with open(os.path.join(out, "train-00000.jsonl"), "w") as f:
        f.writelines(lines * repeats)
    with open(os.path.join(out, "validation-00000.jsonl"), "w") as f:
        f.writelines(lines)
    return os.path.join(out, "{split}-*.jsonl")


def _real_loss(m: dict) -> float:
    """Mean validation loss of the six real domains (each evaluated on the same number of rows)."""
    return float(np.mean([m[f"eval/{d}/loss"] for d in REAL]))


def steps_to_reach(curve: list, target: float) -> float:
    """First step where the (linearly interpolated) curve reaches `target`; inf if never."""
    prev = None
    for step, loss in curve:
        if loss <= target:
            if prev is None:
                return float(step)
            (s0, l0) = prev
            return s0 + (step - s0) * (l0 - target) / (l0 - loss)
        prev = (step, loss)
    return float("inf")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "workdirs", "bench_reweight_lm"))
    args = parser.parse_args()
    seeds, steps, every = ([0], 120, 20) if args.quick else ([0, 1, 2], 400, 50)

    base = tiny.get_config()
    base.data.data_dir = os.path.join(ROOT, base.data.data_dir)
    glob = make_redundant_domain(base.data.data_dir)
    base.data.domains = ",".join(REAL) + f",redundant={glob}"
    base.data.eval_rows = 32
    base.train.update(steps=steps, eval_every=every, checkpoint_every=steps, warmup_steps=steps // 10,
                      progress_bar=False, log_every=every)
    shutil.rmtree(args.workdir, ignore_errors=True)

    t0 = time.perf_counter()
    curves: dict = {m: [] for m in METHODS}
    finals: dict = {m: [] for m in METHODS}
    for seed in seeds:
        base.seed = seed
        data = sources.build_data(base)  # same data order for every method
        start_state = data.source.get_state()
        for method, overrides in METHODS.items():
            cfg = base.copy_and_resolve_references()
            cfg.reweight.update(**overrides)
            cfg.reweight.loss_based.warmup_steps = steps // 20
            data.source.set_state(start_state)
            workdir = os.path.join(args.workdir, f"{method}_seed{seed}")
            experiment.build(cfg, data=data).train(workdir, devices=jax.devices()[:1])
            evals = [m for m in read_metrics(workdir) if "eval/loss" in m]
            curves[method].append([(m["step"], _real_loss(m)) for m in evals])
            finals[method].append(evals[-1])
            print(f"seed {seed} {method:10} real-domain loss {_real_loss(evals[-1]):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    results = {}
    for method in METHODS:
        target_steps = [steps_to_reach(c, _real_loss(u))
                        for c, u in zip(curves[method], finals["uniform"])]
        heldout = [np.mean([v for k, v in f.items() if k.startswith("eval/") and k.endswith("/loss")
                            and k.split("/")[1] not in (*REAL, "redundant")]) for f in finals[method]]
        results[method] = {
            "real_loss": [_real_loss(f) for f in finals[method]],
            "redundant_loss": [f["eval/redundant/loss"] for f in finals[method]],
            "heldout_loss": [float(h) for h in heldout],
            "steps_to_uniform_final_fraction": [s / steps for s in target_steps],
            "per_domain": {d: [f[f"eval/{d}/loss"] for f in finals[method]] for d in REAL},
        }

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in METHODS:
        c = np.asarray(curves[method])  # seeds x evals x 2
        ax.plot(c[0, :, 0], c[:, :, 1].mean(0), label=method)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss, mean of 6 real domains")
    ax.legend()
    ax.grid(alpha=0.3)
    png = os.path.join(args.workdir, "reweight_lm.png")
    fig.savefig(png, dpi=100, bbox_inches="tight")

    machine = f"{platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].platform}"
    ms = lambda xs: f"{np.mean(xs):.4f} +- {np.std(xs):.4f}"
    print(f"\nmachine: {machine}; {len(seeds)} seeds x {steps} steps; plot: {png}")
    print(f"{'method':10} {'real val loss':>18} {'redundant':>18} {'held-out':>18} "
          f"{'steps to uniform final':>24}")
    for method, r in results.items():
        frac = r["steps_to_uniform_final_fraction"]
        print(f"{method:10} {ms(r['real_loss']):>18} {ms(r['redundant_loss']):>18} "
              f"{ms(r['heldout_loss']):>18} {np.mean(frac):>18.2f}x ({', '.join(f'{f:.2f}' for f in frac)})")
    print(json.dumps({"benchmark": "reweight_lm", "machine": machine, "seeds": seeds,
                      "steps": steps, "results": results,
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
