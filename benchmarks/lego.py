"""Skill-It vs random (1:1:1:3:5) vs stratified (uniform) on LEGO (k=5), from scratch.

  python benchmarks/lego.py            # 3 methods x 3 seeds x the configs' 1500 steps (~52 min)
  python benchmarks/lego.py --quick    # 1 seed x 200 steps
  python benchmarks/lego.py --estimated_graph   # also Skill-It on a brute-force graph
  python benchmarks/lego.py --methods= --estimated_graph   # that one alone

Each run is configs/lego_<method>.py (chain supervision: every hop is in the loss, see
data/lego.py) with the steps, seed and Skill-It round length set here, all at equal steps.
Skills 3-5 rise together at this scale, in a jump whose step varies a lot with the seed, so
means over 3 seeds are coarse: read the per-seed lines too.
Reports, per method (mean +- std over seeds): mean greedy-decoding accuracy over the 5 skills
at the end, its area under the curve (mean over the evals, so 1.0 = perfect from the start),
and each skill's final accuracy. Writes lego_skills.png (per-skill accuracy vs step, mean over
seeds) and lego_mixture.png (Skill-It's sampling weights over time, first seed) in --workdir.
Prints a table, then one JSON line.
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

from runs import experiment  # noqa: E402
from runs import skill_graph  # noqa: E402
from configs import lego_random, lego_skill_it, lego_stratified  # noqa: E402
from lm.metrics import read_metrics  # noqa: E402

CONFIGS = {"skill_it": lego_skill_it, "random": lego_random, "stratified": lego_stratified}


def run(cfg, workdir: str) -> tuple[list, float]:
    """Trains one config in a fresh workdir; returns its metrics and wall seconds."""
    shutil.rmtree(workdir, ignore_errors=True)
    t0 = time.perf_counter()
    experiment.build(cfg).train(workdir, devices=jax.devices()[:1])
    return read_metrics(workdir), time.perf_counter() - t0


def curves(metrics: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(eval steps [E], accuracy [E, k])."""
    rows = [m for m in metrics if "eval/skill_1/accuracy" in m]
    return (np.array([m["step"] for m in rows]),
            np.array([[m[f"eval/skill_{s}/accuracy"] for s in range(1, k + 1)] for m in rows]))


