"""Does the input pipeline outrun the train step? Tokens/s of each, measured in one run.

  python benchmarks/pipeline_throughput.py           # ~3 min on 2 cores (needs `make corpus`)
  python benchmarks/pipeline_throughput.py --quick   # fewer batches and steps

Scale: configs/tiny.py (the demo: D=128, 2 layers, vocab 8192 BPE, L=128, batch 16) on the
built-in six-domain corpus, uniform mixture. The pipeline is timed alone (host thread pulling
batches: tokenize, pack, mix), then the jitted step alone on the same process; the ratio must
be >= 10 so input never starves the step. Also reports the corpus build and tokenizer training
times recorded when they were built, and the time to build the pipelines.
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

from data import sources  # noqa: E402
import step_throughput  # noqa: E402
from configs import tiny  # noqa: E402
from reweight.interface import Uniform  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batches, steps, repeats = (50, 10, 2) if args.quick else (300, 20, 3)

    cfg = tiny.get_config()
    cfg.data.eval_rows = 16
    cfg.data.data_dir = os.path.join(ROOT, cfg.data.data_dir)
    t0 = time.perf_counter()
    it = sources.build_data(cfg).source
    build_s = time.perf_counter() - t0
    next(it)  # first batch fills the shuffle buffers
    tokens = cfg.train.batch_size * cfg.data.seq_len
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    pipe_tok_s = batches * tokens / (time.perf_counter() - t0)

    step_s = step_throughput.time_steps(cfg, Uniform(), steps, repeats)
    step_tok_s = tokens / step_s

    with open(os.path.join(cfg.data.data_dir, "corpus", "manifest.json")) as f:
        corpus_s = json.load(f)["build_seconds"]
    spm = os.path.join(cfg.data.data_dir, "tokenizer", f"spm_bpe_{cfg.model.vocab_size}.json")
    with open(spm) as f:
        tokenizer_s = json.load(f)["train_seconds"]

    machine = f"{platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].platform}"
    ratio = pipe_tok_s / step_tok_s
    print(f"machine: {machine}; config: tiny (L={cfg.data.seq_len}, batch {cfg.train.batch_size})")
    print(f"pipeline  {pipe_tok_s:12,.0f} tokens/s  ({batches} batches; building it took {build_s:.1f} s)")
    print(f"step      {step_tok_s:12,.0f} tokens/s  ({1e3 * step_s:.0f} ms/step)")
    print(f"ratio     {ratio:12.1f}  (target >= 10)")
    print(f"corpus build {corpus_s:.0f} s, tokenizer training {tokenizer_s:.0f} s (as recorded)")
    print(json.dumps({"benchmark": "pipeline_throughput", "machine": machine,
                      "pipeline_tokens_per_s": pipe_tok_s, "step_tokens_per_s": step_tok_s,
                      "ratio": ratio, "pipeline_build_s": build_s, "corpus_build_s": corpus_s,
                      "tokenizer_train_s": tokenizer_s}))


if __name__ == "__main__":
    main()
