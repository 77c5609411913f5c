"""Loss-based reweighting (Sow et al., ICLR 2025) on the six real domains, each strategy at each
learning rate of a small grid, seed 0: the grid that picks each arm's best lr.

  make testbed
  python main.py --mode=compare --config=configs/compare/loss_lr_grid.py \
      --workdir=workdirs/cmp_loss_lr_grid

The testbed (configs/testbed.py) on books, reference, code, dialogue, technical and math,
uniformly (no planted data: the paper's setting is clean pretraining text). Arms: uniform,
LinUpper (r 0.4), Quadratic (r 1) and Extremes (r 0.4), all with a 25-step uniform warm-up,
each at lr 1e-3, 3e-3 (the testbed's) and 1e-2: `<strategy>_<lr>`. Baseline: uniform_3e-3.
The paper's measure is steps to a target loss: here steps (and FLOPs) to the baseline's final
mean loss over the six domains. The best lr of each strategy (lowest final mean loss) then
goes to a 5-seed comparison, each strategy at its own best lr (configs/compare/loss_real.py,
the same workdir: it reuses these runs as its seed 0). One grid seed, not two: two seeds of 12
runs are ~1.5 hours here, and the 5-seed comparison tests the choice.

Prediction, written before the run: the loss weights average 1 over a batch, so the step size
is the same and every strategy's best lr is the uniform's, 3e-3 (1e-2 diverges early or ends
worse, 1e-3 is too slow in 500 steps). At its best lr each loss-based arm is within 0.02 nats
of uniform and reaches uniform's final loss within +-10% of its steps: on clean text the
highest-loss rows are hard (code, math), not useless, so up-weighting them neither helps nor
hurts much at this scale. LinUpper, which up-weights the hardest rows the most, slightly
better on math and code and worse on the others.
"""

from configs.compare import base

DOMAINS = "books,reference,code,dialogue,technical,math"
LOSS_BASED = ("reweight.instance=loss_based;reweight.loss_based.warmup_steps=25;"
              "reweight.loss_based.d=1.0")
STRATEGIES = {
    "uniform": "",
    "linupper": f"{LOSS_BASED};reweight.loss_based.strategy=linupper;reweight.loss_based.r=0.4",
    "quadratic": f"{LOSS_BASED};reweight.loss_based.strategy=quadratic;reweight.loss_based.r=1.0",
    "extremes": f"{LOSS_BASED};reweight.loss_based.strategy=extremes;reweight.loss_based.r=0.4",
}
LRS = ("1e-3", "3e-3", "1e-2")


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform_3e-3"
    c.compare.overrides = f"data.domains={DOMAINS}"
    for name, overrides in STRATEGIES.items():
        for lr in LRS:
            c.compare.arms[f"{name}_{lr}"] = base.arm(
                "configs/testbed.py", ";".join(o for o in (overrides, f"train.lr={lr}") if o))
    c.compare.seeds = "0"
    c.compare.eval_rows = 256
    return c
