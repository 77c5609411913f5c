"""RHO-1 (Lin et al., NeurIPS 2024) vs uniform on clean text mixed with planted junk.

  make testbed
  python main.py --mode=compare --config=configs/compare/rho1_planted.py \
      --workdir=workdirs/cmp_rho1_planted

The reference, a prerequisite trained first (DIR/prerequisites/reference): the testbed model
on the five clean domains, seed 0.

The same data as configs/compare/loss_planted.py: the five clean domains plus `duplicated` and
`noise` (data/planted.py), uniformly, 2/7 of the rows junk. Arms, paired by seed:
  uniform   every loss token counts;
  rho1      each step trains on the 60% of the global batch's loss tokens whose excess loss
            (model minus reference, reweight/rho1.py) is highest; the reference is the
            testbed model trained on the clean domains only (the oracle arm of loss_planted).
Headline: the mean eval loss over the five clean domains.

Prediction, written before the run: the reference never saw the junk, so its loss on noise
tokens (~8.2-8.5 nats, the clean-only runs' eval) is above the trained model's (which learns
the noise's near-uniform distribution, ~6.7), and on the memorised duplicated documents it is
well above the model's too: both kinds get negative excess and are dropped first (the noise
and duplicated domains' kept_share near 0 once the model has learnt them). RHO-1 then trains
mostly on clean tokens, weighted to those the reference knows and the model does not yet:
better than uniform on the clean mean, by 0.03-0.1 nats (the clean-only oracle of
loss_planted is the bound), and clearly worse on the noise and duplicated domains' own loss.

Measured (2026-12-01, 2-core CPU, 5 seeds): clean mean -0.251 [-0.312, -0.191] (better:
larger than predicted), uniform's final loss at 0.60 of its steps; noise +0.535 worse and 3-5%
of the kept tokens (dropped, as predicted); duplicated -0.066 [-0.125, -0.007] better and
13-15% of the kept tokens (not dropped: that part of the prediction was wrong). The uniform
runs are loss_planted's (same config and seeds). docs/reproductions.md has the tables.
"""

from configs import testbed
from configs.compare import base
from configs.compare.loss_planted import PLANTED_MIX


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.overrides = f"data.domains={PLANTED_MIX}"
    c.compare.prerequisites.reference = base.arm("configs/testbed.py",
                                                 f"data.domains={testbed.CLEAN}")
    c.compare.arms.uniform = base.arm("configs/testbed.py")
    c.compare.arms.rho1 = base.arm(
        "configs/testbed.py", "reweight.instance=rho1;reweight.rho1.keep=0.6;"
                              "reference.workdir=@reference")
    c.compare.domains = testbed.CLEAN
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
