"""A tiny model that trains in a few minutes on 2 CPU cores.

  python main.py --config=configs/tiny.py --workdir=workdirs/tiny
"""

from configs import base


def get_config():
  c = base.get_config()
  c.model.vocab_size = 512
  c.model.d_model = 64
  c.model.num_heads = 4
  c.model.num_layers = 2
  c.model.mlp_dim = 256
  c.model.max_len = 128
  c.data.seq_len = 64
  c.train.batch_size = 16
  c.train.steps = 300
  c.train.lr = 3e-3
  c.train.warmup_steps = 30
  c.train.eval_every = 100
  c.train.checkpoint_every = 100
  c.train.log_every = 10
  return c
