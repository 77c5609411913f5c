"""MATES vs random selection vs no selection on a tiny LM, with junk planted in the pool.

  nice -n 10 python benchmarks/mates.py           # 3 methods x 3 seeds x 300 steps
  nice -n 10 python benchmarks/mates.py --quick   # 1 seed x 200 steps: ~24 min when shared
  nice -n 10 python benchmarks/mates.py --quick --seeds=1 --workdir=workdirs/bench_mates_1

Scale: configs/tiny.py (D=128, 2 layers, BPE 8192, L=128, batch 16) on a uniform mix of nine
domains: the six built-in ones plus three kinds of junk, a third of all rows:
  shuffled   books text with the tokens of every document shuffled (corrupted; same words as
             the reference domain, no order),
  duplicated 8 short technical documents repeated 2000 times (benchmarks/reweight_lm.py's),
  offtarget  Go source (the held-out go_src split, trained on here).
Methods, all at equal training steps: none (the mix as drawn), random (MATES's path with equal
scores: a uniform 20% of each stage's 5x pool) and mates (probe -> influence model -> Gumbel-
top-k, tau 0.5). Stages of 100 steps, stage 0 as drawn. The reference set of the probe is 32
held-out books cloze examples (last word of a sentence); the reported reference-task loss is
on 128 *other* cloze examples from the same split, evaluated every 100 steps with the six real
domains' validation loss.

Reports (mean +- std over seeds): final cloze loss and accuracy, real-domain loss, the junk
share of the rows each stage trained on, the influence model's hold-out Spearman per stage and
the probing + fitting + scoring FLOPs as a fraction of training FLOPs; writes mates.png (cloze
and real-domain loss vs step). Prints a table, then one JSON line.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.reweight_lm import make_redundant_domain  # noqa: E402
from configs import tiny  # noqa: E402
import experiment  # noqa: E402
from data import cloze, corpus, domains, pipeline, tokenizer  # noqa: E402
from lm.metrics import read_metrics  # noqa: E402

REAL = corpus.DOMAINS
JUNK = ("shuffled", "duplicated", "offtarget")
METHODS = ("none", "random", "mates")
REFERENCE_ROWS, CLOZE_EVAL_ROWS, CLOZE_LEN = 32, 128, 64


class ShuffleDomain:
    """Wraps the mixer: rows of one domain get the tokens of each document shuffled, with an
    RNG keyed by the mixer's batch count (so a resumed run shuffles identically)."""

    def __init__(self, inner, domain: str, seed: int):
        self.inner, self.seed = inner, seed
        self.domain_names = inner.domain_names
        self.domain_id = list(inner.domain_names).index(domain)

    def __next__(self) -> dict:
        rng = np.random.default_rng([self.seed, self.inner.batches])
        batch = next(self.inner)
        targets = batch["targets"].copy()
        for r in np.nonzero(batch["domain_id"] == self.domain_id)[0]:
            seg = batch["segment_ids"][r]
            for s in np.unique(seg[seg > 0]):
                (where,) = np.nonzero(seg == s)
                targets[r, where] = rng.permutation(targets[r, where])
        inputs = np.where(batch["positions"] == 0, 0, np.roll(targets, 1, axis=1))
        return {**batch, "targets": targets, "inputs": inputs.astype(np.int32)}

    def get_state(self) -> dict:
        return self.inner.get_state()

    def set_state(self, state: dict) -> None:
        self.inner.set_state(state)

    def set_weights(self, weights) -> None:
        self.inner.set_weights(weights)


