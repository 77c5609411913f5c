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

Measured: see README "Reproductions" (filled in after the run).
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
