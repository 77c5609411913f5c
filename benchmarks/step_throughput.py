"""Train-step throughput: tokens/s, FLOPs per token and MFU against a matmul measured here.

  python benchmarks/step_throughput.py            # both shapes, ~15 min on 2 cores
  python benchmarks/step_throughput.py --quick    # the small shape only, fewer steps

Shapes (f32, one device): "small" is D=128, 4 heads, 2 layers, MLP 512, L=128, vocab 8192,
batch 16 (the shape the issue compares against); "large" is D=512, 8 heads, 4 layers,
MLP 2048, L=256, vocab 8192, batch 16; "125m" (D=768, 12 layers, L=1024, vocab 32k) is for
accelerators (benchmarks/accelerator_check.sh). MFU = achieved FLOP/s / the peak: on a CPU a
large jitted f32 matmul timed in the same process (before and after; the larger is used), on a
known accelerator its published bf16 peak (lm/flops.py). Each one-device shape is also
profiled: forward, backward and the rest of the step, each jitted alone. Then the step time of
each loss-based strategy over uniform's at the small shape, timed in interleaved windows so
machine load falls on all alike. Prints a table and, last, one JSON line.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from runs import experiment  # noqa: E402
from configs import base  # noqa: E402
from lm import flops  # noqa: E402
from lm import train as train_lib  # noqa: E402
from lm.model import ModelConfig  # noqa: E402
from reweight import registry  # noqa: E402
from reweight.interface import Uniform  # noqa: E402

SHAPES = {
    "small": dict(d_model=128, num_heads=4, num_layers=2, mlp_dim=512, seq_len=128, batch=16),
    "large": dict(d_model=512, num_heads=8, num_layers=4, mlp_dim=2048, seq_len=256, batch=16),
    # GPT-2-small-like, ~150M params with the untied 32k vocabulary: for accelerators.
    "125m": dict(d_model=768, num_heads=12, num_layers=12, mlp_dim=2048, seq_len=1024, batch=32,
                 vocab=32768),
}


def _config(shape: dict, dtype: str, devices: int = 1, remat: str = "none"):
    c = base.get_config()
    c.model.update(vocab_size=shape.get("vocab", 8192), d_model=shape["d_model"],
                   num_heads=shape["num_heads"], num_layers=shape["num_layers"],
                   mlp_dim=shape["mlp_dim"], max_len=shape["seq_len"], compute_dtype=dtype,
                   remat=remat)
    c.data.update(seq_len=shape["seq_len"], num_domains=4)
    c.train.update(batch_size=shape["batch"], steps=10_000, warmup_steps=10)
    c.mesh.shape = (1, devices, 1)  # FSDP over the devices: params and batch both sharded
    return c


def profile(cfg, steps: int, repeats: int) -> dict:
    """Seconds per call of the step's parts, each jitted alone at the same shapes: forward
    (per-example losses), forward + backward, and the whole step (adds the optimizer update,
    the weighter and the metrics). The differences say where a step's time goes."""
    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    with rt.context():
        state = rt.init_fn(jax.random.key(0))
        batch = rt.global_batch(_batch(cfg, np.random.default_rng(0)))
        loss = lambda p: train_lib.example_losses(p, batch, rt.model)[0].mean()
        parts = {"forward": jax.jit(loss), "forward+backward": jax.jit(jax.grad(loss))}
        out = {}
        for name, fn in parts.items():
            jax.block_until_ready(fn(state.params))
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(steps):
                    r = fn(state.params)
                jax.block_until_ready(r)
                best = min(best, (time.perf_counter() - t0) / steps)
            out[name] = best
    out["step"] = time_steps(cfg, Uniform(), steps, repeats)
    return out


def _batch(cfg, rng):
    b, l = cfg.train.batch_size, cfg.data.seq_len
    tokens = rng.integers(3, cfg.model.vocab_size, size=(b, l + 1)).astype(np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
            "segment_ids": np.ones((b, l), np.int32),
            "positions": np.broadcast_to(np.arange(l, dtype=np.int32), (b, l)).copy(),
            "loss_mask": np.ones((b, l), np.float32),
            "domain_id": rng.integers(0, 4, size=b).astype(np.int32)}


def time_steps(cfg, weighter, steps: int, repeats: int) -> float:
    """Best seconds per step over `repeats` timed windows of `steps` steps each."""
    return time_side_by_side(cfg, {"_": weighter}, steps, repeats)["_"]


def time_side_by_side(cfg, weighters: dict, steps: int, repeats: int, devices=None) -> dict:
    """Best seconds per step of each weighter's step, their timed windows interleaved so that
    machine load falls on all of them alike."""
    return time_runtimes(cfg, {name: train_lib.build_runtime(cfg, weighter, cfg.data.num_domains,
                                                             devices or jax.devices()[:1])
                               for name, weighter in weighters.items()}, steps, repeats)


