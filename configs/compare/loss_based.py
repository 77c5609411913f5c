"""Loss-based instance reweighting (Sow et al., ICLR 2025) vs uniform on the tiny model, 3 seeds.

  python main.py --mode=compare --config=configs/compare/loss_based.py --workdir=workdirs/cmp_loss

Arms: `uniform` (configs/tiny.py), `linupper` (configs/loss_linupper.py: r = 0.4) and
`quadratic` (configs/loss_quadratic.py: r = 1), 300 steps on the uniform mixture of the six
built-in domains; the same seeds give every arm the same params and batches, so only the
weights differ.

Prediction, written before the run: no clear difference on the mean eval loss over the
training domains at this scale (300 steps at vocabulary 8192 end near 5.8 nats: the model has
barely left unigram statistics, and the paper's gains came from 20k-step runs); if anything,
LinUpper slightly worse (it down-weights the easy rows the model is still learning from).

Measured (2026-12-01, 2-core CPU): the prediction was wrong. Mean over the training domains,
paired by seed: LinUpper +0.241 [+0.089, +0.392] nats, Quadratic +0.065 [+0.041, +0.089]: both
clearly worse, math the most (+0.75 and +0.22). Held-out domains: no clear difference.
"""

from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.arms.uniform = base.arm("configs/tiny.py")
    c.compare.arms.linupper = base.arm("configs/loss_linupper.py")
    c.compare.arms.quadratic = base.arm("configs/loss_quadratic.py")
    c.compare.seeds = "0,1,2"
    c.compare.eval_rows = 256
    return c
