"""DoReMi (Xie et al. 2023), per-token excess, on clean text mixed with planted junk.

  make testbed
  # optional, to reuse loss_planted's uniform runs (and its seed 0 as the reference):
  mkdir -p workdirs/cmp_doremi_planted/runs workdirs/cmp_doremi_planted/prerequisites
  ln -s ../../cmp_loss_planted/runs/uniform workdirs/cmp_doremi_planted/runs/uniform
  ln -s ../../cmp_loss_planted/runs/uniform/seed0 workdirs/cmp_doremi_planted/prerequisites/reference
  python main.py --mode=compare --config=configs/compare/doremi_planted.py \
      --workdir=workdirs/cmp_doremi_planted

The data of configs/compare/loss_planted.py: the five clean domains plus `duplicated` and
`noise` (data/planted.py), 2/7 of the rows junk when uniform. DoReMi's three steps at one
size (the paper: a 280M reference and proxy, an 8B final model), the first two prerequisites
trained before the arms: the reference is the uniform run; the proxy trains with alpha updated
every 10 steps from the clipped per-token excess max(l_proxy - l_ref, 0) on its own batch
(eta 1, smoothing c = 1e-3); the final runs train from scratch on the proxy's averaged alpha
(its mixture.txt). Arms, paired by seed:
  uniform   loss_planted's uniform runs (same config, same seeds);
  doremi    the proxy's averaged weights, fixed.
Headline: the mean eval loss over the five clean domains.

Prediction, written before the run: both models learn noise's near-uniform distribution in
the first tens of steps, after which its per-token excess is only the clipped part of two
models' fluctuations around the same floor (~0.1 nats), against 0.3-1 nats on the clean
domains while the proxy is behind the reference; the duplicated documents, memorised by the
reference, have the largest excess early and fall once the proxy has memorised them too. So
noise's alpha falls towards c/K (~1.4e-4) within the first half, duplicated's rises first and
then falls, and the averaged weights give noise under 0.05 (uniform: 0.143) and duplicated
under uniform. Trained on them the final runs beat uniform on the clean mean by 0.1-0.2 nats
(the clean-only oracle, -0.200, is the bound) and are worse on noise.

Measured (2026-12-01, 2-core CPU, 5 seeds, two runs at a time): the proxy's averaged weights
books 0.071, reference 0.170, code 0.189, dialogue 0.149, technical 0.183, duplicated 0.197,
noise 0.041. Noise's alpha fell to 3e-4 by step 60 (c/K = 1.4e-4, as predicted), then came
back to ~0.05: once the proxy stops seeing noise its noise loss rises over the reference's
and the clipped excess with it (0.39 at step 320). Duplicated's rose first (0.34 at step 120)
and fell (0.06 by the end), as predicted, but its average, 0.197, is above uniform's (predicted
below: wrong). The final runs on those weights: clean mean -0.116 [-0.158, -0.074] (better,
as predicted 0.1-0.2), uniform's final loss at 0.77 of its steps (the reference and proxy
runs, 2x a run's FLOPs, not counted); every clean domain better or no clear difference (code
-0.230, technical -0.155, reference -0.115); duplicated -0.165 better, noise +0.082 worse.
"""

from configs import testbed
from configs.compare import base
from configs.compare.loss_planted import PLANTED_MIX


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.overrides = f"data.domains={PLANTED_MIX}"
    c.compare.prerequisites.reference = base.arm("configs/testbed.py",
                                                 f"data.domains={PLANTED_MIX}")
    c.compare.prerequisites.proxy = base.arm(
        "configs/testbed.py", f"data.domains={PLANTED_MIX};reweight.mixture=doremi;"
                              "reweight.doremi.excess=token;reference.workdir=@reference")
    c.compare.arms.uniform = base.arm("configs/testbed.py")
    c.compare.arms.doremi = base.arm("configs/testbed.py", "data.weights=file:@proxy/mixture.txt")
    c.compare.domains = testbed.CLEAN
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
