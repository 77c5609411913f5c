"""Cross-entropy difference selection (Moore & Lewis 2010): keep the pool rows with the largest
l_general(x) - l_target(x), from a reference trained on the natural mix and one trained on
the target domain (reweight/ref_select.py). Selects at step 0 from a 2x pool.

  python main.py --config=configs/doremi_reference.py --workdir=workdirs/doremi_reference
  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_math
  python main.py --config=configs/ref_xent_diff.py --workdir=workdirs/ref_xent_diff
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.selector = "ref_select"
    c.reweight.ref_select.update(mode="xent_diff", selection_ratio=0.5, stage_steps=0)
    c.reference.general = "workdirs/doremi_reference"  # natural mix (configs/doremi_reference.py)
    c.reference.target = "workdirs/reference_math"  # configs/reference_target.py
    return c
