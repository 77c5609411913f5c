"""The cross-entropy-difference filter (Moore & Lewis 2010) vs a random half of the same pool,
on the target domain's loss, 5 paired seeds. NOT YET RUN: it waits for the small testbed
another issue builds.

  python main.py --config=configs/doremi_reference.py --workdir=workdirs/doremi_reference
  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_math
  python main.py --mode=compare --config=configs/compare/xent_diff.py --workdir=workdirs/cmp_xent

Arms: `random` (configs/ref_xent_diff.py with selection_ratio=1: the pool as drawn, one stage)
and `xent_diff` (keep the half of a 2x pool with the largest l_general - l_target); both
train the same number of rows.

Prediction, written before any run: math eval loss lower with xent_diff (the kept rows are
mostly math and math-like text), the other domains' loss higher; the mean over the training
domains no better than random.
"""

from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.baseline = "random"
    c.compare.arms.random = base.arm("configs/ref_xent_diff.py",
                                     "reweight.ref_select.selection_ratio=1.0")
    c.compare.arms.xent_diff = base.arm("configs/ref_xent_diff.py")
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
