"""A small model on the built-in six-domain corpus: a few minutes on 2 CPU cores.

  python -m data.corpus && python -m data.tokenizer   # once (make demo does this)
  python main.py --config=configs/tiny.py --workdir=workdirs/tiny
"""

from configs import base


def get_config():
    c = base.get_config()
    c.model.update(vocab_size=8192, d_model=128, num_heads=4, num_layers=2, mlp_dim=512,
                   max_len=128)
    c.data.seq_len = 128
    c.train.update(batch_size=16, steps=300, lr=3e-3, warmup_steps=30, eval_every=100,
                   checkpoint_every=100, log_every=10)
    return c
