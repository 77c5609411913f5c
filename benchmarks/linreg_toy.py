"""The linear-regression toy of Sow et al. (ICLR 2025), run through our loss-based weighter.

  python benchmarks/linreg_toy.py           # ~1 min on 2 cores
  python benchmarks/linreg_toy.py --quick   # fewer seeds, lrs and steps, ~20 s

Protocol: x ~ N(0, I_200), w* ~ N(0, I/200) (so |w*|^2 ~ 1), y = x.w* + noise * N(0, 1);
online SGD from w = 0 on a fresh batch of 128 rows each step; per-example loss
l_i = 0.5 (x_i.w - y_i)^2; the step follows the gradient of sum_i w_i l_i with the weights from
`reweight.registry.make_weighter` (the code the train step runs) held constant. The
figure is the excess test loss 0.5 E_x[(x.(w - w*))^2] = 0.5 |w - w*|^2 (exact for this x;
label noise excluded). Data depend only on (seed, step), so every method sees the same batches.

Three comparisons, each mean +- std over the evaluation seeds:
  1. fixed lr 0.01, clean labels, step 50;
  2. lr tuned per method on separate tuning seeds (best mean at step 50), clean labels;
  3. label noise 0.5 at a longer horizon, where a noise floor shows: fixed lr 0.01 (a), and the
     lr tuned per method (b).
Prints a table and, last, one JSON line.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from runs import experiment  # noqa: E402
from configs import base  # noqa: E402
from reweight import registry  # noqa: E402
from reweight.interface import StepInputs  # noqa: E402

DIM, BATCH = 200, 128
METHODS = {  # name -> config.reweight overrides
    "uniform": dict(instance="uniform"),
    "quadratic r=1": dict(instance="loss_based", loss_based=dict(strategy="quadratic", r=1.0)),
    "linupper r=1": dict(instance="loss_based", loss_based=dict(strategy="linupper", r=1.0)),
    "linupper r=0.4": dict(instance="loss_based", loss_based=dict(strategy="linupper", r=0.4)),
    "extremes r=1": dict(instance="loss_based", loss_based=dict(strategy="extremes", r=1.0)),
    "extremes r=0.4": dict(instance="loss_based", loss_based=dict(strategy="extremes", r=0.4)),
}


def _weighter(overrides: dict):
    cfg = base.get_config()
    cfg.reweight.update(**overrides)
    return registry.make_weighter(cfg, experiment.Env(cfg))


def make_run(weighter, steps: int, noise: float):
    """(lrs [K], seeds [S]) -> excess test loss after `steps` steps, [K, S]."""

    def one(lr, seed):
        star_key, data_key = jax.random.split(jax.random.key(seed))
        w_star = jax.random.normal(star_key, (DIM,)) / jnp.sqrt(DIM)
        valid_B = jnp.ones(BATCH, bool)
        domain_B = jnp.zeros(BATCH, jnp.int32)

        def step(carry, t):
            w, wstate = carry
            kx, ke = jax.random.split(jax.random.fold_in(data_key, t))
            x_BxD = jax.random.normal(kx, (BATCH, DIM))
            y_B = x_BxD @ w_star + noise * jax.random.normal(ke, (BATCH,))
            resid_B = x_BxD @ w - y_B
            inputs = StepInputs(domain_B=domain_B, valid_B=valid_B,
                                loss_mask_BxL=valid_B[:, None].astype(jnp.float32), step=t,
                                rng=data_key, example_loss_B=0.5 * resid_B**2)
            weights_B, wstate, _ = weighter(wstate, inputs)
            grad = x_BxD.T @ (weights_B * resid_B)  # d/dw sum_i w_i 0.5 resid_i^2, weights held
            return (w - lr * grad, wstate), None

        (w, _), _ = jax.lax.scan(step, (jnp.zeros(DIM), weighter.init()), jnp.arange(steps))
        loss = 0.5 * jnp.sum((w - w_star) ** 2)
        return jnp.where(jnp.isfinite(loss), loss, jnp.inf)  # a diverged run loses every comparison

    return jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))


def sweep(steps: int, noise: float, lr_grid: list, seeds: list) -> dict:
    """Per method: excess test loss for every (lr, seed), [K, S] (one compile per method)."""
    lrs, seeds = jnp.asarray(lr_grid, jnp.float32), jnp.asarray(seeds)
    return {name: np.asarray(make_run(_weighter(overrides), steps, noise)(lrs, seeds))
            for name, overrides in METHODS.items()}


def pick(losses: dict, lr_grid: list, n_tune: int, lr: float | None = None) -> dict:
    """Per method: the lr (given, or the lowest mean loss on the first n_tune seeds) and its
    loss on the other seeds."""
    out = {}
    for name, grid in losses.items():
        k = lr_grid.index(lr) if lr is not None else int(np.argmin(grid[:, :n_tune].mean(axis=1)))
        held_out = grid[k, n_tune:]
        out[name] = {"lr": lr_grid[k], "mean": float(held_out.mean()),
                     "std": float(held_out.std(ddof=1)),
                     "lr_at_grid_edge": lr is None and k in (0, len(lr_grid) - 1)}
    return out


def _table(title: str, results: dict) -> None:
    ref = results["uniform"]["mean"]
    print(f"\n{title}")
    print(f"  {'method':<16} {'lr':>6} {'excess test loss':>24} {'/ uniform':>10}")
    for name, r in results.items():
        edge = "*" if r["lr_at_grid_edge"] else " "
        print(f"  {name:<16} {r['lr']:>6g}{edge} {r['mean']:>11.4g} +- {r['std']:<9.3g} "
              f"{r['mean'] / ref:>10.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 5 lrs, 200 noisy steps")
    parser.add_argument("--noise", type=float, default=0.5, help="label noise std, comparison 3")
    args = parser.parse_args()
    n = 3 if args.quick else 5
    eval_seeds, tune_seeds = list(range(n)), list(range(100, 100 + n))
    lr_grid = ([0.005, 0.01, 0.05, 0.2, 0.5] if args.quick else
               [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    noisy_steps = 200 if args.quick else 1000

    t0 = time.perf_counter()
    seeds = tune_seeds + eval_seeds
    clean = sweep(50, 0.0, lr_grid, seeds)
    fixed = pick(clean, lr_grid, len(tune_seeds), lr=0.01)
    tuned = pick(clean, lr_grid, len(tune_seeds))
    noisy_losses = sweep(noisy_steps, args.noise, lr_grid, seeds)
    noisy_fixed = pick(noisy_losses, lr_grid, len(tune_seeds), lr=0.01)
    noisy = pick(noisy_losses, lr_grid, len(tune_seeds))
    elapsed = time.perf_counter() - t0

    print(f"Linear-regression toy: d={DIM}, B={BATCH}, online SGD from 0, {len(eval_seeds)} eval "
          f"seeds (lr tuned on {len(tune_seeds)} other seeds over {lr_grid}); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} on {jax.default_backend()}; {elapsed:.0f} s")
    _table("1. fixed lr 0.01, clean labels, step 50", fixed)
    _table("2. lr tuned per method, clean labels, step 50", tuned)
    _table(f"3a. fixed lr 0.01, label noise {args.noise}, step {noisy_steps}", noisy_fixed)
    _table(f"3b. lr tuned per method, label noise {args.noise}, step {noisy_steps}", noisy)
    print("\n  * the chosen lr is at the edge of the grid")
    fields = ("lr", "mean", "std", "lr_at_grid_edge")
    strip = lambda res: {k: {f: v[f] for f in fields} for k, v in res.items()}
    print(json.dumps({"benchmark": "linreg_toy", "quick": args.quick,
                      "eval_seeds": len(eval_seeds), "seconds": round(elapsed, 1),
                      "fixed_lr_step50": strip(fixed), "tuned_lr_step50": strip(tuned),
                      f"noisy{args.noise}_fixed_lr_step{noisy_steps}": strip(noisy_fixed),
                      f"noisy{args.noise}_tuned_lr_step{noisy_steps}": strip(noisy)}))


if __name__ == "__main__":
    main()
