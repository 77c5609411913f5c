"""LEGO (k=5) as text, continual training with Skill-It online mixing over the paper's graph.

  python main.py --config=configs/lego_continual_skill_it.py \
      --workdir=workdirs/lego_continual_skill_it --config.init_from=workdirs/testbed

configs/lego_continual.py (it says how to train the testbed run it starts from) with the
settings of configs/lego_skill_it.py: the paper's LEGO graph, its off-diagonal 1s at 0.5 as in
the reference trainer, eta 0.5, a window of 3 evaluations, and the evaluation at step 0 in the
first window. Rounds are 100 steps of the 600, 6 rounds as the paper's 1000 of 6000 (its
scripts/lego/pt/skillit.sh); with an eval every 50 steps, the window holds a round's 2 evals
and the last of the round before.
"""

from configs import lego_continual
from configs.lego_skill_it import LEGO_GRAPH


def get_config():
    c = lego_continual.get_config()
    c.reweight.mixture = "skill_it"
    c.reweight.skill_it.update(graph=LEGO_GRAPH, eta=0.5, window=3,
                               update_every=c.train.steps // 6, off_diagonal_ones=0.5)
    return c
