"""lm-eval adapter throughput (lm/harness.py) against the train step, side by side in one process.

  python benchmarks/harness_throughput.py --quick          # testbed shape, ~1.5 min on 2 cores
  python benchmarks/harness_throughput.py                  # testbed shape, 4x the requests
  python benchmarks/harness_throughput.py --shapes=125m --dtype=bfloat16   # accelerators

Shapes (one device, random-init params): "testbed" is configs/testbed.py's model (D=128,
4 heads, 4 layers, MLP 512, vocab 1024, L=128, train batch 16), the harness at
max_length = L; "125m" is step_throughput.py's (D=768, 12 heads, 12 layers, MLP 2048,
L=1024, vocab 32k, train batch 32), run by default only when jax sees an accelerator (or named
with --shapes). The harness runs at config.eval.harness's default batch_size (32) and at the
train batch if that differs (--batch_sizes picks). Text is a byte vocabulary (one token per
UTF-8 byte, ids byte + 3 like seqio.ByteVocabulary, without importing seqio/TensorFlow) over
deterministic pseudo-words, no network.

Workloads: multiple-choice-like `loglikelihood` requests (a context of 60-100 tokens, 4
continuations of 5-20 tokens each, like HellaSwag/ARC), and `loglikelihood_rolling` on long
documents (~4.5 x max_length tokens each). Scale with --quick: 48 MC documents (192 requests),
6 rolling documents (~3.5k tokens at L=128), 8 train steps a window, 5 windows of each
workload; without it 4x the documents and 7 windows (~5 min on 2 idle cores). Every function
is compiled (warmed up) first; the timed windows of all workloads are interleaved, so that
machine load falls on each alike, and each figure is the median over the windows.

What is measured, per shape:
  train step    tokens/s of rt.step_fn on a synthetic batch (batch x L tokens);
  forward only  tokens/s of the jitted mean per-example loss on the same batch (the forward the
                step contains, full logits), and forward + backward (jax.grad of it): what the
                step costs over a forward on this machine;
  loglikelihood requests/s end to end (tokenization included), and tokens/s counting the
                context + continuation tokens actually run through the model (each row's
                min(len, max_length) inputs, not the padding) and the padded tokens; split into
                tokenization (the adapter's _encode_pair), host batch work (numpy rows,
                to_global, device_get, the Python loops) and device time (the jitted scoring
                call, blocked on);
  jit alone     the adapter's jitted scoring function on one of its own padded batches,
                dispatched back to back without a host round trip: its ceiling;
  rolling       loglikelihood_rolling scored tokens/s (each document token once) and tokens run.
  ratios        each over the train step's tokens/s (a forward costs about a third of a step
                when the backward is ~2 forwards, so ~3x is the target when the adapter adds
                nothing; on a CPU the backward is often dearer, see the forward + backward row).
Prints a table, the splits and, last, one JSON line.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from benchmarks import step_throughput  # noqa: E402  (no side effects on import)
from configs import testbed  # noqa: E402
from lm import harness  # noqa: E402
from lm import train as train_lib  # noqa: E402
from reweight.interface import Uniform  # noqa: E402


class ByteVocab:
    """seqio.ByteVocabulary's ids (byte + 3; 0 pad, 1 eos, 2 unk) without importing seqio."""
    eos_id = 1

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")


def _config(shape: str, dtype: str, remat: str):
    if shape == "testbed":
        c = testbed.get_config()
        c.model.update(compute_dtype=dtype, remat=remat)
        c.mesh.shape = (1, 1, 1)
        return c
    return step_throughput._config(step_throughput.SHAPES[shape], dtype, 1, remat)


# Deterministic pseudo-text.

def _words(rng, n: int = 400) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "shi", "po", "ve", "de", "an", "or", "el",
                 "is", "th", "qu", "ing", "ed", "er", "st"]
    return ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(n)]


