"""MATES (influence-model data selection in stages) on the built-in corpus, tiny model.

  python main.py --config=configs/mates.py --workdir=workdirs/mates

5 stages of 100 steps; stage 0 trains on the uniform mix as drawn, then before each later
stage 256 pool candidates are probed against a held-out books cloze set, the influence model is
fitted, and 20% of a 5x pool is kept by Gumbel-top-k (tau 0.5). Per-stage metrics (hold-out
Spearman / Pearson, oracle influence per domain, selected share per domain, FLOPs overhead) are
in metrics.jsonl under mates/.
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.train.update(steps=500, eval_every=100, checkpoint_every=100)
    c.reweight.selector = "mates"
    c.reweight.mates.update(mode="mates", stage_steps=100, selection_ratio=0.2, tau=0.5,
                            probe_size=256, reference="cloze", reference_domain="books")
    return c
