"""Perplexity filtering: at step 0, draw a pool of twice the run's rows and keep the half a
reference model trained on the target domain finds most likely (lowest mean token loss);
reweight/ref_select.py.

  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_math
  python main.py --config=configs/ref_perplexity.py --workdir=workdirs/ref_perplexity
  # reselect before every 100-step stage:
  python main.py --config=configs/ref_perplexity.py --workdir=workdirs/ref_perplexity_staged \
      --config.reweight.ref_select.stage_steps=100
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.selector = "ref_select"
    c.reweight.ref_select.update(mode="perplexity", selection_ratio=0.5, stage_steps=0)
    c.reference.workdir = "workdirs/reference_math"  # configs/reference_target.py
    return c
