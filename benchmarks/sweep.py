"""Mixture sweep (RegMix) and end-of-training upsampling on the built-in corpus.

  python benchmarks/sweep.py [--quick] [--workdir=workdirs/bench_sweep]

1. A sweep of configs/sweep_regmix.py proxies (sequential, local backend): the regression's
   Spearman on held-out trials and proxy trials per hour.
2. The proxy trained P at a time with jax.vmap (sweep.vmap_trials=P) vs one at a time, on
   synthetic data of the same shape: time per trial after compiling.
3. Longer runs of configs/tiny.py on the chosen mixture, the natural one and uniform: the
   sweep's target (mean validation loss over the six training domains).
4. End-of-training upsampling (configs/upsample_end.py: code and math x3 for the last 15%) vs
   none (natural throughout): the upsampled domains' loss and the general (all-domain) loss.
Prints a table and, last, one JSON line of figures; PNGs in the workdir. Needs the corpus
(`make corpus`).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from runs import experiment  # noqa: E402
from runs import sweep  # noqa: E402
from configs import sweep_regmix, tiny, upsample_end  # noqa: E402

DOMAINS = ["books", "reference", "code", "dialogue", "technical", "math"]


def _long_run(cfg, workdir):
    """Trains one config through the ordinary loop; returns its final eval metrics (kept in
    the workdir's bench.json, so a rerun of the benchmark skips finished runs)."""
    done = os.path.join(workdir, "bench.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    exp = experiment.build(cfg)
    t0 = time.perf_counter()
    result = exp.train(workdir, devices=jax.devices()[:1]).eval.scalars()
    result["seconds"] = time.perf_counter() - t0
    with open(done, "w") as f:
        json.dump(result, f)
    return result


def _bars(path, title, groups: dict, keys: list, ylabel: str):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(groups)
    for j, (label, values) in enumerate(groups.items()):
        ax.bar(np.arange(len(keys)) + j * width, [values[k] for k in keys], width, label=label)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=20)
    lo = min(min(v[k] for k in keys) for v in groups.values())
    ax.set_ylim(lo * 0.95, None)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main_(args):
    out = args.workdir
    os.makedirs(out, exist_ok=True)
    q = args.quick
    figures = {"machine": f"{os.cpu_count()} shared CPU cores, 1 JAX CPU device",
               "quick": q}

    # 1. The sweep.
    scfg = sweep_regmix.get_config()
    scfg.sweep.num_trials = 8 if q else args.trials
    scfg.train.update(steps=20 if q else args.proxy_steps,
                      checkpoint_every=20 if q else args.proxy_steps)
    scfg.train.warmup_steps = max(1, scfg.train.steps // 10)
    sweep_dir = os.path.join(out, "sweep")
    t0 = time.perf_counter()
    summary = sweep.run(scfg, sweep_dir)
    wall = time.perf_counter() - t0
    rows = sweep.read_rows(sweep_dir, sweep.sources.domain_names(scfg)[0],
                           sweep.draw_trials(scfg))
    secs = np.array([rows[i]["seconds"] for i in sorted(rows) if rows[i]["status"] == "ok"])
    per_trial = float(np.median(secs))
    figures["sweep"] = {
        "trials": len(rows), "proxy_steps": scfg.train.steps,
        "proxy": "d_model 64, 2 layers, vocab 8192, batch 16 x 64 tokens",
        "heldout_trials": summary["heldout_trials"],
        "heldout_spearman": summary["heldout_spearman"], "fit_spearman": summary["fit_spearman"],
        "trials_run_now": summary["trials_run"], "wall_s": wall,
        "median_trial_s": per_trial, "trials_per_hour": 3600.0 / per_trial,
        "chosen": summary["chosen"]}

    # 2. vmap, side by side on the same proxy shape with synthetic data (pipelines are cheap
    # to build, so only the training is compared): P trials one by one vs one group of P,
    # each after a warm-up that pays its compile.
    p = 4
    vcfg = scfg.copy_and_resolve_references()
    vcfg.data.update(source="synthetic", num_domains=len(DOMAINS))
    vcfg.sweep.update(vmap_trials=p, num_trials=2 * p, center="uniform")
    rewound, timing = sweep.RewoundData(), {}
    for mode in ("sequential", "vmap"):
        vdir = os.path.join(out, f"vmap_{mode}")
        for indices in (list(range(p, 2 * p)), list(range(p))):  # warm-up, then timed
            t0 = time.perf_counter()
            if mode == "vmap":  # raises if the group fails
                sweep.group_job(vcfg, indices, vdir, rewound)
            else:
                for i in indices:
                    sweep.trial_job(vcfg, i, vdir, rewound)
            timing[mode] = (time.perf_counter() - t0) / len(indices)
    figures["vmap"] = {"proxies_per_group": p, "data": "synthetic, proxy model and batch",
                       "sequential_s_per_trial": timing["sequential"],
                       "vmap_s_per_trial": timing["vmap"],
                       "sequential_over_vmap": timing["sequential"] / timing["vmap"]}

    # 3. Longer runs: chosen vs natural vs uniform.
    long_steps = 40 if q else args.long_steps
    results = {}
    for name, weights, mixture in (
            ("chosen", f"file:{os.path.join(sweep_dir, 'mixture.txt')}", "fixed"),
            ("natural", "uniform", "natural"), ("uniform", "uniform", "fixed"),
            ("upsample_end", "uniform", "upsample")):
        cfg = upsample_end.get_config() if name == "upsample_end" else tiny.get_config()
        cfg.data.weights, cfg.reweight.mixture = weights, mixture
        cfg.train.update(steps=long_steps, eval_every=0, checkpoint_every=long_steps,
                         warmup_steps=max(1, long_steps // 10), progress_bar=False)
        results[name] = _long_run(cfg, os.path.join(out, name))
    avg = {k: float(np.mean([r[f"eval/{d}/loss"] for d in DOMAINS])) for k, r in results.items()}
    figures["long_runs"] = {"steps": long_steps, "model": "configs/tiny.py (d_model 128, 2 layers)",
                            "target_average_loss": avg,
                            "seconds": {k: r["seconds"] for k, r in results.items()}}
    losses = {k: {d: r[f"eval/{d}/loss"] for d in DOMAINS} | {"average": avg[k]}
              for k, r in results.items()}
    _bars(os.path.join(out, "mixtures_long_run.png"), f"{long_steps}-step runs",
          {k: losses[k] for k in ("chosen", "natural", "uniform")}, DOMAINS + ["average"],
          "validation loss")

    # 4. Upsampling vs none (natural throughout).
    up, none = losses["upsample_end"], losses["natural"]
    figures["upsampling"] = {
        "domains": "code,math x3, last 15%",
        "code_loss": [none["code"], up["code"]], "math_loss": [none["math"], up["math"]],
        "general_loss": [none["average"], up["average"]],
        "others_loss": [float(np.mean([none[d] for d in DOMAINS if d not in ("code", "math")])),
                        float(np.mean([up[d] for d in DOMAINS if d not in ("code", "math")]))]}
    _bars(os.path.join(out, "upsampling.png"), "end-of-training upsampling (code, math x3)",
          {"none (natural)": none, "upsampled last 15%": up}, DOMAINS + ["average"],
          "validation loss")

    s, v = figures["sweep"], figures["vmap"]
    print(f"machine: {figures['machine']} (shared with other jobs while measured)")
    print(f"sweep: {s['trials']} proxies x {s['proxy_steps']} steps; held-out Spearman "
          f"{s['heldout_spearman']:.3f} on {s['heldout_trials']} trials "
          f"(fit {s['fit_spearman']:.3f}); median {s['median_trial_s']:.1f} s/trial = "
          f"{s['trials_per_hour']:.0f} trials/hour")
    print(f"vmap x{p} (synthetic data): {v['vmap_s_per_trial']:.1f} s/trial vs sequential "
          f"{v['sequential_s_per_trial']:.1f}: sequential/vmap = {v['sequential_over_vmap']:.2f}")
    print(f"{'run':<14}{'steps':>6}  " + "".join(f"{d:>10}" for d in DOMAINS + ["average"]))
    for k in results:
        print(f"{k:<14}{long_steps:>6}  " + "".join(f"{losses[k][d]:>10.4f}"
                                                    for d in DOMAINS + ["average"]))
    print(json.dumps(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 short trials, 40-step runs")
    parser.add_argument("--workdir", default="workdirs/bench_sweep")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--proxy_steps", type=int, default=50)
    parser.add_argument("--long_steps", type=int, default=150)
    main_(parser.parse_args())
