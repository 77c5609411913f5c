"""The MATES baseline: the same staged path with equal scores, i.e. a uniform random 20% of
each stage's candidate pool (no probing, no influence model).

  python main.py --config=configs/mates_random.py --workdir=workdirs/mates_random
"""

from configs import mates


def get_config():
    c = mates.get_config()
    c.reweight.mates.mode = "random"
    return c