def _text(rng, words, length: int) -> str:
    """Words joined by spaces (and the odd full stop) up to `length` characters."""
    out, n = [], 0
    while n < length:
        w = str(rng.choice(words)) + ("." if rng.random() < 0.08 else "")
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:length].rstrip(" ") or "a"


def mc_requests(n_docs: int, seed: int = 0) -> list[Instance]:
    """`n_docs` contexts of 60-100 bytes, 4 continuations of 5-20 bytes each (" " + words)."""
    rng = np.random.default_rng(seed)
    words = _words(rng)
    out = []
    for d in range(n_docs):
        context = _text(rng, words, int(rng.integers(60, 101)))
        for c in range(4):
            continuation = " " + _text(rng, words, int(rng.integers(4, 20)))
            out.append(Instance("loglikelihood", {}, (context, continuation), idx=c,
                                metadata=("bench_mc", d, 1)))
    return out


def task_files(requests: list[Instance], root: str) -> str:
    """The MC requests as an lm-eval task over local JSONL (choice 0 correct); its YAML path."""
    docs = {}
    for r in requests:
        docs.setdefault(r.doc_id, (r.args[0], []))[1].append(r.args[1][1:])
    with open(os.path.join(root, "docs.jsonl"), "w") as f:
        f.writelines(json.dumps({"question": q, "choices": c, "label": 0}) + "\n"
                     for q, c in docs.values())
    path = os.path.join(root, "bench_mc.yaml")
    with open(path, "w") as f:
        f.write(f"task: bench_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                f"    test: {root}/docs.jsonl\ntest_split: test\noutput_type: multiple_choice\n"
                "doc_to_text: \"{{question}}\"\ndoc_to_choice: \"{{choices}}\"\n"
                "doc_to_target: label\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return path


def rolling_requests(n_docs: int, length: int, seed: int = 1) -> list[Instance]:
    rng = np.random.default_rng(seed)
    words = _words(rng)
    return [Instance("loglikelihood_rolling", {}, (_text(rng, words, length),), idx=0,
                     metadata=("bench_rolling", d, 1)) for d in range(n_docs)]


def batches(items, batch_size: int, max_length: int) -> list[tuple[int, int, int, int]]:
    """The adapter's batching of `items` (lm/harness.py score): per batch (padded width, K,
    input tokens run, tokens scored)."""
    order = sorted(items, key=lambda it: -len(it[0]))
    out = []
    for s in range(0, len(order), batch_size):
        chosen = order[s:s + batch_size]
        run = [min(len(stream), max_length + 1) - 1 for stream, _ in chosen]
        width = harness.bucket(max(run), max_length)
        k = harness.scored_bucket(max(n for _, n in chosen), width)
        out.append((width, k, sum(run), sum(n for _, n in chosen)))
    return out


class Instrumented:
    """Wraps a HarnessLM's `score` and jitted `_score` (instance attributes only, the class is
    untouched) to time them: device = the jitted call blocked on; score - device = host batch
    work; the caller's total - score = tokenization and request handling."""

    def __init__(self, lm):
        self.lm, self.score_s, self.device_s, self.items = lm, 0.0, 0.0, None
        score, jitted = lm.score, lm._score

        def timed_score(items):
            self.items = items
            t0 = time.perf_counter()
            out = score(items)
            self.score_s += time.perf_counter() - t0
            return out

        def timed_jitted(params, batch):
            t0 = time.perf_counter()
            out = jax.block_until_ready(jitted(params, batch))
            self.device_s += time.perf_counter() - t0
            self.last_batch = batch
            return out

        lm.score, lm._score, self.jitted = timed_score, timed_jitted, jitted

    def run(self, method, requests) -> dict:
        self.score_s = self.device_s = 0.0
        t0 = time.perf_counter()
        method(requests)
        total = time.perf_counter() - t0
        return {"total": total, "tokenize": total - self.score_s,
                "host": self.score_s - self.device_s, "device": self.device_s}


def bench_shape(name: str, args) -> dict:
    cfg = _config(name, args.dtype, args.remat)
    L, B = cfg.data.seq_len, cfg.train.batch_size
    sizes = [int(x) for x in args.batch_sizes.split(",")] if args.batch_sizes else \
        sorted({cfg.eval.harness.batch_size, B})
    scale = 1 if args.quick else 4
    steps = args.steps or 8
    repeats = args.repeats or (5 if args.quick else 7)

    rt = train_lib.build_runtime(cfg, Uniform(), cfg.data.num_domains, jax.devices()[:1])
    mc = mc_requests(48 * scale)
    roll = rolling_requests(6 * scale, int(4.5 * L))
    with rt.context():
        state = rt.init_fn(jax.random.key(0))  # the step donates it: the harness gets its own
        params = rt.init_fn(jax.random.key(0)).params
        batch = rt.global_batch(step_throughput._batch(cfg, np.random.default_rng(0)))
        loss = lambda p: train_lib.example_losses(p, batch, rt.model)[0].mean()  # noqa: E731
        forward, backward = jax.jit(loss), jax.jit(jax.grad(loss))

    # Warm up: compiles every shape each workload uses; records the batches' shapes.
    t0 = time.perf_counter()
    with rt.context():
        for _ in range(2):
            state, m = rt.step_fn(state, batch)
        jax.block_until_ready((forward(params), backward(params), m))
    lms = {}
    for hb in sizes:
        inst = Instrumented(harness.HarnessLM(rt, params, ByteVocab(), max_length=L,
                                              batch_size=hb))
        inst.run(inst.lm.loglikelihood, mc)
        mc_batches, mc_batch = batches(inst.items, hb, L), inst.last_batch
        inst.run(inst.lm.loglikelihood_rolling, roll)
        lms[hb] = (inst, mc_batches, mc_batch, batches(inst.items, hb, L), len(inst.items))
    compile_s = time.perf_counter() - t0

    def window(fn, n):
        with rt.context():
            t = time.perf_counter()
            for _ in range(n):
                r = fn()
            jax.block_until_ready(r)
        return (time.perf_counter() - t) / n

    def train_step():
        nonlocal state
        state, m = rt.step_fn(state, batch)
        return state, m

    windows = {"train": [], "forward": [], "forward+backward": []}
    for hb in sizes:
        windows |= {(hb, "device_only"): [], (hb, "mc"): [], (hb, "rolling"): []}
    for _ in range(repeats):  # interleaved: machine load falls on every workload alike
        windows["train"].append(window(train_step, steps))
        windows["forward"].append(window(lambda: forward(params), steps))
        windows["forward+backward"].append(window(lambda: backward(params), max(steps // 2, 2)))
        for hb, (inst, _, mc_batch, _, _) in lms.items():
            windows[(hb, "device_only")].append(
                window(lambda: inst.jitted(params, mc_batch), steps))  # noqa: B023
            windows[(hb, "mc")].append(inst.run(inst.lm.loglikelihood, mc))
            windows[(hb, "rolling")].append(inst.run(inst.lm.loglikelihood_rolling, roll))

    # One task end to end through lm-eval (lm/downstream.py): documents, prompts, requests,
    # scoring, metrics; the second run is timed (the first loads the dataset and compiles).
    import tempfile
    from lm import downstream
    h = cfg.eval.harness
    with tempfile.TemporaryDirectory() as root:
        h.update(tasks=task_files(mc, root), bootstrap_iters=0)
        task_lm = harness.HarnessLM(rt, params, ByteVocab(), max_length=L,
                                    batch_size=h.batch_size)
        downstream.run_tasks(task_lm, h)
        t0 = time.perf_counter()
        task_result = downstream.run_tasks(task_lm, h)
        task_s = time.perf_counter() - t0

    med = statistics.median
    split = lambda runs: {k: med(r[k] for r in runs) for k in runs[0]}  # noqa: E731
    train_s, fwd_s, bwd_s = (med(windows[k]) for k in ("train", "forward", "forward+backward"))
    train_tok = B * L / train_s
    out = {"shape": name, "d_model": cfg.model.d_model, "num_layers": cfg.model.num_layers,
           "vocab": cfg.model.vocab_size, "seq_len": L, "dtype": args.dtype, "train_batch": B,
           "default_harness_batch": cfg.eval.harness.batch_size, "compile_s": compile_s,
           "train_ms_per_step": 1e3 * train_s, "forward_ms": 1e3 * fwd_s,
           "forward_backward_ms": 1e3 * bwd_s, "train_tokens_per_s": train_tok,
           "forward_tokens_per_s": B * L / fwd_s, "step_over_forward": train_s / fwd_s,
           "harness": {},
           "task": {"docs": len(mc) // 4, "seconds": task_s,
                    "docs_per_s": len(mc) // 4 / task_s,
                    "acc": task_result["results"]["bench_mc"]["acc,none"]}}
    for hb, (inst, mc_batches, mc_batch, roll_batches, roll_rows) in lms.items():
        dev_s = med(windows[(hb, "device_only")])
        mc_t, roll_t = split(windows[(hb, "mc")]), split(windows[(hb, "rolling")])
        mc_run = sum(b[2] for b in mc_batches)
        mc_padded = sum(hb * b[0] for b in mc_batches)
        roll_scored, roll_run = sum(b[3] for b in roll_batches), sum(b[2] for b in roll_batches)
        width = mc_batch["inputs"].shape[1]
        r = {"mc": {"requests": len(mc), "batches": len(mc_batches),
                    "widths": sorted({b[0] for b in mc_batches}),
                    "ks": sorted({b[1] for b in mc_batches}), "tokens_run": mc_run,
                    "tokens_padded": mc_padded, "tokens_scored": sum(b[3] for b in mc_batches),
                    "seconds": mc_t, "requests_per_s": len(mc) / mc_t["total"],
                    "tokens_per_s": mc_run / mc_t["total"],
                    "padded_tokens_per_s": mc_padded / mc_t["total"]},
             "device_only": {"ms_per_batch": 1e3 * dev_s, "width": width,
                             "k": mc_batch["gather"].shape[1],
                             "padded_tokens_per_s": hb * width / dev_s},
             "rolling": {"documents": len(roll), "rows": roll_rows, "batches": len(roll_batches),
                         "tokens_scored": roll_scored, "tokens_run": roll_run,
                         "seconds": roll_t, "scored_tokens_per_s": roll_scored / roll_t["total"],
                         "run_tokens_per_s": roll_run / roll_t["total"]}}
        r["ratios"] = {
            "mc_over_train": r["mc"]["tokens_per_s"] / train_tok,
            "mc_padded_over_train": r["mc"]["padded_tokens_per_s"] / train_tok,
            "device_only_padded_over_train": r["device_only"]["padded_tokens_per_s"] / train_tok,
            "rolling_over_train": r["rolling"]["run_tokens_per_s"] / train_tok,
            "mc_over_forward": r["mc"]["tokens_per_s"] / out["forward_tokens_per_s"]}
        out["harness"][str(hb)] = r
    return out


def _print(r: dict) -> None:
    train = r["train_tokens_per_s"]
    print(f"\n{r['shape']}: D={r['d_model']}, {r['num_layers']} layers, vocab {r['vocab']}, "
          f"L={r['seq_len']}, {r['dtype']}; train batch {r['train_batch']}; compile + warm-up "
          f"{r['compile_s']:.1f} s")
    print(f"  {'workload':46} {'per s':>10} {'unit':14} {'/ train tok/s':>13}")
    row = lambda label, v, unit, ratio=None: print(  # noqa: E731
        f"  {label:46} {v:10.0f} {unit:14} {'' if ratio is None else f'{ratio:.2f}':>13}")
    row("train step", train, "tokens", 1.0)
    row("forward only (train batch, full logits)", r["forward_tokens_per_s"], "tokens",
        r["forward_tokens_per_s"] / train)
    for hb, h in r["harness"].items():
        mc, ro, dv, ra = h["mc"], h["rolling"], h["device_only"], h["ratios"]
        tag = f"b={hb}" + (" (config default)" if int(hb) == r["default_harness_batch"] else "")
        row(f"loglikelihood MC, {tag}", mc["requests_per_s"], "requests")
        row("  MC, tokens run", mc["tokens_per_s"], "tokens", ra["mc_over_train"])
        row("  MC, padded tokens", mc["padded_tokens_per_s"], "padded tokens",
            ra["mc_padded_over_train"])
        row("  harness jit alone, back to back", dv["padded_tokens_per_s"], "padded tokens",
            ra["device_only_padded_over_train"])
        row(f"loglikelihood_rolling, {tag}", ro["scored_tokens_per_s"], "scored tokens")
        row("  rolling, tokens run", ro["run_tokens_per_s"], "tokens", ra["rolling_over_train"])
    t = r["task"]
    print(f"  one lm-eval task end to end (lm/downstream.py, batch {r['default_harness_batch']}): "
          f"{t['docs']} 4-choice documents in {t['seconds']:.2f} s, {t['docs_per_s']:.0f} docs/s")
    print(f"  step {r['train_ms_per_step']:.1f} ms = {r['step_over_forward']:.1f} x the forward "
          f"({r['forward_ms']:.1f} ms; forward + backward {r['forward_backward_ms']:.1f} ms): "
          "the ~3x rule assumes a backward of ~2 forwards")
    for hb, h in r["harness"].items():
        mc, dv = h["mc"], h["device_only"]
        for label, w in (("MC", mc), ("rolling", h["rolling"])):
            s = w["seconds"]
            print(f"  b={hb} {label} window {1e3 * s['total']:.0f} ms: tokenize "
                  f"{1e3 * s['tokenize']:.1f}, host batch work {1e3 * s['host']:.1f}, device "
                  f"{1e3 * s['device']:.0f} ({s['device'] / s['total']:.0%} on device)")
        print(f"  b={hb} MC: {mc['requests']} requests in {mc['batches']} batches, widths "
              f"{mc['widths']}, K {mc['ks']}; {mc['tokens_run']} tokens run of "
              f"{mc['tokens_padded']} padded ({mc['tokens_run'] / mc['tokens_padded']:.0%}), "
              f"{mc['tokens_scored']} scored; jit alone {dv['ms_per_batch']:.1f} ms/batch "
              f"(K={dv['k']}) vs {1e3 * mc['seconds']['device'] / mc['batches']:.1f} ms blocked "
              f"per batch in the adapter; MC tokens run / forward-only tokens "
              f"{h['ratios']['mc_over_forward']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and windows")
    parser.add_argument("--shapes", default="",
                        help="testbed,125m (default: testbed, and 125m on an accelerator)")
    parser.add_argument("--dtype", default="float32", help="compute dtype: float32 | bfloat16")
    parser.add_argument("--remat", default="none", help="none | full | dots (the train step)")
    parser.add_argument("--batch_sizes", default="",
                        help="harness rows per batch, comma-separated (default: "
                             "config.eval.harness.batch_size and the train batch)")
    parser.add_argument("--steps", type=int, default=0, help="train steps a window (0: 8)")
    parser.add_argument("--repeats", type=int, default=0, help="timed windows (0: 5 quick, 7)")
    args = parser.parse_args()
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    shapes = args.shapes.split(",") if args.shapes else (["testbed"] + ([] if on_cpu else ["125m"]))
    machine = f"{platform.machine()} {os.cpu_count()} cores, 1 x {device.device_kind}"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"machine: {machine}" + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                                   "at the start" if load else ""))
    results = []
    for name in shapes:
        results.append(bench_shape(name, args))
        _print(results[-1])
    load_end = os.getloadavg() if load else None
    if load_end:
        print(f"load average {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} at the end")
    print(json.dumps({"benchmark": "harness_throughput", "machine": machine, "quick": args.quick,
                      "load_average": [load, load_end], "results": results}))


if __name__ == "__main__":
    main()
