"""MATES's two probes side by side on a tiny LM, with junk planted in the pool: what selection
costs (FLOPs and wall time, as fractions of the stage's training) and what it buys.

  nice -n 10 python benchmarks/mates.py --quick   # 1 seed x 400 steps x 2 probes
  nice -n 10 python benchmarks/mates.py           # 3 seeds x 600 steps x (random, 2 probes)

Scale: configs/tiny.py (D=128, 2 layers, BPE 8192, L=128, batch 16, 1.6M params) at the
default MATES config (configs/mates.py: stages of 200 steps, 192 probes, 5x pool, keep 20%,
tau 0.5, influence model width 32) on a uniform mix of nine domains: the six built-in ones plus
three kinds of junk, a third of all rows:
  shuffled   books text with the tokens of every document shuffled (corrupted; same words as
             the reference domain, no order),
  duplicated 8 short technical documents repeated 2000 times (benchmarks/reweight_lm.py's),
  offtarget  Go source (the held-out go_src split, trained on here).
Methods, all at equal training steps from the same data: exact (MATES with the exact probe:
one optimizer step per candidate, then the reference set), first_order (<grad L_ref, update>)
and, in full mode, random (MATES's path with equal scores). The probe's reference set is 32
held-out books cloze examples; the reported reference-task loss is on 128 *other* cloze
examples, evaluated at every stage boundary with the six real domains' validation loss.
The nine domains' train rows come from a token store (data/store.py) prepared on first use
under --store (`--store=` tokenizes them on the fly, as before 2026-12-07); before the runs, one
stage's pool is drawn both ways and timed. Per selection the table splits its wall time into
the pool draw, the probes, the fit and the scoring (mates/seconds/*); with --stages 3 or more,
the selections after the first show it without compilation (2026-12-07, idle: 0.238 at the
first, 0.161 at the second, first-order; --quick --stages 3 took 9 min).
In the first_order run, every selection also runs both probes on the same 256 pool candidates
(timed after a warm-up call, kept out of the run's own selection time): their Spearman and
seconds per candidate. Quick mode took 20 min on this 2-core machine shared at load ~7 (the
training steps dominate: 800 of them at ~1 s). Prints a table, then one JSON line.
"""

import argparse
import json
import math
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

import scipy.stats  # noqa: E402

from benchmarks.reweight_lm import make_redundant_domain  # noqa: E402
from configs import mates as mates_config  # noqa: E402
from data import sources  # noqa: E402
from runs import experiment  # noqa: E402
from data import cloze, corpus, domains, mixing, pipeline, store  # noqa: E402
from data import tokenizer, vocabulary  # noqa: E402
from lm.metrics import read_metrics  # noqa: E402
from reweight import mates  # noqa: E402

REAL = corpus.DOMAINS
JUNK = ("shuffled", "duplicated", "offtarget")
METHODS_QUICK, METHODS_FULL = ("exact", "first_order"), ("random", "exact", "first_order")
REFERENCE_ROWS, CLOZE_EVAL_ROWS, CLOZE_LEN = 32, 128, 64
CHECK_ROWS = 256  # pool candidates both probes score at each selection of the first_order run


class CheckedMates(mates.Mates):
    """MATES that, before each selection, scores the first CHECK_ROWS pool rows with both
    probes (the selection's own RNG is untouched, so it selects as plain MATES would) and keeps
    their agreement and cost in `checks`; the check's time is taken out of mates/seconds."""

    def __init__(self, cfg, reference):
        super().__init__(cfg, reference)
        self.checks, self._check_seconds = [], 0.0

    def _influence_scores(self, pool, ctx, stage, rng):
        t0 = time.perf_counter()
        rows = {k: v[:CHECK_ROWS] for k, v in pool.items()}
        chunk = self.m.probe_chunk
        reference = ctx.reference_set(self.reference)
        before, grads = ctx.reference_grad(ctx.params, reference)
        exact_fn = lambda part: ctx.loss_after_step(ctx.params, ctx.opt_state, part, reference)
        first_fn = lambda part: ctx.first_order_change(ctx.params, ctx.opt_state, part, grads)
        out, seconds = {}, {}
        for name, fn in (("exact", exact_fn), ("first_order", first_fn)):
            parts = [ctx.to_global({k: v[i:i + chunk] for k, v in rows.items()})
                     for i in range(0, CHECK_ROWS, chunk)]
            jax.block_until_ready(fn(parts[0]))  # compiled before the clock starts
            t = time.perf_counter()
            out[name] = np.concatenate([np.asarray(fn(p)) for p in parts])
            seconds[name] = (time.perf_counter() - t) / CHECK_ROWS
        out["exact"] = out["exact"] - float(before)
        self.checks.append({
            "step": ctx.step,
            "spearman": float(scipy.stats.spearmanr(out["exact"], out["first_order"]).statistic),
            "pearson": float(scipy.stats.pearsonr(out["exact"], out["first_order"]).statistic),
            "exact_seconds_per_candidate": seconds["exact"],
            "first_order_seconds_per_candidate": seconds["first_order"]})
        self._check_seconds = time.perf_counter() - t0
        return super()._influence_scores(pool, ctx, stage, rng)

    def act(self, ctx):
        metrics = super().act(ctx)
        metrics["mates/seconds"] -= self._check_seconds
        if "mates/stage_train_seconds" in metrics:
            metrics["mates/overhead_seconds_fraction"] = (metrics["mates/seconds"] /
                                                          metrics["mates/stage_train_seconds"])
        return metrics


