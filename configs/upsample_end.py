"""End-of-training upsampling (Blakeney et al. 2024): natural proportions, then for the last
15% of steps code and math at 3x their natural weight.

  python main.py --config=configs/upsample_end.py --workdir=workdirs/upsample_end
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "upsample"
    c.reweight.upsample.update(base="natural", domains="code,math", factor=3.0,
                               last_fraction=0.15)
    return c
