"""A RegMix mixture sweep on the built-in corpus: 48 tiny proxies (d_model 64, 2 layers, 0.66M
params of which 0.52M embedding) of 50 steps x 16 rows x 64 tokens, mixtures drawn around the
natural proportions; target = the mean validation loss over the six training domains.
Writes DIR/results.csv, DIR/regmix.json and DIR/mixture.txt (train on it with
--config.data.weights=file:DIR/mixture.txt).

  python main.py --config=configs/sweep_regmix.py --mode=sweep --workdir=workdirs/sweep
  python main.py --config=configs/sweep_regmix.py --mode=sweep --workdir=workdirs/sweep \
      --config.sweep.trial=3          # one trial alone (an array job's task)
  python main.py --config=configs/sweep_regmix.py --mode=sweep --workdir=workdirs/sweep \
      --config.sweep.backend=ray --config.sweep.ray_address=auto   # trials on a Ray cluster
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.model.update(d_model=64, num_heads=4, num_layers=2, mlp_dim=256, max_len=128)
    # A small shuffle buffer: each trial restarts its streams, and filling 1024 chunks per
    # domain cost more than a proxy's training. peak_flops is set so no trial measures it.
    c.data.update(seq_len=64, eval_rows=32, heldout=False, shuffle_buffer_size=128)
    c.train.update(batch_size=16, steps=50, lr=3e-3, warmup_steps=5, eval_every=0,
                   checkpoint_every=50, log_every=25, progress_bar=False, peak_flops=1e11)
    c.sweep.update(num_trials=48, center="natural", dirichlet_strengths="0.3,1,3",
                   max_epochs=4.0, min_weight=0.01, target="average", regression="ridge",
                   holdout_fraction=0.25, num_simulations=100_000, top_k=128)
    return c
