"""Quadratic loss-based reweighting on the tiny model: favours mid-range losses.

  python main.py --config=configs/loss_quadratic.py --workdir=workdirs/loss_quadratic

Sow et al. (ICLR 2025) scaled down: r = 1, the paper's 124M setting.
Uniform warm-up 15 of the tiny run's 300 steps (5%, as their 1000 of 20k).
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.instance = "loss_based"
    c.reweight.loss_based.update(strategy="quadratic", r=1.0, d=1.0, warmup_steps=15)
    return c
