"""Skill-It with the built-in corpus domains as the skills (tiny model).

  python main.py --config=configs/tiny.py --workdir=workdirs/skill_graph_corpus \
      --mode=skill_graph --config.skill_graph.start_steps=100 --config.skill_graph.steps=50
  python main.py --config=configs/skill_it_corpus.py --workdir=workdirs/skill_it_corpus \
      --config.reweight.skill_it.graph=workdirs/skill_graph_corpus/skill_graph.json

Without a graph file the graph is the identity (no transfer between domains): weights then go
to the domains whose validation loss is highest. The six training domains each have an eval
domain of the same name (the held-out domains are evaluated too, and ignored by the policy).
Losses of different domains differ in scale, so they are normalised by their first eval.
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.train.eval_every = 25  # the window sums evaluations: a few per round
    c.data.eval_rows = 32
    c.reweight.mixture = "skill_it"
    c.reweight.skill_it.update(graph="", eta=0.5, window=3, update_every=50,
                               normalize="initial")
    return c