def checked(cfg, env):
    """The config factory of CheckedMates (config.reweight.selector = "benchmarks.mates:checked")."""
    plain = mates.from_config(cfg, env)
    return CheckedMates(cfg, plain.reference)




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


def _specs(data_dir: str) -> list:
    """The nine domains: the six real ones, shuffled (books' files), duplicated, offtarget."""
    return domains.builtin_domains(data_dir) + [
        domains.parse_domain("shuffled=jsonl:" + os.path.join(data_dir, "corpus", "books",
                                                               "{split}-*.jsonl")),
        domains.parse_domain("duplicated=jsonl:" + make_redundant_domain(data_dir)),
        domains.parse_domain("offtarget=jsonl:" + os.path.join(data_dir, "heldout", "go_src",
                                                               "validation-*.jsonl"))]


def store_mixer(cfg, root: str):
    """The nine domains' train rows from a token store under `root` (prepared on first use,
    data/store.py; shuffled reads books' prepared rows through its own permutation)."""
    data_dir = cfg.data.data_dir
    specs = _specs(data_dir)
    vocab_args = {"spec": "builtin", "data_dir": data_dir, "vocab_size": cfg.model.vocab_size}
    store.prepare([s for s in specs if s.name != "shuffled"], ("train",), root, vocab_args)
    v = vocabulary.load(**vocab_args)
    streams = [store.IndexedRows(store.Split.open(
        root, "books" if s.name == "shuffled" else s.name, "train", cfg.data.seq_len,
        v.start_id, v.eos_id), pipeline.stream_seed(cfg.seed, i)) for i, s in enumerate(specs)]
    names = [s.name for s in specs]
    return mixing.Mixer(streams, names, global_batch=cfg.train.batch_size,
                        weights=mixing.parse_weights("uniform", names), seed=cfg.seed)


def make_data(cfg, vocab, store_root: str = ""):
    """(train source over the nine domains, eval batches: six real domains + held-out cloze);
    the train rows from the token store under `store_root`, or tokenized on the fly ("")."""
    data_dir = cfg.data.data_dir
    specs = _specs(data_dir)
    common = dict(vocab=vocab, seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size)
    mixer = store_mixer(cfg, store_root) if store_root else pipeline.make_train_iter(
        specs, weights="uniform", seed=cfg.seed,
        shuffle_buffer_size=cfg.data.shuffle_buffer_size, **common)
    evals = pipeline.make_eval_batches(specs[:len(REAL)], max_rows_per_domain=cfg.data.eval_rows,
                                       **common)
    evals["cloze"] = cloze.batches(
        cloze.cloze_rows(data_dir, "books", vocab.encode, CLOZE_LEN, CLOZE_EVAL_ROWS,
                         skip=REFERENCE_ROWS), cfg.train.batch_size)
    return sources.Data(ShuffleDomain(mixer, "shuffled", cfg.seed), evals,
                        tuple(s.name for s in specs))


def pool_draw_seconds(cfg, vocab, store_root: str) -> dict:
    """Seconds to draw one stage's pool (stage / selection ratio batches) from a fresh mixer,
    from the store and on the fly, one after the other (each includes building the mixer)."""
    m = cfg.reweight.mates
    batches = math.ceil(m.stage_steps / m.selection_ratio)
    out = {}
    for name, root in (("store", store_root), ("on_the_fly", "")):
        t = time.perf_counter()
        src = make_data(cfg, vocab, root).source
        built = time.perf_counter()
        for _ in range(batches):
            next(src)
        out[name] = {"build": built - t, "draw": time.perf_counter() - built}
    return out


