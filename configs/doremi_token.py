"""DoReMi step 2 in the paper's form (Xie et al. 2023, Algorithm 1; reweight/doremi.py): the
proxy samples uniformly (config.data.weights) while the reference model trained on the natural
mixture; inside every step the reference runs forward on the proxy's batch, each domain's
excess is the mean over its tokens of max(l_proxy - l_ref, 0), alpha takes one update
(eta 1, smoothing 1e-3), and the proxy's loss weighs each token by alpha / p. Writes the
averaged weights to WORKDIR/mixture.txt.

  python main.py --config=configs/doremi_reference.py --workdir=workdirs/doremi_reference
  python main.py --config=configs/doremi_token.py --workdir=workdirs/doremi_token
  python main.py --config=configs/tiny.py --workdir=workdirs/doremi_mix \
      --config.data.weights=file:workdirs/doremi_token/mixture.txt

The resampling form (batches drawn from alpha, updated on the host every 10 steps):
--config.reweight.doremi.sampling=alpha --config.reweight.doremi.update_every=10.
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "doremi"
    c.reweight.doremi.update(sampling="reference", excess="token", eta=1.0, smoothing=1e-3,
                             update_every=1)
    c.data.weights = "uniform"  # the proxy's sampling mixture p (the paper's: uniform)
    c.reference.workdir = "workdirs/doremi_reference"  # the natural-mix reference
    return c
