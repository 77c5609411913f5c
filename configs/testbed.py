"""The reproductions' testbed: out of the unigram regime in about 3 minutes on 2 CPU cores.

  make testbed   # once: corpus, the 1024-piece BPE, the planted domains (data/planted.py)
  python main.py --config=configs/testbed.py --workdir=workdirs/testbed
  python benchmarks/testbed.py   # this run's eval curve against each domain's unigram entropy

A 1024-piece BPE (~2.6 bytes a token) instead of the 8192 one: a vocabulary this small is
learnt in tens of steps, so the remaining steps go to context. Five clean domains of the
built-in corpus; a comparison adds planted ones (`PLANTED`, data/planted.py) by override.
Eval: 512 rows of 128 tokens per domain, so that a domain's loss has a standard error of about
0.01-0.02 nats (each comparison states the effect it expects next to this).
"""

from configs import base

CLEAN = "books,reference,code,dialogue,technical"
PLANTED = {k: f"{k}=data_cache/planted/{k}/{{split}}-*.jsonl"
           for k in ("noise", "duplicated", "shuffled", "target")}


def domains(*names: str) -> str:
    """config.data.domains for built-in and planted names, e.g. domains("books", "noise")."""
    return ",".join(PLANTED.get(n, n) for n in names)


def get_config():
    c = base.get_config()
    c.model.update(vocab_size=1024, d_model=128, num_heads=4, num_layers=4, mlp_dim=512,
                   max_len=128)
    c.data.update(domains=CLEAN, seq_len=128, eval_rows=256, heldout=False,
                  weights="uniform")
    c.train.update(batch_size=16, steps=500, lr=3e-3, warmup_steps=50, eval_every=100,
                   checkpoint_every=250, log_every=20, schedule="cosine")
    return c
