"""Online Data Mixing (EXP3 over domains, reward = training loss) on the built-in corpus.

  python main.py --config=configs/odm.py --workdir=workdirs/odm
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "odm"
    c.reweight.odm.update(smoothing=0.9, update_every=10)
    return c
