"""Skill-It (Chen et al., NeurIPS 2023) on LEGO (k = 5) from scratch, 5 paired seeds.

  python main.py --mode=compare --config=configs/compare/skill_it_lego.py \
      --workdir=workdirs/cmp_skill_it_lego

Arms (configs/lego_*.py: 4 x 64 model, chain supervision, 1500 steps of 64 rows, an eval of
100 rows per skill every 50 steps): `stratified` (every skill equally: the baseline),
`random` (the paper's fixed 1:1:1:3:5) and `skill_it` (the paper's LEGO graph with its
off-diagonal 1s at 0.5 and an eval at step 0, as the reference trainer, eta 0.5, window 3,
6 rounds of 250 steps) and `skill_it_est` (the same, with the graph estimated first by
`--mode=skill_graph`, a prerequisite: 250 stratified steps to a shared start, then 100 steps on
each skill alone, A[i, j] = the relative drop of skill j's loss). Headline: steps until every skill is at 0.9 accuracy
(compare.accuracy_target), and the final mean accuracy.

Prediction, written before the run: the first round gives skill 2 (the node with edges into
skills 1, 3 and 4) 0.35 of the data and the others 0.16; later rounds follow the losses. From
scratch, with every hop supervised, the skills are learnt nearly together (the measured
stratified runs reach 1.0 on every skill by step 1000 in one seed of three), so there is little
order to exploit: no clear difference from stratified on steps-to-0.9 or final accuracy, and
`random`, which starves skills 1-3, slower than both. The paper's +36.5 points were from
continual pretraining of a pretrained 125M model, not reproduced at this scale.

Prediction for skill_it_est, written before its run: from a 250-step start the deeper skills
are still at chance, so 100 steps on any one skill moves mostly its own loss and the chain's
first hops: a near-diagonal graph with small positive entries below it. Skill-It on it is then
close to weighting by the current losses, sending more data to the unlearnt deep skills:
no clear difference from stratified on steps-to-0.9, and faster than skill_it on the paper's
graph (which starves skills 3-5) if that arm is slower than stratified.

Measured (2026-12-01, 2-core CPU, 5 paired seeds): final mean accuracy over the skills,
stratified 0.630 [0.235, 1.024]; Δ random -0.239 [-0.769, +0.291], skill_it -0.203 [-0.621,
+0.214], skill_it_est -0.096 [-0.768, +0.575], none clear. Every skill at 0.9: stratified 1/5
seeds (step 1100), skill_it_est 1/5 (step 600), random and skill_it 0/5. skill_it's area under
the eval-loss curve is clearly worse (+0.137 [+0.065, +0.208]). First-round weights as
predicted ([.16 .35 .16 .16 .16]); the estimated graph is not near-diagonal (wrong): training
on skill 1 alone raises the deeper skills' losses 13-18x (A[1, j] = -13 to -18) and skill 5
alone lowers every skill's (chain supervision spells every hop), so skill_it_est gives skills 1
and 2 no data and skills 3-5 .17 / .38 / .45. Seeds jump at different steps: the intervals are
too wide to show any arm's effect (docs/reproductions.md).
"""

from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.baseline = "stratified"
    c.compare.arms.stratified = base.arm("configs/lego_stratified.py")
    c.compare.arms.random = base.arm("configs/lego_random.py")
    c.compare.arms.skill_it = base.arm("configs/lego_skill_it.py")
    c.compare.prerequisites.graph = base.prerequisite(
        "configs/lego_stratified.py", "skill_graph.start_steps=250;skill_graph.steps=100",
        mode="skill_graph")
    c.compare.arms.skill_it_est = base.arm("configs/lego_skill_it.py",
                                           "reweight.skill_it.graph=@graph/skill_graph.json")
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 100
    c.compare.accuracy_target = 0.9
    return c
