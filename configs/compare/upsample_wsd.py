"""End-of-training upsampling (Blakeney et al. 2024, "Does your data spark joy?") with a
warm-up-stable-decay schedule, on the testbed (configs/testbed.py), 5 paired seeds.

  make testbed
  python main.py --mode=compare --config=configs/compare/upsample_wsd.py \
      --workdir=workdirs/cmp_upsample_wsd

The five clean domains plus `target` (the first 1 MB of math, data/planted.py) in their natural
token proportions (the target ~0.8%), trained with WSD (50 warm-up steps, constant lr, then a
linear decay to 0 over the last 30% of the 500 steps). Arms, paired by seed (the same params,
and the same batches until the switch):
  natural     the natural proportions throughout;
  up_15       the target at 10x its natural weight (~7%, the rest renormalised) for the last
              15% of the steps: the switch inside the decay, as the paper places it;
  up_30       the same for the last 30%: the switch where the decay starts;
  up_all      the same for the whole run (uniform upsampling, the paper's comparison).
Headline: the target's eval loss; the mean over the clean domains is the general loss.

Prediction, written before the run: the target's loss falls with the number of target rows
seen (natural ~60, up_15 ~140, up_30 ~220, up_all ~580 of 8,000), but the late ones count
more, at the low lr of the decay, and are not forgotten: up_15 better than natural by
0.1-0.3 nats, up_30 a little better than up_15, up_all the best on the target by a smaller
margin than its 2.5x more target rows over up_30 suggests. On the clean mean: up_15 and up_30
within 0.01-0.02 of natural (no clear difference or slightly worse), up_all worse by a few
hundredths (7% of every batch taken from them). The paper's finding: most of the target gain
of upsampling for a fraction of its general cost, with the switch late in training.

Measured (2026-12-01, 2-core CPU, seeds 0-4: 5 paired), target: up_15 -0.554 [-0.678, -0.430]
(predicted 0.1-0.3: right direction, larger), up_30 -0.906 [-1.051, -0.760] (better than
up_15 by more than "a little"), up_all -1.299 [-1.392, -1.206] (the best, with less gain per
target row: as predicted). Clean mean: up_15 +0.015 [+0.011, +0.019] and up_30 +0.021 [+0.013,
+0.029] (predicted within 0.01-0.02, slightly worse: right), up_all +0.006 [-0.042, +0.054]
(predicted worse by a few hundredths: not shown).
"""

from configs import testbed
from configs.compare import base

TRAIN = testbed.domains(*testbed.CLEAN.split(","), "target")
UPSAMPLE = "reweight.mixture=upsample;reweight.upsample.base=natural;" \
           "reweight.upsample.domains=target;reweight.upsample.factor=10.0"


def get_config():
    c = base.get_config()
    c.compare.baseline = "natural"
    c.compare.overrides = (f"data.domains={TRAIN};"
                           "train.schedule=wsd;train.decay_fraction=0.3")
    c.compare.arms.natural = base.arm("configs/testbed.py", "reweight.mixture=natural")
    for name, fraction in (("up_15", 0.15), ("up_30", 0.3), ("up_all", 1.0)):
        c.compare.arms[name] = base.arm(
            "configs/testbed.py", f"{UPSAMPLE};reweight.upsample.last_fraction={fraction}")
    c.compare.domains = "target"
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
