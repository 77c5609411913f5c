"""Is the testbed out of the unigram regime? The uniform run's eval curve against each domain's
unigram entropy.

  make testbed                      # once: corpus, the 1024-piece BPE, planted domains
  python benchmarks/testbed.py      # trains configs/testbed.py (seed 0) unless already done
  python benchmarks/testbed.py --quick     # 150 steps: a few minutes
  python benchmarks/testbed.py --workdir=DIR --config=configs/testbed.py   # any run

A domain's unigram entropy H (data/unigram.py) is the loss of the best model that knows only
that domain's token frequencies; an eval loss below it is something the model learnt from
context. Scale: the configs/testbed.py model (1.2M params, vocabulary 1024, 500 steps of
16 x 128 tokens, ~1M tokens). H is measured on the same validation files the eval reads (up to
`--entropy_tokens` tokens each). Writes docs/testbed_unigram.png (with --plot) and prints a
table and, last, one JSON line.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import records, sources, unigram  # noqa: E402
from lm.metrics import read_metrics  # noqa: E402
from runs import experiment, overrides  # noqa: E402


def domain_entropies(cfg, max_tokens: int) -> dict[str, float]:
    """Each training domain's unigram entropy (nats/token) on its validation files."""
    source = sources.source_of(cfg)
    vocab = source.vocab()
    out = {}
    for spec in source.specs:
        files = records.split_files(spec.pattern, "validation", spec.unsplit) or []
        if spec.kind == "tfds" or not files:
            continue
        texts = (records.parse_line(spec.kind, spec.text_key, f"{path}", raw)
                 for path in files for raw in records.open_lines(path))
        counts = unigram.token_counts(texts, vocab.encode, cfg.model.vocab_size, max_tokens)
        out[spec.name] = unigram.entropy(counts)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/testbed.py")
    p.add_argument("--workdir", default="workdirs/testbed")
    p.add_argument("--quick", action="store_true", help="150 steps")
    p.add_argument("--entropy_tokens", type=int, default=1_000_000)
    p.add_argument("--plot", default="", help="write the curves to this .png")
    p.add_argument("--allow_config_change", action="store_true",
                   help="read a finished run whose recorded config lacks newer fields")
    args = p.parse_args(argv)
    changes = "train.progress_bar=False;train.eval_at_start=True"
    if args.quick:
        changes += ";train.steps=150;train.eval_every=50;train.warmup_steps=15"
    cfg = overrides.load_config_file(args.config)
    overrides.apply_overrides(cfg, changes, "benchmarks/testbed.py")
    # Nothing to do if it trained to the end before.
    experiment.run(cfg, args.workdir, allow_config_change=args.allow_config_change)
    entropy = domain_entropies(cfg, args.entropy_tokens)
    metrics = read_metrics(args.workdir)
    evals = [m for m in metrics if "eval/loss" in m]
    train_s = [m["elapsed_s"] for m in metrics if "elapsed_s" in m][-1]
    names = list(entropy)
    print(f"{'step':>6} " + " ".join(f"{n:>10}" for n in names))
    print(f"{'H_uni':>6} " + " ".join(f"{entropy[n]:10.3f}" for n in names))
    for m in evals:
        print(f"{m['step']:>6} " + " ".join(f"{m[f'eval/{n}/loss']:10.3f}" for n in names))
    final = evals[-1]
    below = {n: entropy[n] - final[f"eval/{n}/loss"] for n in names}
    first_below = {}
    for n in names:
        steps = [m["step"] for m in evals if m[f"eval/{n}/loss"] < entropy[n]]
        first_below[n] = steps[0] if steps else None
    print(f"final loss below the unigram entropy by (nats): "
          + ", ".join(f"{n} {v:+.3f}" for n, v in below.items()))
    if args.plot:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
        fig, ax = plt.subplots(figsize=(7, 4.2))
        steps = [m["step"] for m in evals]
        for i, n in enumerate(names):
            color = f"C{i}"
            ax.plot(steps, [m[f"eval/{n}/loss"] for m in evals], color=color, marker="o",
                    ms=3, label=f"{n} eval loss")
            ax.axhline(entropy[n], color=color, ls=":", lw=1)
        ax.plot([], [], color="gray", ls=":", label="unigram entropy (each domain's colour)")
        ax.set_xlabel("step")
        ax.set_ylabel("nats / token")
        ax.set_title(f"{os.path.basename(args.config)}: uniform run vs unigram entropy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    print(json.dumps({"config": args.config, "steps": final["step"],
                      "train_seconds": round(train_s, 1),
                      "unigram_entropy": {n: round(v, 4) for n, v in entropy.items()},
                      "final_eval_loss": {n: round(final[f"eval/{n}/loss"], 4) for n in names},
                      "below_unigram": {n: round(v, 4) for n, v in below.items()},
                      "first_eval_step_below": first_below}))


if __name__ == "__main__":
    main()
