"""LEGO (k=5) from scratch with Skill-It online mixing over the paper's LEGO skills graph.

  python main.py --config=configs/lego_skill_it.py --workdir=workdirs/lego_skill_it

Every 50 steps each skill is evaluated; every `update_every` steps the sampling weights become
p_i ∝ exp(eta * sum_j A[i, j] * sum of the last 3 evals of L_j). The paper uses 1000-step
rounds of a 6000-step run; this run is 1500 steps, so rounds are 250 steps: 6 rounds, as
there. As in the reference trainer (HazyResearch/skill-it), the graph's off-diagonal 1s weigh
0.5 (config.reweight.skill_it.off_diagonal_ones) and the skills are evaluated at step 0 too,
so the first window holds the untrained model's losses. To use an estimated graph instead:
  python main.py --config=configs/lego_stratified.py --workdir=workdirs/lego_graph \
      --mode=skill_graph
  python main.py --config=configs/lego_skill_it.py --workdir=workdirs/lego_skill_it_est \
      --config.reweight.skill_it.graph=workdirs/lego_graph/skill_graph.json
"""

from configs import lego_stratified

LEGO_GRAPH = "1,0,0,0,0;1,1,1,1,0;0,0,1,0,0;0,0,0,1,0;0,0,0,0,1"  # Skill-It (Chen et al. 2023), LEGO


def get_config():
    c = lego_stratified.get_config()
    c.reweight.mixture = "skill_it"
    c.reweight.skill_it.update(graph=LEGO_GRAPH, eta=0.5, window=3, update_every=250,
                               off_diagonal_ones=0.5)
    c.train.eval_at_start = True
    return c
