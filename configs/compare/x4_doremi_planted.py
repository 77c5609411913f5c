"""DoReMi (the paper's form) on planted junk one scale up: configs/compare/doremi_planted.py at
the testbed_x4 scale (4.45M parameters, 1000 steps), its reference and proxy at that scale
too, 3 paired seeds; the resampling form is left out (a third proxy and three more runs).

  make testbed
  python main.py --mode=compare --config=configs/compare/x4_doremi_planted.py \
      --workdir=workdirs/cmp_x4_doremi_planted

The reference is the x4 model on the planted mix, uniform, seed 0 (identical to the uniform
arm's seed 0, and to x4_rho1_planted's and x4_loss_planted's uniform runs:
benchmarks/reproduce.py copies such runs between comparisons); the proxy is the x4 model with
alpha updated every step (reweight/doremi.py); the arms train from scratch on uniform and on
the proxy's averaged weights. About 5 new runs x ~15 min = 1.3 h of 2 cores, resumable.

Prediction, written before any x4 DoReMi run (2026-12-07), from the testbed's verdict (clean
mean -0.153 [-0.227, -0.080], paper form, 5 seeds): the mechanism carries over. A larger
reference and proxy still sit at noise's floor (~6.7 nats) together, so noise's clipped excess
is their fluctuation and its alpha falls to c/K again (averaged weight under 0.06); the larger
proxy memorises the duplicated documents sooner, so duplicated's peak comes earlier and its
average is at most the testbed's 0.224; the clean domains take the rest. Trained on those
weights, the x4 model is better than uniform on the clean mean by 0.08-0.20 nats (verdict
better, as on the testbed; the effect 0.5-1.3x the testbed's: a larger model gains about as
much from ~10% more clean rows as a smaller one), worse on noise, better on duplicated.
Rank agreement: the two arms' order is the testbed's.

Measured (2026-12-07, 2-core CPU, 3 paired seeds, two runs at a time): the proxy's averaged
weights books 0.059, reference 0.125, code 0.210, dialogue 0.101, technical 0.125, duplicated
0.368, noise 0.011 (noise right; duplicated's peak earlier, 0.98 at step 20, right; its average
above 0.224, wrong). Clean mean +0.067 [-0.023, +0.157], no clear difference, every seed worse
(+0.106, +0.061, +0.034; predicted better by 0.08-0.20: wrong, the verdict does not carry over
and the arms' order reverses); ahead until step ~600, behind after. Noise +0.254 worse,
duplicated -2.656 better (memorised), books +0.377 worse. The x4 reference fits the duplicated
documents (2.92 nats, testbed 4.15), and the mixture gives them 0.37 of the rows and the clean
domains 0.62, less than uniform's 0.71. docs/reproductions.md has the tables.
"""

from configs import testbed_x4
from configs.compare import doremi_planted


def get_config():
    c = testbed_x4.scaled(doremi_planted.get_config())
    del c.compare.arms["doremi_alpha"]
    del c.compare.prerequisites["proxy_alpha"]
    return c
