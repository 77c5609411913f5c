"""Step time with a frozen reference model's forward in the step, over uniform's, side by side.

  python benchmarks/reference_step.py            # small and large CPU shapes
  python benchmarks/reference_step.py --quick    # 2 windows of 3 steps (11 min on a loaded
                                                 # 2-core CPU, most of it the large shape)

At each shape of benchmarks/step_throughput.py (f32, one device), three steps on the same
batch, their timed windows interleaved so machine load falls on all alike: `uniform` (no
reference), `reference` (uniform weights plus the reference's forward and the per-domain
clipped excess: what DoReMi's per-token form costs) and `rho1` (the forward plus RHO-1's
global top-k over the batch's tokens). The reference has the trained model's shape (params of
a fresh init, written to a temporary workdir and loaded as a run loads one). A forward is
about a third of a forward plus backward, so the expected ratio is about 1.3x. Prints a table
and, last, one JSON line.
"""

import argparse
import json
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from runs import experiment  # noqa: E402
from lm import reference as reference_lib  # noqa: E402
from lm import train as train_lib  # noqa: E402
from lm import workdir as workdir_lib  # noqa: E402
from reweight.interface import Uniform  # noqa: E402
from reweight.rho1 import Rho1  # noqa: E402
from step_throughput import SHAPES, _config, time_runtimes  # noqa: E402


def _reference(cfg, directory: str) -> reference_lib.ReferenceSpec:
    """A workdir holding a fresh init of `cfg`'s model as its step-1 params."""
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    with rt.context():
        params = rt.init_fn(jax.random.key(1)).params
    workdir_lib.record(cfg, directory)
    with ocp.StandardCheckpointer() as w:
        w.save(os.path.join(os.path.abspath(directory), "checkpoints", "1", "params"), params)
    return reference_lib.ReferenceSpec("config.reference.workdir", directory,
                                       experiment.recorded_config(directory).model)


def time_arms(cfg, spec, steps: int, repeats: int) -> dict:
    """Best seconds per step of each arm, windows interleaved."""
    names = tuple(f"d{d}" for d in range(cfg.data.num_domains))
    arms = {"uniform": (Uniform(), None), "reference": (Uniform(), "workdir"),
            "rho1": (Rho1(0.6, names), "workdir")}
    runtimes = {name: train_lib.build_runtime(cfg, weighter, cfg.data.num_domains,
                                              jax.devices()[:1],
                                              references={"workdir": spec} if ref else None,
                                              step_reference=ref)
                for name, (weighter, ref) in arms.items()}
    return time_runtimes(cfg, runtimes, steps, repeats, warmup=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter windows")
    parser.add_argument("--shapes", default="small,large")
    args = parser.parse_args()
    steps, repeats = (3, 2) if args.quick else (10, 5)
    results = []
    for shape in args.shapes.split(","):
        cfg = _config(SHAPES[shape], "float32")
        with tempfile.TemporaryDirectory() as tmp:
            times = time_arms(cfg, _reference(cfg, tmp), steps, repeats)
        results.append({"shape": shape, "ms_per_step": {k: 1e3 * v for k, v in times.items()},
                        "vs_uniform": {k: v / times["uniform"] for k, v in times.items()}})
        print(f"{shape}: {results[-1]}", flush=True)
    device = jax.devices()[0]
    machine = f"{platform.machine()} {os.cpu_count()} cores, 1 x {device.device_kind}"
    print(f"machine: {machine}; best of {repeats} interleaved windows of {steps} steps")
    print(f"{'shape':6} {'uniform ms':>11} {'+reference ms':>14} {'rho1 ms':>9} "
          f"{'ref/uniform':>12} {'rho1/uniform':>13}")
    for r in results:
        t, v = r["ms_per_step"], r["vs_uniform"]
        print(f"{r['shape']:6} {t['uniform']:11.1f} {t['reference']:14.1f} {t['rho1']:9.1f} "
              f"{v['reference']:12.3f} {v['rho1']:13.3f}")
    print(json.dumps({"benchmark": "reference_step", "machine": machine, "steps": steps,
                      "repeats": repeats, "results": results}))


if __name__ == "__main__":
    main()