def make_data(cfg, vocab):
    """(train source over the nine domains, eval batches: six real domains + held-out cloze)."""
    data_dir = cfg.data.data_dir
    specs = domains.builtin_domains(data_dir) + [
        domains.parse_domain("shuffled=jsonl:" + os.path.join(data_dir, "corpus", "books",
                                                               "{split}-*.jsonl")),
        domains.parse_domain("duplicated=jsonl:" + make_redundant_domain(data_dir)),
        domains.parse_domain("offtarget=jsonl:" + os.path.join(data_dir, "heldout", "go_src",
                                                               "validation-*.jsonl"))]
    common = dict(vocab=vocab, seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size)
    mixer = pipeline.make_train_iter(specs, weights="uniform", seed=cfg.seed,
                                     shuffle_buffer_size=cfg.data.shuffle_buffer_size, **common)
    evals = pipeline.make_eval_batches(specs[:len(REAL)], max_rows_per_domain=cfg.data.eval_rows,
                                       **common)
    evals["cloze"] = cloze.batches(
        cloze.cloze_rows(data_dir, "books", vocab.encode, CLOZE_LEN, CLOZE_EVAL_ROWS,
                         skip=REFERENCE_ROWS), cfg.train.batch_size)
    return experiment.Data(ShuffleDomain(mixer, "shuffled", cfg.seed), evals,
                           tuple(s.name for s in specs))


def config(method: str, steps: int, seed: int):
    c = tiny.get_config()
    c.seed = seed
    c.data.data_dir = os.path.join(ROOT, c.data.data_dir)
    c.data.eval_rows = 32
    c.train.update(steps=steps, eval_every=100, checkpoint_every=steps, warmup_steps=steps // 10,
                   log_every=50, progress_bar=False)
    c.reweight.selector = "none" if method == "none" else "mates"
    c.reweight.mates.update(mode="random" if method == "random" else "mates", stage_steps=100,
                            selection_ratio=0.2, tau=0.5, probe_size=160, probe_chunk=8,
                            reference="cloze", reference_domain="books",
                            reference_rows=REFERENCE_ROWS, reference_len=CLOZE_LEN)
    return c


def _real_loss(m: dict) -> float:
    return float(np.mean([m[f"eval/{d}/loss"] for d in REAL]))


