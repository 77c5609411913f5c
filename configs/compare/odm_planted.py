"""Online Data Mixing (Albalak et al. 2023) on clean text mixed with planted junk.

  make testbed
  # optional, to reuse loss_planted's uniform runs instead of training them again:
  mkdir -p workdirs/cmp_odm_planted/runs && ln -s ../../cmp_loss_planted/runs/uniform \
      workdirs/cmp_odm_planted/runs/uniform
  python main.py --mode=compare --config=configs/compare/odm_planted.py \
      --workdir=workdirs/cmp_odm_planted

The data of configs/compare/loss_planted.py: the five clean domains plus `duplicated` and
`noise` (data/planted.py), starting uniform (1/7 each). Arms, paired by seed:
  uniform        loss_planted's uniform runs (same config, same seeds);
  odm_exp3       ODM as the paper writes it (reward loss / pi, bounded moving average);
  odm_smoothed   ODM as its repository runs it (`SmoothedMeanWeightUpdater`: reward e^loss).
Both ODM arms update every 5 steps (the repository: every step; each update here is a
prefetch barrier). Headline: the mean eval loss over the five clean domains.

Prediction, written before the run (first written for clean + noise only; the data changed to
loss_planted's before any run, so that one uniform baseline serves loss-based, RHO-1, DoReMi
and ODM): ODM's reward is the training loss, and noise has the highest loss throughout
(~6.6-6.9 nats against ~4-5), so both variants raise the noise domain's weight: a property of
the method, not a bug; the memorised duplicated documents have the lowest loss, so their weight
falls. odm_smoothed's e^loss reward is unbounded, so noise takes nearly all the weight that
exploration leaves (about 0.7 by the end, from eps_t = sqrt(ln 7 / (7 t)) at t = 100 rounds),
and the clean mean is clearly worse than uniform (by 0.1 nats or more). odm_exp3 stays within
a few points of uniform: no clear difference, or slightly worse.

Measured (2026-12-01, 2-core CPU, 5 paired seeds, two runs at a time), clean mean: odm_exp3
+0.028 [+0.012, +0.044] (slightly worse, as predicted), noise's weight 0.143 -> 0.174 by the
end; odm_smoothed +0.300 [+0.260, +0.340] (worse, as predicted), noise 0.685 by the end (0.49
averaged over training) and every other domain at the exploration floor, 0.052: duplicated's
weight does not fall below the clean domains' (predicted: wrong). docs/reproductions.md has
the tables and the weights over training.
"""

from configs import testbed
from configs.compare import base
from configs.compare.loss_planted import PLANTED_MIX

ODM = "reweight.mixture=odm;reweight.odm.update_every=5;reweight.odm.smoothing=0.9"


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.overrides = f"data.domains={PLANTED_MIX}"
    c.compare.arms.uniform = base.arm("configs/testbed.py")
    c.compare.arms.odm_exp3 = base.arm("configs/testbed.py", f"{ODM};reweight.odm.variant=exp3")
    c.compare.arms.odm_smoothed = base.arm("configs/testbed.py",
                                           f"{ODM};reweight.odm.variant=smoothed_mean")
    c.compare.domains = testbed.CLEAN
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
