"""Loss-based instance reweighting (Sow et al., ICLR 2025) on clean text mixed with planted junk.

  make testbed
  python main.py --mode=compare --config=configs/compare/loss_planted.py \
      --workdir=workdirs/cmp_loss_planted
  # in resumable pieces (finished runs are skipped; runs go seed by seed):
  #   ... --config.compare.seeds=0,1   then   ... --config.compare.seeds=0,1,2,3,4

The testbed (configs/testbed.py: vocabulary 1024, 500 steps of 16 x 128 tokens) trains on the
five clean domains plus two planted ones (data/planted.py), uniformly: `duplicated` (8 books
documents repeated) and `noise` (uniformly random tokens), 2/7 of the rows junk. Arms, paired
by seed (the same params and batches; only the weights differ):
  uniform     the plain mean over rows;
  linupper    LinUpper, r = 0.4 (the paper's setting): weight grows with the row's loss,
              up to e^(2d/r) = e^5 between the highest- and lowest-loss rows of a batch;
  quadratic   Quadratic, r = 1 (the paper's 124M setting): mid-range losses weigh most
              (up to e^1 over both extremes);
  extremes    Extremes, r = 0.4: weight grows with the distance of the row's loss from the
              middle of the batch's range, both ways (added after the arms above had run);
  clean_only  the oracle: the same steps on the five clean domains alone (the junk is still
              evaluated, as eval-only domains).
All loss-based arms have a uniform warm-up of 25 steps (5%, as the paper's 1000 of 20k).
The headline is the mean eval loss over the five clean domains (compare.domains).

Prediction, written before the run: noise rows have the highest loss in every batch (~6.6 nats
against ~4-5), duplicated rows the lowest once memorised. LinUpper puts most of each batch's
weight on the noise rows, so it learns the clean domains more slowly: clearly worse than
uniform on the clean mean (by more than 0.1 nats). Quadratic down-weights both extremes, so
clean rows carry more of the gradient: better than uniform, by 0.02-0.06 nats, and behind the
clean-only oracle, which sees 7/5 as many clean rows and should be best (0.05-0.15 below
uniform). On the duplicated domain, LinUpper and Quadratic are worse than uniform (they
down-weight it); on noise, LinUpper is the lowest (it trains on noise the most) but every
arm stays near the noise's entropy.

Prediction for extremes, written before its runs (after the others'): it up-weights both ends
of each batch's losses, which here are both junk: noise on top, memorised duplicated rows at
the bottom. So it is clearly worse than uniform on the clean mean, by 0.1 nats or more, and
better than uniform on duplicated (the only arm besides uniform that keeps training on it).

Measured (2026-12-01, 2-core CPU, 5 seeds), clean mean: LinUpper +0.266 [+0.215, +0.318]
(worse, as predicted), Quadratic -0.009 [-0.070, +0.052] (no clear difference: predicted
better, wrong), clean-only -0.200 [-0.262, -0.137] (better, as predicted). Duplicated:
LinUpper +0.364 worse (predicted), Quadratic no clear difference (predicted worse: wrong).
Noise: LinUpper -0.027 (the lowest, predicted). Extremes: clean mean +0.345 [+0.294, +0.397]
(worse, as predicted), duplicated +0.527 worse (predicted better: wrong), noise -0.028.
docs/reproductions.md has the tables.
"""

from configs import testbed
from configs.compare import base

JUNK = ("duplicated", "noise")
PLANTED_MIX = testbed.domains(*testbed.CLEAN.split(","), *JUNK)
LOSS_BASED = ("reweight.instance=loss_based;reweight.loss_based.warmup_steps=25;"
              "reweight.loss_based.d=1.0")


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.overrides = f"data.domains={PLANTED_MIX}"
    c.compare.arms.uniform = base.arm("configs/testbed.py")
    c.compare.arms.linupper = base.arm(
        "configs/testbed.py",
        f"{LOSS_BASED};reweight.loss_based.strategy=linupper;reweight.loss_based.r=0.4")
    c.compare.arms.quadratic = base.arm(
        "configs/testbed.py",
        f"{LOSS_BASED};reweight.loss_based.strategy=quadratic;reweight.loss_based.r=1.0")
    c.compare.arms.extremes = base.arm(
        "configs/testbed.py",
        f"{LOSS_BASED};reweight.loss_based.strategy=extremes;reweight.loss_based.r=0.4")
    c.compare.arms.clean_only = base.arm(
        "configs/testbed.py",
        f"data.domains={testbed.CLEAN};eval.domains={testbed.domains(*JUNK)}")
    c.compare.domains = testbed.CLEAN
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
