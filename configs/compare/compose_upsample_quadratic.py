"""Composition: end-of-training upsampling with loss-based Quadratic weighting, against each
alone and the natural mixture (issue 34, part 2). A mixture schedule (which domains late
batches draw) and an in-step weighter (how much each row's loss counts): do they add?

  make testbed
  python main.py --mode=compare --config=configs/compare/compose_upsample_quadratic.py \
      --workdir=workdirs/cmp_compose_upsample_quadratic

The data and schedule of configs/compare/upsample_wsd.py (five clean domains plus `target`,
natural proportions, WSD with the decay over the last 30% of 500 steps), seeds 0-2 paired.
Arms:
  natural            the natural proportions, every row alike (the baseline);
  up_15              the target at 10x its weight for the last 15% of the steps;
  quadratic          natural proportions, loss-based Quadratic (r = 1, d = 1, 25 warm-up
                     steps: loss_planted's), which weighs the rows of mid-range loss up;
  up_15_quadratic    both.
Headline: the target's eval loss; the clean mean is the general loss.

Prediction, written before any of these runs (2026-12-07): Quadratic found nothing to gain on
clean text (six real domains: +0.030 [+0.004, +0.056], worse) nor on planted junk (no clear
difference); here the target is a few rows per batch late in training, and Quadratic's weight
depends on where a row's loss falls in its batch, not on its domain, so it neither helps nor
hurts the target much. quadratic vs natural on the target within +-0.05 (no clear
difference), on the clean mean 0 to +0.04; up_15 reproduces upsample_wsd (-0.55 then;
-0.4 to -0.7 here); up_15_quadratic vs up_15 within +-0.05 on the target (no clear
difference): the combination does not beat upsampling alone.

Measured (2026-12-07, 3 paired seeds, the 2-core CPU), on the target: up_15 -0.545 [-0.848,
-0.242]; quadratic +0.407 [+0.320, +0.495] worse (predicted +-0.05: wrong); up_15_quadratic
against up_15 +0.180 [+0.006, +0.354] worse (predicted +-0.05: wrong). Quadratic weighed the
rare target's rows ~0.5 (books ~1.05) on the logged steps. docs/reproductions.md.
"""

from configs.compare import base, loss_planted, upsample_wsd


def get_config():
    c = base.get_config()
    u = upsample_wsd.get_config().compare
    quadratic = (f"{loss_planted.LOSS_BASED};reweight.loss_based.strategy=quadratic;"
                 "reweight.loss_based.r=1.0")
    c.compare.baseline = "natural"
    c.compare.overrides = u.overrides
    c.compare.arms.natural = u.arms.natural
    c.compare.arms.up_15 = u.arms.up_15
    c.compare.arms.quadratic = base.arm("configs/testbed.py",
                                        f"{u.arms.natural.overrides};{quadratic}")
    c.compare.arms.up_15_quadratic = base.arm("configs/testbed.py",
                                              f"{u.arms.up_15.overrides};{quadratic}")
    c.compare.domains = "target"
    c.compare.seeds = "0,1,2"
    c.compare.eval_rows = 256
    return c