def time_runtimes(cfg, runtimes: dict, steps: int, repeats: int, warmup: int = 3) -> dict:
    """Best seconds per step of each runtime's step on one random batch, after `warmup` steps
    (compile), the timed windows of `steps` steps interleaved `repeats` times."""
    runs = {}
    for name, rt in runtimes.items():
        with rt.context():
            state = rt.init_fn(jax.random.key(0))
            batch = rt.global_batch(_batch(cfg, np.random.default_rng(0)))
            for _ in range(warmup):
                state, m = rt.step_fn(state, batch)
            jax.block_until_ready(m)
        runs[name] = [rt, state, batch]
    best = {name: float("inf") for name in runtimes}
    for _ in range(repeats):
        for name, run in runs.items():
            rt, state, batch = run
            with rt.context():
                t0 = time.perf_counter()
                for _ in range(steps):
                    state, m = rt.step_fn(state, batch)
                jax.block_until_ready((state, m))
            best[name] = min(best[name], (time.perf_counter() - t0) / steps)
            run[1] = state
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shape only, fewer steps")
    parser.add_argument("--shapes", default="small,large")
    parser.add_argument("--dtype", default="float32", help="compute dtype: float32 | bfloat16")
    parser.add_argument("--remat", default="none", help="none | full | dots")
    parser.add_argument("--all_devices", action="store_true",
                        help="shard the step over every device (FSDP); default: one device")
    parser.add_argument("--no_overhead", action="store_true",
                        help="skip the reweighting-overhead comparison")
    args = parser.parse_args()
    shapes = ["small"] if args.quick else args.shapes.split(",")
    steps, repeats = (10, 3) if args.quick else (20, 3)
    devices = jax.devices() if args.all_devices else jax.devices()[:1]
    on_cpu = devices[0].platform == "cpu"

    peak_before, source = flops.peak_flops()
    results = []
    for name in shapes:
        cfg = _config(SHAPES[name], args.dtype, len(devices), args.remat)
        sec = time_side_by_side(cfg, {"_": Uniform()}, steps, repeats, devices)["_"]
        tokens = cfg.train.batch_size * cfg.data.seq_len
        mcfg = ModelConfig.from_config(cfg.model)
        fpt = flops.flops_per_token(mcfg, cfg.data.seq_len)
        tok_s = tokens / sec
        row = {"shape": name, "ms_per_step": 1e3 * sec, "tokens_per_s": tok_s,
               "flops_per_token": fpt, "gflops": tok_s * fpt / 1e9}
        if len(devices) == 1:  # fewer, shorter windows: each part is timed like the step
            parts = profile(cfg, max(steps // 4, 3), 2)
            row["profile_ms"] = {k: 1e3 * v for k, v in parts.items()}
        results.append(row)
    overhead = {}
    if not args.no_overhead:
        overhead_cfg = _config(SHAPES["small"], args.dtype)
        weighters = {"uniform": Uniform()}
        for strategy in ("linupper", "quadratic", "extremes"):
            rcfg = overhead_cfg.copy_and_resolve_references()
            rcfg.reweight.update(instance="loss_based", loss_based=dict(strategy=strategy, r=0.4))
            weighters[strategy] = registry.make_weighter(rcfg, experiment.Env(rcfg))
        times = time_side_by_side(overhead_cfg, weighters, steps, repeats + 2)
        overhead = {name: t / times["uniform"] for name, t in times.items()}
    peak_after = flops.peak_flops()[0] if on_cpu else peak_before
    peak = max(peak_before, peak_after)
    for r in results:
        r["mfu"] = r["gflops"] * 1e9 / (peak * len(devices))

    machine = (f"{platform.machine()} {os.cpu_count()} cores, {len(devices)} x "
               f"{devices[0].device_kind}")
    print(f"machine: {machine}; peak {peak_before / 1e9:.1f} GFLOP/s/device ({source}), "
          f"{peak_after / 1e9:.1f} at the end (MFU uses the larger)")
    print(f"{'shape':8} {'ms/step':>9} {'tokens/s':>10} {'MFLOP/tok':>10} {'GFLOP/s':>8} {'MFU':>6}")
    for r in results:
        print(f"{r['shape']:8} {r['ms_per_step']:9.1f} {r['tokens_per_s']:10.0f} "
              f"{r['flops_per_token'] / 1e6:10.2f} {r['gflops']:8.1f} {r['mfu']:6.1%}")
    for r in results:
        if "profile_ms" in r:
            p = r["profile_ms"]
            print(f"  {r['shape']}: forward {p['forward']:.1f} ms, backward "
                  f"{p['forward+backward'] - p['forward']:.1f} ms, optimizer + weights + metrics "
                  f"{p['step'] - p['forward+backward']:.1f} ms of a {p['step']:.1f} ms step")
    if overhead:
        print("step time / uniform, small shape, interleaved: " +
              ", ".join(f"{n} {o:.3f}" for n, o in overhead.items() if n != "uniform"))
    print(json.dumps({"benchmark": "step_throughput", "machine": machine, "dtype": args.dtype,
                      "remat": args.remat, "peak_gflops_per_device": peak / 1e9,
                      "peak_source": source, "results": results,
                      "step_time_vs_uniform": overhead}))


if __name__ == "__main__":
    main()
