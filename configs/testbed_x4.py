"""The testbed at about 4x its parameters and 2x its steps: does a verdict on the testbed hold
one scale up? (issue 34's scale transfer; RegMix and DataDecide measure the same question.)

  make testbed
  python main.py --config=configs/testbed_x4.py --workdir=workdirs/testbed_x4

D=256, 8 heads, 4 layers, MLP 1024 (4.45M parameters against the testbed's 1.18M: 3.8x), the
same 1024-piece BPE, data and eval rows; 1000 steps (2x) with the warm-up scaled alike.
Measured (2026-12-07, the 2-core CPU, one run alone): 2,680 tokens/s, 0.76 s a step, so a run
is about 13 min of training plus its evaluations. `scaled` turns a testbed comparison into the
same comparison at this scale (configs/compare/x4_*.py).
"""

import ml_collections

from configs import testbed

TESTBED, X4 = "configs/testbed.py", "configs/testbed_x4.py"


def get_config() -> ml_collections.ConfigDict:
    c = testbed.get_config()
    c.model.update(d_model=256, num_heads=8, num_layers=4, mlp_dim=1024)
    c.train.update(steps=1000, warmup_steps=100, eval_every=200, checkpoint_every=250)
    return c


def scaled(comparison: ml_collections.ConfigDict, seeds: str = "0,1,2"
           ) -> ml_collections.ConfigDict:
    """The same comparison with every testbed arm and prerequisite at this scale, on `seeds`."""
    c = comparison.copy_and_resolve_references()
    for group in (c.compare.arms, c.compare.prerequisites):
        for spec in group.values():
            if spec.config == TESTBED:
                spec.config = X4
    c.compare.seeds = seeds
    return c