def junk_share(workdir: str, method: str, steps: int) -> list:
    """Per stage, the share of junk rows trained on: the selected share for the staged methods;
    for `none` (no pool) the mix's share, 3/9."""
    stages = [m for m in read_metrics(workdir) if "mates/stage" in m]
    if method == "none":
        return [len(JUNK) / (len(REAL) + len(JUNK))] * (steps // 100)
    first = sum(stages[0][f"mates/pool/{d}/share"] for d in JUNK)  # stage 0 ~ the pool's mix
    return [first] + [sum(m[f"mates/selected/{d}/share"] for d in JUNK) for m in stages]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default 0 / 0,1,2)")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "workdirs", "bench_mates"))
    args = parser.parse_args()
    seeds, steps = ([0], 200) if args.quick else ([0, 1, 2], 300)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else seeds
    shutil.rmtree(args.workdir, ignore_errors=True)
    vocab = tokenizer.load_vocabulary(str(tokenizer.model_path(
        os.path.join(ROOT, "data_cache"), 8192)))

    t0 = time.perf_counter()
    runs: dict = {m: [] for m in METHODS}
    for seed in seeds:
        data = make_data(config("none", steps, seed), vocab)
        start_state = data.source.get_state()  # every method starts from the same data state
        for method in METHODS:
            cfg = config(method, steps, seed)
            data.source.set_state(start_state)
            workdir = os.path.join(args.workdir, f"{method}_seed{seed}")
            t_run = time.perf_counter()
            experiment.build(cfg, data=data).train(workdir, devices=jax.devices()[:1])
            metrics = read_metrics(workdir)
            evals = [m for m in metrics if "eval/cloze/loss" in m]
            stages = [m for m in metrics if "mates/holdout_spearman" in m]
            runs[method].append({
                "curve": [(m["step"], m["eval/cloze/loss"], _real_loss(m)) for m in evals],
                "cloze_loss": evals[-1]["eval/cloze/loss"],
                "cloze_accuracy": evals[-1]["eval/cloze/accuracy"],
                "real_loss": _real_loss(evals[-1]),
                "per_domain": {d: evals[-1][f"eval/{d}/loss"] for d in REAL},
                "junk_share_per_stage": junk_share(workdir, method, steps),
                "spearman_per_stage": [m["mates/holdout_spearman"] for m in stages],
                "pearson_per_stage": [m["mates/holdout_pearson"] for m in stages],
                "oracle_influence_per_stage": [
                    {d: m.get(f"mates/oracle/{d}/influence") for d in REAL + JUNK}
                    for m in stages],
                "overhead_fraction_per_stage": [m["mates/overhead_fraction"] for m in stages],
                "probe_fraction_per_stage": [m["mates/probe_flops_fraction"] for m in stages],
                "selection_seconds": sum(m.get("mates/seconds", 0.0) for m in metrics),
                "run_seconds": time.perf_counter() - t_run,
            })
            r = runs[method][-1]
            print(f"seed {seed} {method:7} cloze {r['cloze_loss']:.4f}  real {r['real_loss']:.4f}"
                  f"  junk share {[round(j, 3) for j in r['junk_share_per_stage']]}  spearman "
                  f"{[round(s, 3) for s in r['spearman_per_stage']]}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in METHODS:
        c = np.asarray([r["curve"] for r in runs[method]])  # seeds x evals x 3
        for ax, col in zip(axes, (1, 2)):
            ax.plot(c[0, :, 0], c[:, :, col].mean(0), marker="o", label=method)
    for ax, label in zip(axes, ("held-out cloze loss (answer tokens)",
                                "validation loss, mean of 6 real domains")):
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    png = os.path.join(args.workdir, "mates.png")
    fig.savefig(png, dpi=100, bbox_inches="tight")

    machine = f"{platform.machine()} {os.cpu_count()} cores (shared), {jax.devices()[0].platform}"
    ms = lambda xs: f"{np.mean(xs):.4f} +- {np.std(xs):.4f}"
    print(f"\nmachine: {machine}; {len(seeds)} seeds x {steps} steps, stages of 100; "
          f"plot: {png}")
    print(f"{'method':8} {'cloze loss':>18} {'cloze acc':>8} {'real val loss':>18} "
          f"{'junk share/stage':>22} {'spearman/stage':>16} {'overhead':>9}")
    summary = {}
    for method in METHODS:
        rs = runs[method]
        junk = np.mean([r["junk_share_per_stage"] for r in rs], 0)
        spear = np.mean([r["spearman_per_stage"] for r in rs], 0) if rs[0]["spearman_per_stage"] \
            else np.zeros(0)
        over = np.mean([np.mean(r["overhead_fraction_per_stage"]) for r in rs]) \
            if rs[0]["overhead_fraction_per_stage"] else 0.0
        summary[method] = {"cloze_loss_mean": float(np.mean([r["cloze_loss"] for r in rs])),
                           "real_loss_mean": float(np.mean([r["real_loss"] for r in rs])),
                           "junk_share_per_stage_mean": junk.tolist(),
                           "spearman_per_stage_mean": spear.tolist(),
                           "overhead_fraction_mean": float(over)}
        print(f"{method:8} {ms([r['cloze_loss'] for r in rs]):>18} "
              f"{np.mean([r['cloze_accuracy'] for r in rs]):>8.3f} "
              f"{ms([r['real_loss'] for r in rs]):>18} "
              f"{' '.join(f'{j:.2f}' for j in junk):>22} "
              f"{' '.join(f'{s:.2f}' for s in spear):>16} {over:>9.3f}")
    gap = lambda a, b: [x["cloze_loss"] - y["cloze_loss"] for x, y in zip(runs[a], runs[b])]
    print(f"cloze loss, random - mates (nats, per seed): {np.round(gap('random', 'mates'), 4)}")
    print(json.dumps({"benchmark": "mates", "machine": machine, "seeds": seeds, "steps": steps,
                      "summary": summary, "runs": runs,
                      "cloze_gain_over_random": gap("random", "mates"),
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
