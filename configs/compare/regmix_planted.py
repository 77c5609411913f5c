"""RegMix (Liu et al. 2024), the last step: the sweep's chosen mixture trained at the testbed's
scale against uniform, 5 paired seeds, on the held-out target.

  make testbed
  python main.py --mode=compare --config=configs/compare/regmix_planted.py \
      --workdir=workdirs/cmp_regmix_planted
  # its sweep (48 proxies and the transfer runs) two at a time:
  #   --config.compare.prerequisites.sweep.overrides=sweep.backend=ray

The sweep (configs/sweep_regmix_planted.py) is this comparison's prerequisite, run once in
DIR/prerequisites/sweep/: proxies on mixtures of the five clean domains, `noise` and
`duplicated`, its target the eval loss on the held-out `target` domain (the first 1 MB of
math, never trained on). Arms, paired by seed, at the testbed's scale (1.2M params, 500 steps):
  uniform   the seven training domains, 1/7 each;
  regmix    the same domains on the sweep's mixture.txt.
Headline: the eval loss on `target`, the sweep's objective (the paper's: the downstream loss
the regression was fitted to); the clean domains' losses are in the table too.

Prediction, written before this comparison ran (the sweep's chosen mixture was measured the
day before: technical 0.253, duplicated 0.210, noise 0.190, code 0.102, reference 0.098,
books 0.084, dialogue 0.063; over the 48 proxies technical's weight had the strongest rank
correlation with a low target loss, -0.56): regmix has a lower target loss than uniform by
0.03-0.10 nats (technical text, with its notation and digits, is math's nearest neighbour
here), and a worse clean mean by 0.02-0.05 (0.60 of its rows are clean against 5/7 for
uniform; books and dialogue lose the most).

Measured (2026-12-02, 2-core CPU, 5 paired seeds; the sweep's transfer runs skipped for time):
target -0.022 [-0.060, +0.016] no clear difference (prediction not shown); reference +0.118,
code +0.224, dialogue +0.156 worse, technical -0.131 and duplicated -0.086 better.
"""

from configs import testbed
from configs.compare import base
from configs.sweep_regmix_planted import JUNK

SWEEP = "configs/sweep_regmix_planted.py"


def get_config():
    c = base.get_config()
    c.compare.prerequisites.sweep = base.prerequisite(SWEEP, mode="sweep")
    c.compare.baseline = "uniform"
    c.compare.overrides = (f"data.domains={testbed.domains(*testbed.CLEAN.split(','), *JUNK)};"
                           f"eval.domains={testbed.domains('target')}")
    c.compare.arms.uniform = base.arm("configs/testbed.py")
    c.compare.arms.regmix = base.arm("configs/testbed.py", "data.weights=file:@sweep/mixture.txt")
    c.compare.domains = "target"
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
