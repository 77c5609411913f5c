"""DoReMi step 1: the reference model, trained on the natural mixture. Its eval.json holds the
per-domain reference losses that configs/doremi_proxy.py reads.

  python main.py --config=configs/doremi_reference.py --workdir=workdirs/doremi_reference
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "natural"
    return c
