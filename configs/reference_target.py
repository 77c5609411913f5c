"""A reference model trained on one target domain (math here), for the reference-model methods:
RHO-1 (configs/rho1.py), the perplexity filter (configs/ref_perplexity.py) and, with the
general reference (configs/doremi_reference.py, the natural mix), the cross-entropy
difference (configs/ref_xent_diff.py). The same model shape as configs/tiny.py; any shape
works if the vocabulary and data.seq_len match the run that uses it.

  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_math
  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_code \
      --config.data.weights=code:1
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.data.weights = "math:1"  # the target domain alone
    return c
