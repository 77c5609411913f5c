"""End-of-training upsampling vs the natural mixture on the built-in corpus, 3 paired seeds.

  python main.py --mode=compare --config=configs/compare/upsample.py --workdir=workdirs/cmp_upsample

Arms: `natural` (configs/mixture_natural.py: the corpus's natural token proportions throughout)
and `upsample` (configs/upsample_end.py: the same, then code and math at 3x their weight for
the last 15% of the 300 steps, Blakeney et al. 2024). Same seeds, so both arms start from the
same params and read the same batches until step 255.

Prediction, written before the run: upsampling lowers the final code and math eval loss (by
~0.05-0.2 nats: their share of the last 45 steps roughly triples) and raises the other training
domains' slightly (they lose some of those steps); over the six training domains the mean moves
by less than the seed spread (no clear difference). Held-out domains: no clear difference,
except perhaps go_src (code-like) a little better. 256 eval rows per domain.

Measured (2026-12-01, 2-core CPU): math -0.065 [-0.081, -0.048] (better), code -0.041
[-0.133, +0.051] (not clear at 3 seeds), books, reference and technical +0.024 to +0.031
(worse), the mean +0.0004 [-0.017, +0.017] and every held-out domain no clear difference.
"""

from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.baseline = "natural"
    c.compare.arms.natural = base.arm("configs/mixture_natural.py")
    c.compare.arms.upsample = base.arm("configs/upsample_end.py")
    c.compare.seeds = "0,1,2"
    c.compare.eval_rows = 256
    return c
