"""Loss-based reweighting on planted junk one scale up: configs/compare/loss_planted.py at the
testbed_x4 scale (4.45M parameters, 1000 steps), 3 paired seeds.

  make testbed
  python main.py --mode=compare --config=configs/compare/x4_loss_planted.py \
      --workdir=workdirs/cmp_x4_loss_planted

The testbed's arms but Extremes and clean-only (uniform, LinUpper r=0.4, Quadratic r=1), data
and headline (the mean eval loss over the five clean domains); the weighting's warm-up scaled
with the steps (25 -> 50). The uniform runs are x4_rho1_planted's (same config and seeds; link
runs/uniform/seedN to them, or let benchmarks/reproduce.py copy them): 2 arms x 3 seeds x
~15 min = 1.5 h of 2 cores, resumable. Left out before any x4 loss run (2026-12-07), to fit the
runs into the time there was: Extremes, whose testbed verdict was the clearest of the
strategies (+0.345 [+0.294, +0.397] against uniform, worse), so it adds the least to the open
question, Quadratic's null; and clean-only, the oracle, of which x4_rho1_planted's reference
is already one seed (the same training on the five clean domains, seed 0: clean mean 3.382).

Prediction, written before the run. On the testbed (5 seeds) Quadratic was no clear difference
(-0.009 [-0.070, +0.052]), LinUpper clearly worse (+0.266), clean-only the bound (-0.200).
The seed paper's open question here is whether Quadratic's null is a matter of scale. At 4x
the parameters the model memorises the duplicated rows sooner and reaches a lower loss on the
clean text, while noise stays at ~ln 1024 = 6.9 nats: the junk sits further out at both ends
of the per-row loss distribution, which is what Quadratic down-weights. So Quadratic moves
towards clean-only, but only part way (its weights are bounded, the junk is 2/7 of the rows):
-0.02 to -0.06, with 3 seeds most likely still an interval touching 0 (no clear difference);
LinUpper worse again, by more (+0.25 to +0.45: it up-weights noise, the highest-loss rows, and
a larger model has more clean loss to lose); clean-only (written when it was still an arm)
better by about as much as on the testbed or more (-0.2 to -0.3). Rank agreement across the two
scales, for the three arms run: the testbed's order, Quadratic, uniform, LinUpper (Quadratic
and uniform may swap: on the testbed they were within noise of each other).

Measured (2026-12-07, 2-core CPU, 3 paired seeds, two runs at a time), clean mean: Quadratic
-0.024 [-0.082, +0.033], no clear difference (inside the predicted range, its interval touching
0: right), books, dialogue and technical each better by 0.05-0.07; LinUpper +0.300 [+0.254,
+0.346] worse (right, 1.13x the testbed's); the order quadratic, uniform, linupper (right).
Quadratic weighed noise rows 0.58-0.61 and clean rows 0.85-1.22. Quadratic's null stays a null
at 3.8x the parameters. docs/reproductions.md has the tables.
"""

from configs import testbed_x4
from configs.compare import loss_planted


def get_config():
    c = testbed_x4.scaled(loss_planted.get_config())
    del c.compare.arms["extremes"]
    del c.compare.arms["clean_only"]
    for spec in c.compare.arms.values():
        spec.overrides = spec.overrides.replace("reweight.loss_based.warmup_steps=25",
                                                "reweight.loss_based.warmup_steps=50")
    return c
