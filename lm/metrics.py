"""Where a run's numbers go: metrics.jsonl, TensorBoard events and a progress bar.

Only process 0 writes. On resume, lines past the restored step are dropped first, so the
file reads as one unbroken run; its `elapsed_s` goes on from the last kept line, so it counts
the wall time of every invocation up to each step (not the time lost to a crash).
"""

import json
import os
import time
from typing import Sequence

import numpy as np
import tqdm
from tensorboardX import SummaryWriter


class MetricsWriter:

    def __init__(self, workdir: str, *, start_step: int, total_steps: int, enabled: bool = True,
                 progress_bar: bool = True):
        self.enabled = enabled
        self._bar = None
        self._t0, self._elapsed_before = time.perf_counter(), 0.0
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        # From step 0 nothing is kept: a run killed before its first checkpoint committed starts
        # over, and its step-0 lines (host methods acting at 0) are written again.
        kept = _truncate_after(self.path, start_step if start_step > 0 else -1)
        self._elapsed_before = max((r["elapsed_s"] for r in kept if "elapsed_s" in r), default=0.0)
        self._jsonl = open(self.path, "a")
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        if progress_bar:
            self._bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def write(self, step: int, scalars: dict, histograms: dict | None = None) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        for k, v in (histograms or {}).items():
            if np.isfinite(v).all():  # a skipped non-finite step has no histogram
                self._tb.add_histogram(k, np.asarray(v), step)

    def elapsed(self) -> float:
        """Wall seconds of the run so far, earlier invocations included."""
        return self._elapsed_before + time.perf_counter() - self._t0

    def progress(self, step: int, postfix: dict) -> None:
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=True)

    def note(self, text: str) -> None:
        """A line for the person watching (printed above the bar)."""
        if self.enabled:
            (self._bar.write if self._bar is not None else print)(text)

    def close(self) -> None:
        if self.enabled:
            if self._bar is not None:
                self._bar.close()
            self._jsonl.close()
            self._tb.close()


def _truncate_after(path: str, step: int) -> list[dict]:
    """Drops the lines past `step`; returns the records kept."""
    if not os.path.exists(path):
        return []
    keep, records = [], []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the line a killed run was writing
                continue
            if record["step"] <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
                records.append(record)
    with open(path, "w") as f:
        f.writelines(keep)
    return records


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def eval_table(title: str, losses: dict, training: Sequence[str]) -> str:
    """The per-domain eval losses as a short table under `title`: training domains with their
    mean, then held-out domains with theirs."""
    lines = [f"{title} (loss, nats/token)"]
    for label, names in (("training", [n for n in training if n in losses]),
                         ("held-out", [n for n in losses if n not in training])):
        if not names:
            continue
        values = [losses[n] for n in names] + [float(np.mean([losses[n] for n in names]))]
        widths = [max(len(n), 6) for n in names] + [6]
        lines.append("  " + " " * 10 + " ".join(n.rjust(w) for n, w in zip(names + ["mean"],
                                                                        widths)))
        lines.append(f"  {label:<10}" + " ".join(f"{v:{w}.3f}" for v, w in zip(values, widths)))
    return "\n".join(lines)
