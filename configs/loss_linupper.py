"""LinUpper loss-based reweighting on the tiny model: down-weights low-loss rows.

  python main.py --config=configs/loss_linupper.py --workdir=workdirs/loss_linupper

Sow et al. (ICLR 2025) scaled down: r = 0.4, the paper's LinUpper setting
(its runs paired LinUpper with DoGE/DoReMi domain weights).
Uniform warm-up 15 of the tiny run's 300 steps (5%, as their 1000 of 20k).
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.instance = "loss_based"
    c.reweight.loss_based.update(strategy="linupper", r=0.4, d=1.0, warmup_steps=15)
    return c