def configure(module, *, seed: int, steps: int, eval_every: int, evals_per_round: int,
              graph: str = ""):
    """A round is a whole number of evals, so every update step is also an eval step (and no
    eval-only step falls just before an update: see the report on lm/loop.py's prefetch)."""
    cfg = module.get_config()
    cfg.seed = seed
    cfg.train.update(steps=steps, eval_every=eval_every, checkpoint_every=steps,
                     progress_bar=False, log_every=max(steps // 20, 1))
    if cfg.reweight.mixture == "skill_it":
        cfg.reweight.skill_it.update_every = eval_every * evals_per_round
        if graph:
            cfg.reweight.skill_it.graph = graph
    return cfg


def plot(results: dict, k: int, path: str) -> None:
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3.2), sharey=True)
    for method, runs in results.items():
        steps = runs[0]["steps"]
        acc = np.mean([r["acc"] for r in runs], axis=0)
        for s in range(k):
            axes[s].plot(steps, acc[:, s], label=method)
        axes[k].plot(steps, acc.mean(-1), label=method)
    for s in range(k):
        axes[s].set_title(f"skill {s + 1} (depth {s + 1})")
    axes[k].set_title("mean over skills")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("greedy accuracy")
    axes[k].legend(fontsize="small")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def plot_mixture(metrics: list, k: int, path: str) -> None:
    rows = [m for m in metrics if "mixture/skill_1/weight" in m]
    steps = [m["step"] for m in rows]
    weights = np.array([[m[f"mixture/skill_{s}/weight"] for s in range(1, k + 1)] for m in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.stackplot(steps, weights.T, labels=[f"skill {s}" for s in range(1, k + 1)], step="post")
    ax.set_xlabel("step (weights apply after the step)")
    ax.set_ylabel("Skill-It sampling weight")
    ax.legend(fontsize="small", loc="upper right")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="0 = the config's (quick: 200)")
    parser.add_argument("--eval_every", type=int, default=0, help="0 = steps / 24")
    parser.add_argument("--evals_per_round", type=int, default=4,
                        help="Skill-It round = this many evals (default: 6 rounds per run)")
    parser.add_argument("--estimated_graph", action="store_true",
                        help="also run Skill-It on a graph from skill_graph.estimate")
    parser.add_argument("--methods", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {','.join(CONFIGS)} (may be empty)")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "workdirs", "bench_lego"))
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    base_cfg = lego_stratified.get_config()
    steps = args.steps or (200 if args.quick else base_cfg.train.steps)
    eval_every = args.eval_every or max(steps // 24, 1)
    k = base_cfg.data.lego_k
    os.makedirs(args.workdir, exist_ok=True)
    t_start = time.perf_counter()

    chosen = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(chosen) - set(CONFIGS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {list(CONFIGS)}")
    methods = {m: CONFIGS[m] for m in chosen}
    graph_json = ""
    if args.estimated_graph:
        gdir = os.path.join(args.workdir, "graph")
        shutil.rmtree(gdir, ignore_errors=True)
        gcfg = configure(lego_stratified, seed=0, steps=steps, eval_every=eval_every,
                         evals_per_round=args.evals_per_round)
        gcfg.skill_graph.update(start_steps=steps // 4, steps=max(steps // 10, 1))
        est = skill_graph.estimate(gcfg, gdir, devices=jax.devices()[:1])
        graph_json = os.path.join(gdir, "skill_graph.json")
        methods["skill_it_est"] = lego_skill_it
        print("estimated graph (rows: trained on skill i; columns: skill j):")
        print(np.array2string(np.array(est["graph"]), precision=2))

    results: dict = {}
    for method, module in methods.items():
        for seed in range(seeds):
            cfg = configure(module, seed=seed, steps=steps, eval_every=eval_every,
                            evals_per_round=args.evals_per_round,
                            graph=graph_json if method == "skill_it_est" else "")
            metrics, secs = run(cfg, os.path.join(args.workdir, f"{method}_seed{seed}"))
            eval_steps, acc = curves(metrics, k)
            results.setdefault(method, []).append(
                {"steps": eval_steps, "acc": acc, "secs": secs, "metrics": metrics})
            print(f"{method} seed {seed}: final mean acc {acc[-1].mean():.3f} "
                  f"per skill {np.round(acc[-1], 2).tolist()} ({secs:.0f} s)", flush=True)

    plot(results, k, os.path.join(args.workdir, "lego_skills.png"))
    for method in ("skill_it", "skill_it_est"):
        if method in results:
            plot_mixture(results[method][0]["metrics"], k,
                         os.path.join(args.workdir, f"lego_mixture_{method}.png"))
    summary = {}
    for method, runs in results.items():
        final = np.array([r["acc"][-1] for r in runs])  # [seeds, k]
        auc = np.array([r["acc"].mean() for r in runs])
        summary[method] = {"final_mean_acc": float(final.mean()),
                           "final_mean_acc_std": float(final.mean(-1).std()),
                           "auc": float(auc.mean()), "auc_std": float(auc.std()),
                           "final_per_skill": final.mean(0).round(3).tolist(),
                           "secs_per_run": float(np.mean([r["secs"] for r in runs]))}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].platform}"
    m = base_cfg.model
    scale = (f"LEGO k={k}, {base_cfg.data.lego_supervision} supervision, from scratch: "
             f"{m.num_layers} layers x d={m.d_model}, batch {base_cfg.train.batch_size}, "
             f"{steps} steps, eval every {eval_every} on 100 examples per skill, "
             f"Skill-It rounds of {eval_every * args.evals_per_round} steps, {seeds} seed(s)")
    print(f"\n{scale}\nmachine: {machine}\n")
    print(f"{'method':<14}{'final mean acc':>18}{'AUC':>16}   final accuracy per skill")
    for method, s in summary.items():
        print(f"{method:<14}{s['final_mean_acc']:>11.3f} ± {s['final_mean_acc_std']:.3f}"
              f"{s['auc']:>9.3f} ± {s['auc_std']:.3f}   {s['final_per_skill']}")
    print(json.dumps({"benchmark": "lego", "machine": machine, "scale": scale, "seeds": seeds,
                      "steps": steps, "summary": summary,
                      "total_secs": round(time.perf_counter() - t_start, 1)}))


if __name__ == "__main__":
    main()
