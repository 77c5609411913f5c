"""PNG plots of a run, drawn from its metrics.jsonl at the end of training. Every line is a
labelled domain; a plot with nothing to show (uniform instance weights) is not drawn."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lm.metrics import read_metrics  # noqa: E402


def _series(metrics: list, prefix: str, suffix: str) -> dict:
    """domain -> [(step, value)] of the keys PREFIX/<domain>/SUFFIX (aggregates left out)."""
    out: dict = {}
    for m in metrics:
        for k, v in m.items():
            parts = k.split("/")
            if len(parts) == 3 and parts[0] == prefix and parts[2] == suffix:
                out.setdefault(parts[1], []).append((m["step"], v))
    return out


def plot_run(workdir: str) -> list[str]:
    """Writes eval_loss.png (validation loss per domain; held-out domains dashed),
    domain_weights.png (mean instance weight per domain, 1 = uniform) where a weighter moved
    them, and mixture_weights.png (sampling weights per domain, held to the last step) where a
    policy set them; returns the paths written."""
    metrics = read_metrics(workdir)
    if not metrics:
        return []
    last = max(m["step"] for m in metrics)
    trained = set(_series(metrics, "train", "loss"))
    written = []
    plots = {
        "eval_loss.png": (_series(metrics, "eval", "loss"), "validation loss (nats/token)"),
        "domain_weights.png": (_series(metrics, "train", "mean_weight"),
                               "mean instance weight (1 = uniform)"),
        "mixture_weights.png": (_series(metrics, "mixture", "weight"), "domain sampling weight"),
    }
    for name, (series, ylabel) in plots.items():
        if not series:
            continue
        if name == "domain_weights.png" and all(
                np.allclose([v for _, v in points], 1.0) for points in series.values()):
            continue  # uniform weights: a flat line at 1 says nothing
        fig, ax = plt.subplots(figsize=(7, 4))
        for domain, points in sorted(series.items()):
            steps, values = map(list, zip(*points))
            if name == "mixture_weights.png":  # a weight holds until the next change
                ax.step(steps + [last], values + values[-1:], where="post", label=domain)
            else:
                ax.plot(steps, values, label=domain,
                        linestyle="--" if name == "eval_loss.png" and domain not in trained
                        else "-")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small", ncol=2)
        ax.grid(alpha=0.3)
        path = os.path.join(workdir, name)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
