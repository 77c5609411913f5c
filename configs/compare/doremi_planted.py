"""DoReMi (Xie et al. 2023) on clean text mixed with planted junk: the paper's form of the
proxy against the resampling form this project ran until 2026-12-07, both against uniform.

  make testbed
  mkdir -p workdirs/cmp_doremi_planted/runs/uniform   # optional: the reference is uniform's
  ln -s ../../prerequisites/reference workdirs/cmp_doremi_planted/runs/uniform/seed0  # seed 0
  python main.py --mode=compare --config=configs/compare/doremi_planted.py \
      --workdir=workdirs/cmp_doremi_planted

The data of configs/compare/loss_planted.py: the five clean domains plus `duplicated` and
`noise` (data/planted.py), 2/7 of the rows junk when uniform. DoReMi's three steps at one
size (the paper: a 280M reference and proxy, an 8B final model), the prerequisites trained
before the arms: the reference is the uniform run (identical to uniform's seed 0, hence the
link above); two proxies read it, each writing its averaged alpha to its mixture.txt:
  proxy         the paper's form (reweight.doremi.sampling=reference, the default): batches
                drawn uniformly (data.weights); in every step alpha takes one update (eta 1,
                smoothing c = 1e-3) from that batch's clipped per-token excess
                max(l_proxy - l_ref, 0) averaged over each domain's tokens, and the step's loss
                weighs each token by alpha / p (reweight/doremi.py);
  proxy_alpha   the resampling form (sampling=alpha, update_every=10): batches drawn from alpha,
                alpha updated every 10 steps from the excess over those steps.
The final runs train from scratch on the averaged weights. Arms, paired by seed:
  uniform        the plain mean over rows on the uniform mixture;
  doremi         the paper-form proxy's averaged weights, fixed;
  doremi_alpha   the resampling proxy's averaged weights, fixed.
Headline: the mean eval loss over the five clean domains. The two DoReMi arms against each
other, from these runs (nothing trained):
  python main.py --mode=compare --config=configs/compare/doremi_planted.py \
      --workdir=workdirs/cmp_doremi_forms --config.compare.baseline=doremi_alpha \
      --config.compare.runs="doremi=workdirs/cmp_doremi_planted/runs/doremi/seed*;\
doremi_alpha=workdirs/cmp_doremi_planted/runs/doremi_alpha/seed*"

Prediction for the paper form (proxy, doremi), written before its runs (2026-12-07): at
step 1 the proxy is at ~ln(1024) = 6.9 nats on every domain, the reference at ~4.3 on the clean
ones, far lower on the duplicated documents it memorised, and at ~6.9 on noise, so duplicated's
excess is the largest, the clean domains' next, noise's ~0. With eta = 1 on every step alpha
swings within a few steps to whichever domain leads (the smoothing bounds the log-gap between
two domains at ln(K/c) = 8.9, so about 3-10 steps of a 1-3 nat lead flip it): near one-hot on
duplicated early, back on the clean domains as the proxy catches up there, and on duplicated
again while the proxy memorises what the reference did; noise falls to the floor c/K and comes
back only as far as the proxy, no longer trained on it, drifts above the reference there (its
excess is measured in every batch now, not frozen). The logged alpha (weighter/alpha/NAME)
is far spikier than the resampling form's. Averaged weights: noise 0.01-0.06, duplicated
0.15-0.35 (more than the resampling form's 0.197: a ~10x faster update spends longer near
one-hot on its large memorisation gap), the clean domains the rest, code and technical above
books. Trained on them the final runs beat uniform on the clean mean by 0.03-0.12 nats, and
are no better than doremi_alpha: doremi - doremi_alpha between -0.03 and +0.08 on the clean
mean (no clear difference or worse), the more weight on duplicated being taken from clean
text; doremi is better than doremi_alpha on duplicated. doremi_alpha reproduces the measurement
below within its interval, -0.07 to -0.16 (the corpus may have changed since, see README).

Measured, the paper form (2026-12-07, 2-core CPU, 5 seeds, one run at a time): the proxy's
averaged weights books 0.092, reference 0.215, code 0.168, dialogue 0.135, technical 0.141,
duplicated 0.224, noise 0.026 (inside every predicted range); alpha near one-hot early, but on
reference first (0.975 at step 20; duplicated's peak 0.548 came at step 100), noise at the
floor (1.6e-4) and back to at most 0.126. Final runs, clean mean: doremi -0.153 [-0.227,
-0.080] against uniform (better; predicted 0.03-0.12: larger), uniform's final loss at 0.74 of
its steps; doremi_alpha -0.122 [-0.167, -0.076] (reproduced, as predicted); doremi against
doremi_alpha -0.032 [-0.061, -0.002] (better; predicted no clear difference or worse: wrong,
just outside), duplicated -0.105 better (as predicted), noise +0.068 worse.

Prediction for the resampling form, written before its first run (2026-12-01): both models
learn noise's near-uniform distribution in the first tens of steps, after which its per-token
excess is only the clipped part of two models' fluctuations around the same floor (~0.1 nats),
against 0.3-1 nats on the clean domains while the proxy is behind the reference; the
duplicated documents, memorised by the reference, have the largest excess early and fall once
the proxy has memorised them too. So noise's alpha falls towards c/K (~1.4e-4) within the
first half, duplicated's rises first and then falls, and the averaged weights give noise
under 0.05 (uniform: 0.143) and duplicated under uniform. Trained on them the final runs beat
uniform on the clean mean by 0.1-0.2 nats (the clean-only oracle, -0.200, is the bound) and
are worse on noise.

Measured, the resampling form (2026-12-01, 2-core CPU, 5 seeds, two runs at a time, then the
only form, as arm `doremi`): the proxy's averaged weights books 0.071, reference 0.170, code
0.189, dialogue 0.149, technical 0.183, duplicated 0.197, noise 0.041. Noise's alpha fell to
3e-4 by step 60 (c/K = 1.4e-4, as predicted), then came back to ~0.05: once the proxy stops
seeing noise its noise loss rises over the reference's and the clipped excess with it (0.39 at
step 320). Duplicated's rose first (0.34 at step 120) and fell (0.06 by the end), as predicted,
but its average, 0.197, is above uniform's (predicted below: wrong). The final runs on those
weights: clean mean -0.116 [-0.158, -0.074] (better, as predicted 0.1-0.2), uniform's final
loss at 0.77 of its steps (the reference and proxy runs, 2x a run's FLOPs, not counted); every
clean domain better or no clear difference (code -0.230, technical -0.155, reference -0.115);
duplicated -0.165 better, noise +0.082 worse.
"""

from configs import testbed
from configs.compare import base
from configs.compare.loss_planted import PLANTED_MIX

PROXY = f"data.domains={PLANTED_MIX};reweight.mixture=doremi;reweight.doremi.excess=token;" \
        "reference.workdir=@reference"


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.overrides = f"data.domains={PLANTED_MIX}"
    c.compare.prerequisites.reference = base.arm("configs/testbed.py",
                                                 f"data.domains={PLANTED_MIX}")
    c.compare.prerequisites.proxy = base.arm(
        "configs/testbed.py", PROXY + ";reweight.doremi.sampling=reference")
    c.compare.prerequisites.proxy_alpha = base.arm(
        "configs/testbed.py", PROXY + ";reweight.doremi.sampling=alpha;"
                                      "reweight.doremi.update_every=10")
    c.compare.arms.uniform = base.arm("configs/testbed.py")
    c.compare.arms.doremi = base.arm("configs/testbed.py", "data.weights=file:@proxy/mixture.txt")
    c.compare.arms.doremi_alpha = base.arm("configs/testbed.py",
                                           "data.weights=file:@proxy_alpha/mixture.txt")
    c.compare.domains = testbed.CLEAN
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    c.compare.processes = 1  # one run at a time
    return c
