"""The cross-entropy-difference filter (Moore & Lewis 2010) vs a random draw of the same pool,
on the target domain's loss, 5 paired seeds, on the testbed (configs/testbed.py).

  make testbed
  python main.py --mode=compare --config=configs/compare/xent_diff.py --workdir=workdirs/cmp_xent

Two references, prerequisites trained first (DIR/prerequisites/): `general`, the testbed on
the pool, and `target`, the testbed on the planted target (the first 1 MB of math's train
split).

The pool: the five clean domains and math, uniformly (1/6 math). Arms, paired by seed, both
training 500 x 16 rows, each row once:
  random     the rows as drawn (selection_ratio 1: the pool is the stage, scored but not cut);
  xent_diff  a 2x pool, keeping the half with the largest l_general(x) - l_target(x).
Headline: math's eval loss (its validation split is the target's validation split).

Prediction, written before the run: the kept half is mostly math (a 2x pool holds about
2,700 math rows for 8,000 kept: at most a third math, against a sixth for random) plus the
most math-like technical and reference rows, so math's loss is lower with xent_diff, by
0.1-0.25 nats (about twice the math tokens; the testbed model is far from saturating math),
and the mean over the other five domains higher, by a similar amount.

Measured (2026-12-01, 2-core CPU, 5 seeds, two runs at a time): math -0.449 [-0.531, -0.368]
(better: the direction predicted, twice the size), uniform-random's final math loss at 0.53 of
the steps; the kept half is 33% math (every math row of the pool) and 24% technical; reference
+0.525 and code +0.500 worse, dialogue +0.170 worse, technical -0.138 better, books no clear
difference. Compute: both arms score their pool with both references (the random arm's 8,000
rows are scored and not cut), so the filter's two reference forwards over the 2x pool cost
1.33x the training FLOPs; FLOPs to the random arm's final math loss 1.12 of the random arm's
total, 1.86 of plain training's (8.05e12).
"""

from configs import testbed
from configs.compare import base

POOL = "books,reference,code,dialogue,technical,math"
XENT = ("reweight.selector=ref_select;reweight.ref_select.mode=xent_diff;"
        "reference.general=@general;reference.target=@target")


def get_config():
    c = base.get_config()
    c.compare.baseline = "random"
    c.compare.prerequisites.general = base.arm("configs/testbed.py", f"data.domains={POOL}")
    c.compare.prerequisites.target = base.arm("configs/testbed.py",
                                              f"data.domains={testbed.domains('target')}")
    c.compare.overrides = f"data.domains={POOL};{XENT}"
    c.compare.arms.random = base.arm("configs/testbed.py",
                                     "reweight.ref_select.selection_ratio=1.0")
    c.compare.arms.xent_diff = base.arm("configs/testbed.py",
                                        "reweight.ref_select.selection_ratio=0.5")
    c.compare.domains = "math"
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
