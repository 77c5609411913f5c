"""How much of a training step the host spends waiting for data, at the demo config.

  python benchmarks/data_wait.py            # 200 steps per setting, ~6 min on 2 cores
  python benchmarks/data_wait.py --quick    # 60 steps per setting

Trains configs/tiny.py (D=128, 2 layers, L=128, batch 16, the built-in corpus through seqio,
SentencePiece 8192) through main.run, with the background prefetch thread drawing 1 and 2
batches ahead, one after the other in this process. The loop logs `data_wait_fraction` (time
blocked on the next batch / wall time) every log_every steps; the first window (compilation)
is left out. Needs the corpus (`make corpus`). Prints a table and, last, one JSON line.
"""

import argparse
import json
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from runs import experiment  # noqa: E402
from configs import tiny  # noqa: E402
from lm.metrics import read_metrics  # noqa: E402


def measure(depth: int, steps: int) -> dict:
    cfg = tiny.get_config()
    cfg.train.update(steps=steps, log_every=10, eval_every=0, checkpoint_every=steps,
                     progress_bar=False)
    cfg.data.prefetch = depth
    cfg.data.heldout = False
    cfg.data.eval_rows = 16
    with tempfile.TemporaryDirectory() as workdir:
        experiment.run(cfg, workdir)
        logs = [m for m in read_metrics(workdir) if "data_wait_fraction" in m][1:]
    return {"prefetch": depth, "data_wait_fraction": float(np.mean(
        [m["data_wait_fraction"] for m in logs])), "max_window": float(max(
            m["data_wait_fraction"] for m in logs)),
        "tokens_per_s": float(np.mean([m["tokens_per_s"] for m in logs]))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 60 if args.quick else 200
    rows = [measure(depth, steps) for depth in (1, 2)]
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    print(f"machine: {machine}; configs/tiny.py, {steps} steps per setting")
    print(f"{'prefetch':>8} {'data wait':>10} {'worst window':>13} {'tokens/s':>9}")
    for r in rows:
        print(f"{r['prefetch']:8d} {r['data_wait_fraction']:10.2%} {r['max_window']:13.2%} "
              f"{r['tokens_per_s']:9.0f}")
    print(json.dumps({"benchmark": "data_wait", "machine": machine, "steps": steps,
                      "results": rows}))


if __name__ == "__main__":
    main()
