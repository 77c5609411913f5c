"""DoReMi step 2, per-domain-means form: the proxy, same size as the reference, samples its
batches from its domain weights (the resampling form, sampling=alpha, updated every 10 steps),
driven by the excess of its mean training loss per domain over the reference's validation loss
(eval.json; no reference forward in the step). configs/doremi_token.py is the paper's form.
Writes the averaged weights to WORKDIR/mixture.txt; train on them with
`--config.data.weights=file:workdirs/doremi_proxy/mixture.txt`.

  python main.py --config=configs/doremi_proxy.py --workdir=workdirs/doremi_proxy
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.reweight.mixture = "doremi"
    c.reweight.doremi.update(sampling="alpha", excess="domain_mean",
                             reference="workdirs/doremi_reference/eval.json", eta=1.0,
                             smoothing=1e-3, update_every=10)
    return c
