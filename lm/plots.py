"""PNG plots of a run, drawn from its metrics.jsonl at the end of training."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lm.metrics import read_metrics  # noqa: E402


def _series(metrics: list, suffix: str, prefix: str) -> dict:
    out: dict = {}
    for m in metrics:
        for k, v in m.items():
            if k.startswith(prefix) and k.endswith(suffix):
                out.setdefault(k[len(prefix):-len(suffix)], []).append((m["step"], v))
    return out


def plot_run(workdir: str) -> list[str]:
    """Writes domain_weights.png (mean instance weight per domain, 1 = uniform), eval_loss.png
    (validation loss per domain) and, if a policy changed them, mixture_weights.png (sampling
    weights per domain); returns the paths written."""
    metrics = read_metrics(workdir)
    written = []
    for name, prefix, suffix, ylabel in (
        ("domain_weights.png", "train/", "/mean_weight", "mean instance weight (1 = uniform)"),
            ("eval_loss.png", "eval/", "/loss", "validation loss (nats/token)"),
            ("mixture_weights.png", "mixture/", "/weight", "domain sampling weight")):
        series = _series(metrics, suffix, prefix)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for domain, points in sorted(series.items()):
            ax.plot(*zip(*points), label=domain)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small", ncol=2)
        ax.grid(alpha=0.3)
        path = os.path.join(workdir, name)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
