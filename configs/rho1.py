"""RHO-1 selective language modelling (Lin et al. 2024): each step trains on the 60% of the
global batch's tokens with the highest excess loss over a reference trained on the target
domain (reweight/rho1.py). Train the reference first:

  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_math
  python main.py --config=configs/rho1.py --workdir=workdirs/rho1

metrics.jsonl has weighter/kept_fraction (overall and per domain), kept_share per domain, the
excess percentiles and threshold, and train/DOMAIN/excess.
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.instance = "rho1"
    c.reweight.rho1.keep = 0.6  # the paper's 60-70%
    c.reference.workdir = "workdirs/reference_math"  # configs/reference_target.py
    return c
