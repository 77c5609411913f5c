"""The tiny model on the built-in corpus, domains sampled in their natural token proportions.

  python main.py --config=configs/mixture_natural.py --workdir=workdirs/mixture_natural
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "natural"
    return c
