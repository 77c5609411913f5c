"""LEGO (k=5) from scratch with skills sampled 1:1:1:3:5: the Skill-It paper's "random" baseline.

  python main.py --config=configs/lego_random.py --workdir=workdirs/lego_random
"""

from configs import lego_stratified


def get_config():
    c = lego_stratified.get_config()
    c.data.weights = "1,1,1,3,5"
    return c
