"""DoReMi step 2 in the paper's per-token form (Xie et al. 2023): the reference model runs
forward on the proxy's own training batch inside the step, and each domain's excess is the
mean over its tokens of max(l_proxy - l_ref, 0) since the last update (reweight/doremi.py).
Writes the averaged weights to WORKDIR/mixture.txt.

  python main.py --config=configs/doremi_reference.py --workdir=workdirs/doremi_reference
  python main.py --config=configs/doremi_token.py --workdir=workdirs/doremi_token
  python main.py --config=configs/tiny.py --workdir=workdirs/doremi_mix \
      --config.data.weights=file:workdirs/doremi_token/mixture.txt
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "doremi"
    c.reweight.doremi.update(excess="token", eta=1.0, smoothing=1e-3, update_every=10)
    c.reference.workdir = "workdirs/doremi_reference"  # the natural-mix reference
    return c
