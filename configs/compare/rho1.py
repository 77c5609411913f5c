"""RHO-1 vs uniform on the tiny model, 5 paired seeds. NOT YET RUN: it needs the planted-noise
testbed (a domain of corrupted text mixed into the training data) that another issue builds;
until then it runs on the six built-in domains, where nothing is planted.

  python main.py --config=configs/reference_target.py --workdir=workdirs/reference_math
  python main.py --mode=compare --config=configs/compare/rho1.py --workdir=workdirs/cmp_rho1

Arms: `uniform` (configs/tiny.py) and `rho1` (configs/rho1.py: keep 60% of each batch's tokens
by excess loss over a math-trained reference), the same seeds giving both the same params and
batches.

Prediction, written before any run: on the math eval loss RHO-1 better by a clear margin (its
reference is math-trained, so math tokens the model has not yet learned carry high excess);
on the mean of the training domains worse (40% of the tokens never train); with planted noise,
noise tokens dropped first (the reference finds them as hard as the model does, so their
excess is low), which would show as kept_share of the noise domain below its share of the
batch.
"""

from configs.compare import base


def get_config():
    c = base.get_config()
    c.compare.baseline = "uniform"
    c.compare.arms.uniform = base.arm("configs/tiny.py")
    c.compare.arms.rho1 = base.arm("configs/rho1.py")
    c.compare.seeds = "0,1,2,3,4"
    c.compare.eval_rows = 256
    return c