def config(method: str, steps: int, seed: int):
    c = mates_config.get_config()
    c.seed = seed
    c.data.data_dir = os.path.join(ROOT, c.data.data_dir)
    c.data.eval_rows = 32
    stage = c.reweight.mates.stage_steps
    c.train.update(steps=steps, eval_every=stage, checkpoint_every=steps,
                   warmup_steps=steps // 10, log_every=50, progress_bar=False)
    c.reweight.selector = "benchmarks.mates:checked" if method == "first_order" else "mates"
    c.reweight.mates.update(mode="random" if method == "random" else "mates",
                            probe="exact" if method == "exact" else "first_order",
                            reference="cloze", reference_domain="books",
                            reference_rows=REFERENCE_ROWS, reference_len=CLOZE_LEN)
    return c


def _real_loss(m: dict) -> float:
    return float(np.mean([m[f"eval/{d}/loss"] for d in REAL]))


def junk_share(workdir: str) -> list:
    """Per stage, the share of junk rows trained on: stage 0 the pool's mix (as drawn), later
    stages the selected rows'."""
    stages = [m for m in read_metrics(workdir) if "mates/stage" in m]
    first = sum(stages[0][f"mates/pool/{d}/share"] for d in JUNK)
    return [first] + [sum(m[f"mates/selected/{d}/share"] for d in JUNK) for m in stages]


PARTS = ("draw", "probe", "fit", "score")  # a selection's timed parts (mates/seconds/*)
STAGE_KEYS = {"probe_flops": "mates/probe_flops_fraction", "fit_flops": "mates/fit_flops_fraction",
              "score_flops": "mates/score_flops_fraction", "flops": "mates/overhead_fraction",
              "seconds": "mates/overhead_seconds_fraction",
              "holdout_spearman": "mates/holdout_spearman",
              "stage_train_seconds": "mates/stage_train_seconds",
              **{f"{p}_seconds": f"mates/seconds/{p}" for p in PARTS},
              "selection_seconds": "mates/seconds"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default 0 / 0,1,2)")
    parser.add_argument("--stages", type=int, default=0,
                        help="stages a run trains (default 2 / 3): from 3 on, the selections "
                             "after the first show the cost without compilation")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "workdirs", "bench_mates"))
    parser.add_argument("--store", default=os.path.join(ROOT, "data_cache", "stores",
                                                         "bench_mates"),
                        help="the nine domains' token store (prepared on first use); "
                             "'' tokenizes on the fly")
    args = parser.parse_args()
    stage = mates_config.get_config().reweight.mates.stage_steps
    seeds, steps, methods = (([0], 2 * stage, METHODS_QUICK) if args.quick else
                             ([0, 1, 2], 3 * stage, METHODS_FULL))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else seeds
    steps = args.stages * stage if args.stages else steps
    shutil.rmtree(args.workdir, ignore_errors=True)
    vocab = tokenizer.load_vocabulary(str(tokenizer.model_path(
        os.path.join(ROOT, "data_cache"), 8192)))

    t0 = time.perf_counter()
    if args.store:
        store_mixer(config("exact", steps, seeds[0]), args.store)  # prepared before the clock
    pool_draw = pool_draw_seconds(config("exact", steps, seeds[0]), vocab, args.store) \
        if args.store else {}
    for name, t in pool_draw.items():
        print(f"one stage's pool ({name}): build {t['build']:.2f} s, draw {t['draw']:.2f} s",
              flush=True)
    runs: dict = {m: [] for m in methods}
    checks = []
    for seed in seeds:
        data = make_data(config("exact", steps, seed), vocab, args.store)
        start_state = data.source.get_state()  # every method starts from the same data state
        for method in methods:
            cfg = config(method, steps, seed)
            data.source.set_state(start_state)
            workdir = os.path.join(args.workdir, f"{method}_seed{seed}")
            t_run = time.perf_counter()
            exp = experiment.build(cfg, data=data)
            exp.train(workdir, devices=jax.devices()[:1])
            if method == "first_order":
                checks += [{"seed": seed, **c} for c in exp.methods[0].checks]
            metrics = read_metrics(workdir)
            evals = [m for m in metrics if "eval/cloze/loss" in m]
            stages = [m for m in metrics if "mates/overhead_fraction" in m]
            runs[method].append({
                "curve": [(m["step"], m["eval/cloze/loss"], _real_loss(m)) for m in evals],
                "cloze_loss": evals[-1]["eval/cloze/loss"],
                "cloze_accuracy": evals[-1]["eval/cloze/accuracy"],
                "real_loss": _real_loss(evals[-1]),
                "per_domain": {d: evals[-1][f"eval/{d}/loss"] for d in REAL},
                "junk_share_per_stage": junk_share(workdir),
                **{f"{k}_per_stage": [m.get(v, float("nan")) for m in stages]
                   for k, v in STAGE_KEYS.items()},
                "oracle_influence_per_stage": [
                    {d: m.get(f"mates/oracle/{d}/influence") for d in REAL + JUNK}
                    for m in stages],
                "selection_seconds": sum(m.get("mates/seconds", 0.0) for m in metrics),
                "run_seconds": time.perf_counter() - t_run,
            })
            r = runs[method][-1]
            print(f"seed {seed} {method:11} cloze {r['cloze_loss']:.4f}  real {r['real_loss']:.4f}"
                  f"  junk share {[round(j, 3) for j in r['junk_share_per_stage']]}  overhead "
                  f"FLOPs {[round(x, 4) for x in r['flops_per_stage']]}  wall "
                  f"{[round(x, 4) for x in r['seconds_per_stage']]}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in methods:
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
    mean = lambda rs, k: float(np.nanmean([x for r in rs for x in r[k]])) if rs[0][k] else 0.0
    print(f"\nmachine: {machine}; {len(seeds)} seeds x {steps} steps, stages of {stage}; "
          f"plot: {png}")
    print(f"{'method':11} {'cloze loss':>18} {'real val loss':>18} {'junk share/stage':>18} "
          f"{'holdout rho':>11} {'probe':>7} {'fit':>7} {'score':>7} {'FLOPs':>7} {'wall':>7}")
    summary = {}
    for method in methods:
        rs = runs[method]
        junk = np.mean([r["junk_share_per_stage"] for r in rs], 0)
        summary[method] = {"cloze_loss_mean": float(np.mean([r["cloze_loss"] for r in rs])),
                           "real_loss_mean": float(np.mean([r["real_loss"] for r in rs])),
                           "junk_share_per_stage_mean": junk.tolist(),
                           **{k: mean(rs, f"{k}_per_stage") for k in STAGE_KEYS}}
        s_ = summary[method]
        print(f"{method:11} {ms([r['cloze_loss'] for r in rs]):>18} "
              f"{ms([r['real_loss'] for r in rs]):>18} "
              f"{' '.join(f'{j:.2f}' for j in junk):>18} {s_['holdout_spearman']:>11.3f} "
              + " ".join(f"{s_[k]:>7.4f}" for k in ("probe_flops", "fit_flops", "score_flops",
                                                   "flops", "seconds")))
    print("(FLOPs and wall: selection / the stage's training, per stage; wall includes the "
          "first selection's compilation)")
    print(f"\nselection wall time by part, seconds, per selection (mean over seeds; the first "
          f"compiles; pool from {'the store' if args.store else 'on-the-fly tokenization'}):")
    print(f"{'method':11} {'selection':>9} {'stage train':>11} {'seconds':>9} {'fraction':>8} "
          + " ".join(f"{p:>7}" for p in PARTS))
    for method in methods:
        per = lambda k: np.nanmean([r[f"{k}_per_stage"] for r in runs[method]], 0)
        for i, fraction in enumerate(per("seconds")):
            print(f"{method:11} {i + 1:>9} {per('stage_train_seconds')[i]:>11.1f} "
                  f"{per('selection_seconds')[i]:>9.2f} {fraction:>8.3f} "
                  + " ".join(f"{per(p + '_seconds')[i]:>7.2f}" for p in PARTS))
    print(f"\nboth probes on the same {CHECK_ROWS} pool candidates, in the first_order run:")
    for c in checks:
        print(f"seed {c['seed']} step {c['step']}: Spearman {c['spearman']:.4f}  Pearson "
              f"{c['pearson']:.4f}  s/candidate exact {c['exact_seconds_per_candidate']:.4f} "
              f"first_order {c['first_order_seconds_per_candidate']:.4f}")
    print(json.dumps({"benchmark": "mates", "machine": machine, "seeds": seeds, "steps": steps,
                      "stage_steps": stage, "store": args.store, "pool_draw": pool_draw,
                      "summary": summary, "probe_checks": checks,
                      "runs": runs, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
