"""Small configs shared by the tests."""

from configs import base
from data.synthetic import SyntheticMixture


def tiny_config(**train):
    """A model small enough that a step compiles and runs in well under a second."""
    c = base.get_config()
    c.model.update(vocab_size=64, d_model=32, num_heads=4, num_layers=2, mlp_dim=64, max_len=32)
    c.data.update(source="synthetic", seq_len=16, num_domains=3, eval_rows=8)
    c.train.update(batch_size=8, steps=20, lr=1e-2, warmup_steps=2, log_every=1, eval_every=0,
                   checkpoint_every=10, progress_bar=False, peak_flops=1e9)
    c.train.update(**train)
    c.mesh.shape = (-1, 1, 1)
    return c


def synthetic(cfg, **kw):
    return SyntheticMixture(num_domains=cfg.data.num_domains, vocab_size=cfg.model.vocab_size,
                            seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size,
                            seed=cfg.seed, **kw)


TIMING = ("tokens_per_s", "mfu", "data_wait_fraction")  # differ between identical runs


def untimed(workdir) -> list[dict]:
    """metrics.jsonl of a run without its wall-clock fields: equal for identical runs."""
    from lm.metrics import read_metrics
    return [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(str(workdir))]


class Recording:
    """A batch source that keeps the domain ids of every batch it hands out."""

    def __init__(self, it):
        self.it, self.domains, self.domain_names = it, [], it.domain_names

    def __next__(self):
        batch = next(self.it)
        self.domains.append(batch["domain_id"].copy())
        return batch

    def get_state(self):
        return self.it.get_state()

    def set_state(self, s):
        self.it.set_state(s)

    def set_weights(self, w):
        self.it.set_weights(w)
