"""Composition: RHO-1's token selection on DoReMi's mixture, against each alone and uniform
(issue 34, part 2). A mixture method (which domains a batch draws) and an in-step one (which of
a batch's tokens count) act on different things: do their gains add?

  make testbed
  # optional: reuse configs/compare/doremi_planted.py's runs (the same configs and seeds)
  D=workdirs/cmp_compose_doremi_rho1; S=$PWD/workdirs/cmp_doremi_planted
  mkdir -p $D/runs $D/prerequisites
  ln -s $S/runs/uniform $S/runs/doremi $D/runs/
  ln -s $S/prerequisites/reference $S/prerequisites/proxy $D/prerequisites/
  python main.py --mode=compare --config=configs/compare/compose_doremi_rho1.py --workdir=$D

The planted data of configs/compare/loss_planted.py (five clean domains, `duplicated`,
`noise`), the testbed model, 500 steps, seeds 0-4 paired. Prerequisites: DoReMi's reference
(uniform, seed 0) and paper-form proxy (as configs/compare/doremi_planted.py), and RHO-1's
reference `clean` (the testbed on the five clean domains, as configs/compare/rho1_planted.py).
Arms:
  rho1          uniform mixture, RHO-1 keeping 60% of the tokens by excess over `clean`;
  doremi_rho1   the proxy's averaged weights (fixed), RHO-1 as above;
  uniform       (the baseline) and doremi (the proxy's weights, every token), as in
                doremi_planted. The new arms come first, so that a doremi_planted still
                training finishes its seeds before this one reaches them.
Headline: the mean eval loss over the five clean domains. FLOPs count RHO-1's reference
forward in every step (a third of a step); DoReMi's reference and proxy runs are one-off costs
shared by every run on its mixture, not counted.

Prediction, written before any of these runs (2026-12-07; doremi_planted's final arms were not
yet read): RHO-1 alone reproduces rho1_planted, -0.20 to -0.30 (measured then -0.251). It keeps
noise to 3-5% of its tokens already, so most of what DoReMi's mixture buys (noise 0.14 -> ~0.03
of the rows, more code and reference) RHO-1 has bought: the combination is sub-additive.
doremi_rho1 against rho1: -0.06 to +0.03, no clear difference with 5 seeds (it gains the rows
DoReMi moves from noise to clean text, ~10% more clean rows, and loses those it moves to
`duplicated` (0.22 of the rows), which RHO-1 does not drop). Against doremi alone: better by
0.1-0.25. At equal FLOPs (RHO-1's steps cost 4/3) the combination's steps to uniform's final
loss are 0.55-0.7, its FLOPs to it 0.75-0.95.

Measured (2026-12-07, 2-core CPU, 5 seeds; uniform, doremi, reference and proxy linked from
doremi_planted's runs), clean mean against uniform: rho1 -0.256 [-0.331, -0.181] (as
predicted), doremi -0.153 [-0.227, -0.080], doremi_rho1 -0.292 [-0.346, -0.238], uniform's final
loss at 0.54 of its steps and 0.72 of its FLOPs (predicted 0.55-0.7 and 0.75-0.95). The
combination against each part, paired: against rho1 -0.035 [-0.064, -0.006] (better; predicted
-0.06 to +0.03 and no clear difference: the size in range, the verdict not), at 0.88 of rho1's
FLOPs to its final loss; against doremi -0.138 [-0.235, -0.042] (better, as predicted).
Sub-additive, as predicted: the parts' effects sum to -0.41. Noise +0.96 worse (rho1 alone
+0.53), duplicated -0.12 better.
"""

from configs import testbed
from configs.compare import base, doremi_planted, rho1_planted


def get_config():
    c = base.get_config()
    doremi, rho1 = doremi_planted.get_config().compare, rho1_planted.get_config().compare
    c.compare.baseline = "uniform"
    c.compare.overrides = doremi.overrides
    c.compare.prerequisites.reference = doremi.prerequisites.reference
    c.compare.prerequisites.proxy = doremi.prerequisites.proxy
    c.compare.prerequisites.clean = base.arm("configs/testbed.py",
                                             f"data.domains={testbed.CLEAN}")
    rho1_overrides = rho1.arms.rho1.overrides.replace("@reference", "@clean")
    c.compare.arms.rho1 = base.arm("configs/testbed.py", rho1_overrides)
    c.compare.arms.doremi_rho1 = base.arm(
        "configs/testbed.py", f"{doremi.arms.doremi.overrides};{rho1_overrides}")
    c.compare.arms.uniform = doremi.arms.uniform
    c.compare.arms.doremi = doremi.arms.doremi
    c.compare.domains = testbed.CLEAN
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
