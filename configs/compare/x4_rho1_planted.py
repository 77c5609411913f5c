"""RHO-1 on planted junk one scale up: configs/compare/rho1_planted.py at the testbed_x4 scale
(4.45M parameters, 1000 steps), 3 paired seeds, with a reference of the same scale.

  make testbed
  python main.py --mode=compare --config=configs/compare/x4_rho1_planted.py \
      --workdir=workdirs/cmp_x4_rho1_planted

The reference (a prerequisite) is the x4 model on the five clean domains; the arms are uniform
and RHO-1 (keep 0.6 of the tokens by excess loss over the reference). About 7 runs x ~15 min
(RHO-1's runs ~1.2x for the reference forward) = 1.9 h of 2 cores, resumable.

Prediction, written before the run. On the testbed RHO-1 was clearly better on the clean mean,
-0.251 [-0.312, -0.191] over 5 seeds, with noise only 3-5% of the kept tokens. The mechanism
does not weaken with scale: a larger reference trained on clean text assigns noise tokens the
same ~6.9 nats the proxy does (no excess to select them) and the duplicated tokens, once both
models have memorised them, little excess too, so the kept 60% stays clean text. The trained
model has more capacity for that text, so the gain holds or grows: better by 0.2-0.35 nats,
its interval excluding 0 with 3 seeds, the same verdict as the testbed, and worse on the
noise and duplicated domains' own losses. Rank agreement: trivially the same order of two arms.

Measured (2026-12-07, 3 paired seeds, the 2-core CPU): -0.203 [-0.223, -0.183] better, the
verdict holds at 0.81 of the testbed's effect (the size at the prediction's low edge; "grows"
was wrong); uniform's final loss at 0.65 of its steps, 0.87 of its FLOPs; noise +0.600 and
duplicated +0.211 worse, as predicted. docs/reproductions.md, "Scale transfer".
"""

from configs import testbed_x4
from configs.compare import rho1_planted


def get_config():
    return testbed_x4.scaled(rho1_planted.get_config())
