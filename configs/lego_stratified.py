"""LEGO (k=5) from scratch with every skill sampled equally: the "stratified" baseline.

  python main.py --config=configs/lego_stratified.py --workdir=workdirs/lego_stratified

Skills are the depths 1..5 of the chain (data/lego.py); each has its own eval domain with the
loss on the supervised tokens only, so `eval/skill_<s>/accuracy` is greedy-decoding exact match.
Chain supervision (every hop spelled out, data/lego.py) is learnable from scratch: with uniform
sampling every skill reached 1.0 accuracy by step 1000 in one seed of three here. The Skill-It
paper's answer-only loss (`--config.data.lego_supervision=answer`) left skills 2-5 at chance
for thousands of steps (data/lego.py says what was measured).
"""

from configs import base
from data.lego import VOCAB_SIZE, seq_len_needed


def get_config():
    c = base.get_config()
    c.model.update(vocab_size=VOCAB_SIZE, d_model=64, num_heads=4, num_layers=4, mlp_dim=256,
                   max_len=64)
    c.data.update(source="lego", lego_k=5, lego_supervision="chain", weights="uniform",
                  eval_rows=100, seq_len=seq_len_needed(5, "chain"))
    c.train.update(steps=1500, batch_size=64, lr=3e-3, warmup_steps=100, weight_decay=0.0,
                   eval_every=50, checkpoint_every=500, log_every=50)
    return c
