"""The demo (`make demo`): the natural mixture vs end-of-training upsampling, one seed, ~4 min.

  python main.py --mode=compare --config=configs/compare/demo.py --workdir=workdirs/demo

Two runs of the tiny model on the built-in corpus, 200 steps each, from the same params and on
the same batches until the last 20% of the steps, where the `upsample` arm draws code and math
at 4x their natural weight (Blakeney et al. 2024). One seed gives no interval (the table says
"too few seeds"); `configs/compare/upsample.py` runs the 3-seed version.

Prediction, written before the run: code and math end lower for `upsample` (a few hundredths
of a nat), the other training domains a little higher, the mean over the six about the same.
"""

from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.baseline = "natural"
    c.compare.arms.natural = base.arm("configs/mixture_natural.py")
    c.compare.arms.upsample = base.arm("configs/upsample_end.py", "reweight.upsample.factor=4.0;"
                                       "reweight.upsample.last_fraction=0.2")
    c.compare.overrides = "train.steps=200;train.eval_every=50;train.checkpoint_every=200"
    c.compare.seeds = "0"
    c.compare.eval_rows = 128
    return c
