"""MATES (Yu, Das, Xiong, NeurIPS 2024) against its baselines on a pool with a target domain
and planted junk of three kinds, 5 paired seeds, on the testbed (configs/testbed.py).

  make testbed
  python main.py --mode=compare --config=configs/compare/mates_planted.py \
      --workdir=workdirs/cmp_mates_planted

The pool, uniformly: the five clean domains, `target` (the first 1 MB of math, data/planted.py)
and the junk `noise`, `duplicated` and `shuffled` (word-shuffled books: clean text's unigram
statistics); 1/9 each. MATES's reference set: 64 held-out validation rows of the target (after
the eval's 256), next-token loss. 500 steps in 4 stages of 125: stage 0 trains on the pool as
drawn (the testbed is below every domain's unigram entropy by step 100, so the model the
oracle probes has left unigram statistics), then before each of 3 stages MATES probes 192
candidates (first-order probe), fits its influence model and keeps 20% of a 5x pool by
Gumbel-top-k (tau 0.5); 128 more candidates per stage, not fitted on, measure the influence
model's Spearman and the oracle's split-half reliability (mates/diagnostic/*). Arms, paired by
seed:
  none         the pool as drawn;
  random       the same staged path with equal scores: a random 20% of each 5x pool;
  target_only  the target domain alone (the oracle of domain selection; ~2.7 epochs of it);
  ref_loss     the perplexity filter: the half of a 2x pool with the lowest loss under a
               reference trained on the target (a prerequisite), chosen once at step 0;
  mates        as above.
Headline: the target's eval loss; steps and FLOPs (selection included) to none's final loss.

Prediction, written before the run: a step on a math row lowers the math reference loss and a
step on noise raises it, so the oracle's influences sort mostly by domain, consistently over
the two halves of the reference set (split-half Spearman above 0.6), and a small encoder
learns it (held-out Spearman above 0.5). With tau 0.5, a row with z = +2 is e^4 times as
likely as an average one: the selected stages are 40-70% target, under 3% noise, and under
1/9 duplicated and shuffled. So on the target's loss: random no clear difference from none;
mates better than none by 0.15-0.4 nats, reaching none's final loss in 0.5-0.8 of the steps
and, with its ~0.1 overhead, of the FLOPs too; ref_loss better than none but behind mates
(its 2x pool holds at most 2/9 target rows for the kept half: 0.05-0.2 nats better than none;
scoring the 2x pool costs ~0.7 of the training FLOPs, so at equal FLOPs it is no faster);
target_only the best on the target. On the clean mean, every selecting arm worse than none.

Measured (2026-12-01, 2-core CPU, 5 seeds, two runs at a time), the target's loss: mates
-0.574 [-0.666, -0.481] (better; predicted 0.15-0.4: the direction, larger), none's final
loss at 0.47 of the steps and 0.53 of the FLOPs (selection 0.18 of each stage's training
FLOPs at these 125-step stages); ref_loss -0.539 [-0.599, -0.480] at 0.51 of the steps but
1.17 of the FLOPs (scoring); random no clear difference (-0.003 [-0.037, +0.030]).
The two intervals overlap: the prediction that ref_loss is behind mates is not shown. Selected stages: target 42%, 38%, 36%;
noise 4.6-6.8% (from 11%), duplicated 4.5-7.1%, shuffled 5.3-7.1% (as predicted). Split-half
Spearman of the oracle 0.82 at step 125, then 0.30 and 0.40 (predicted above 0.6: true only for
the first selection), the influence model's Spearman on 128 unseen probes 0.42, 0.25, 0.13
(predicted above 0.5: wrong). Clean domains: mates worse on books (+0.23) and dialogue
(+0.24), ref_loss better on every clean domain (-0.06 to -0.27; it keeps no noise at all).
target_only -1.274 [-1.356, -1.192] (the best on the target, as predicted), none's final
loss at 0.20 of the steps, and 0.8-2.5 nats worse on every other domain.
"""

from configs import testbed
from configs.compare import base

TARGET = testbed.domains("target")
OTHERS = testbed.domains(*testbed.CLEAN.split(","), "noise", "duplicated", "shuffled")
POOL = f"{OTHERS},{TARGET}"
MATES = ("reweight.selector=mates;reweight.mates.stage_steps=125;"
         "reweight.mates.selection_ratio=0.2;reweight.mates.tau=0.5;"
         "reweight.mates.probe=first_order;reweight.mates.probe_size=192;"
         "reweight.mates.reference=validation;reweight.mates.reference_domain=target;"
         "reweight.mates.reference_rows=64;reweight.mates.diagnostic_probes=128")


def get_config():
    c = base.get_config()
    c.compare.baseline = "none"
    c.compare.overrides = f"data.domains={POOL}"
    c.compare.prerequisites.target = base.arm("configs/testbed.py",
                                              f"data.domains={TARGET}")
    c.compare.arms.none = base.arm("configs/testbed.py")
    c.compare.arms.random = base.arm("configs/testbed.py", f"{MATES};reweight.mates.mode=random")
    c.compare.arms.target_only = base.arm(  # evaluated on the rest of the pool too
        "configs/testbed.py", f"data.domains={TARGET};eval.domains={OTHERS}")
    c.compare.arms.ref_loss = base.arm(
        "configs/testbed.py", "reweight.selector=ref_select;reweight.ref_select.mode=perplexity;"
                              "reweight.ref_select.selection_ratio=0.5;reference.workdir=@target")
    c.compare.arms.mates = base.arm("configs/testbed.py", f"{MATES};reweight.mates.mode=mates")
    c.compare.domains = "target"
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
