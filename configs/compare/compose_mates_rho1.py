"""Composition: MATES's row selection with RHO-1's token selection, against each alone and the
pool as drawn (issue 34, part 2). A stage selector (which rows a stage trains on) and an
in-step weighter (which of a batch's tokens count): do their gains on a target add?

  make testbed
  python main.py --mode=compare --config=configs/compare/compose_mates_rho1.py \
      --workdir=workdirs/cmp_compose_mates_rho1

The pool of configs/compare/mates_planted.py (the five clean domains, `target`, and the junk
`noise`, `duplicated`, `shuffled`, 1/9 each), the testbed model, 500 steps, seeds 0-2 paired.
Prerequisite `target`: the testbed on the target alone (mates_planted's), which is RHO-1's
reference here: the token's excess over a model of the data one wants, as RHO-1's paper
trains its reference on high-quality data. Arms:
  none         the pool as drawn (the baseline);
  mates        MATES as in mates_planted (first-order probe, 192 probes, 20% of a 5x pool by
               Gumbel-top-k with tau 0.5, stages of 125 steps; its probes take plain steps);
  rho1         the pool as drawn, RHO-1 keeping 60% of each batch's tokens by excess loss over
               `target`;
  mates_rho1   both: MATES chooses the rows, RHO-1 the tokens among them.
Headline: the target's eval loss. FLOPs count MATES's selections and RHO-1's reference forward
(a third of each step).

Prediction, written before any of these runs (2026-12-07): the target reference has a low loss
on target tokens and a high one everywhere else (it saw nothing else), so the excess ranks
target tokens first and noise, never learnt by the reference, last. RHO-1 alone keeps every
target token but the kept 60% is still mostly other text (target is 1/9 of the tokens): better
than none on the target by 0.1-0.3. MATES alone reproduces mates_planted (-0.57 then; 0.4-0.7
here, 3 seeds). Combined, MATES raises the target to ~40% of the rows and RHO-1 then gives it
more than half of the kept tokens: mates_rho1 better than mates by 0.05-0.25 (complementary,
not merely overlapping: neither alone puts most of the gradient on the target), better than
rho1 by 0.3 or more. With 3 seeds the first of these may be no clear difference. On the clean
mean every arm is worse than none, mates_rho1 the most.

Measured (2026-12-07, 3 paired seeds, the 2-core CPU), on the target: mates -0.600 [-0.710,
-0.489] (as predicted), rho1 -0.346 [-0.497, -0.194] (a little larger than predicted),
mates_rho1 -0.819 [-1.010, -0.627]; against mates -0.219 [-0.300, -0.138] (as predicted, and
clear), against rho1 -0.473 [-0.589, -0.357] (as predicted); at mates's total FLOPs -0.102
[-0.181, -0.024]. RHO-1 gave the target 0.48-0.52 of the kept tokens on MATES's rows (about
half, not more), 0.15-0.16 on the pool. Every arm worse on the clean mean, mates_rho1 the most
(+0.494). docs/reproductions.md.
"""

from configs.compare import base, mates_planted


def get_config():
    c = base.get_config()
    m = mates_planted.get_config().compare
    rho1 = "reweight.instance=rho1;reweight.rho1.keep=0.6;reference.workdir=@target"
    c.compare.baseline = "none"
    c.compare.overrides = m.overrides
    c.compare.prerequisites.target = m.prerequisites.target
    c.compare.arms.none = m.arms.none
    c.compare.arms.mates = m.arms.mates
    c.compare.arms.rho1 = base.arm("configs/testbed.py", rho1)
    c.compare.arms.mates_rho1 = base.arm("configs/testbed.py", f"{m.arms.mates.overrides};{rho1}")
    c.compare.domains = "target"
    c.compare.seeds = "0,1,2"
    c.compare.eval_rows = 256
    return c
