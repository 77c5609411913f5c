"""The prepared token store against on-the-fly tokenization: preparation, read throughput,
start-up and checkpoint size, measured side by side in one run.

  python benchmarks/store_throughput.py --quick   # a slice of each domain: 1.8-3.9 min here
  python benchmarks/store_throughput.py --skip_otf_100   # the whole corpus: 5.6 min here
  python benchmarks/store_throughput.py           # + 100 tf.data pipelines: over 12 min here

(2026-12-07, the project's 2-core CPU machine, load average 2-14 from other jobs; the last
form was stopped at 12 min while building its 100 pipelines.) Needs `make corpus`.

Scale: configs/tiny.py's data (the built-in six-domain corpus, vocab 8192 BPE "builtin",
L=128, batch 16, uniform mixture, no held-out domains). Without --quick every train shard and
validation file of the six domains (148 MiB of JSONL, 48.6M tokens); with --quick a temp copy
of the first --quick_mb MB (whole lines) of each domain's first train shard plus its
validation file (19.4 MiB, 6.3M tokens at 3 MB), read as `name=GLOB` domains; both paths read
the same files in a run.

  1. preparation: `Seqio(cfg).prepare()` into a temp store (Ray Data on this machine's
     os.cpu_count() CPUs): wall seconds with and without Ray's start and stop, tokens/s in all
     and per core; against the same reading and tokenization in this process over the same
     texts in chunks of 1024 documents: data.vocabulary.load(...).encode_batch as
     store._ReadTokenize calls it (SentencePiece's batch encode runs its own thread pool:
     CPU/wall says so), the same forced to one thread (num_threads=1), and one thread's
     read + encode + flatten (the whole of a Ray batch's work but the writing).
  2. read throughput: tokens/s (B*L a batch) of the store-backed Mixer pulling batches in one
     Python thread for --seconds, before TensorFlow is imported, then of the on-the-fly mixer
     (pipeline.make_train_iter, tf.data) pulling the same number of batches, then the store
     again (A-B-A, so load drifting over the run falls on both); the ratio uses the store's
     mean. The issue's goal: >= 1M tokens/s on one core from the store. Then where the store
     reader's time goes (timers around the Mixer, IndexedRows.targets, Split.targets, layout).
  3. start-up: seconds from nothing to the first training batch in a fresh `python -c` child,
     with the store (open the memory maps, build the Mixer, first batch) and without (build
     the six tf.data pipelines, first batch): from the parent's start of the child to the
     child's first batch (wall clock), of which the child's imports, and the whole process
     with its exit; each --startup_repeats times, interleaved, the best reported.
  4. the checkpoint's data item: len(json.dumps(mixer.get_state())) after a few batches, 6
     domains from the store and on the fly; 100 domains from the store (hand-written splits:
     slices of the 6 prepared train splits, tokens.bin + meta.json, as tests/test_store.py
     writes them) and on the fly (100 copies of the validation files as train files; without
     --quick only: with --quick it is extrapolated from the 6-domain size per domain, and
     says so); and the store's read tokens/s at 100 domains (more domains a batch).

Prints the load average at the start and end, a table, and one JSON line last.
"""

import argparse
import contextlib
import functools
import glob
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from configs import tiny  # noqa: E402
from data import domains, mixing, pipeline, store, vocabulary  # noqa: E402



def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _copy_head(src: str, dst: str, max_bytes: int) -> int:
    """The first whole lines of `src` holding at least `max_bytes` bytes (or all) -> `dst`."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    written = 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        for line in f:
            out.write(line)
            written += len(line)
            if written >= max_bytes:
                break
    return written


def _config(tmp: str, quick_mb: float):
    """configs/tiny.py on the built-in corpus (all of it, or with quick_mb > 0 a temp copy of
    the head of each domain's first train shard plus its validation files); a temp store."""
    cfg = tiny.get_config()
    cfg.data.data_dir = os.path.join(ROOT, cfg.data.data_dir)
    cfg.data.heldout = False  # the six training domains only
    cfg.data.eval_rows = 16
    cfg.data.store = os.path.join(tmp, "store")
    names = list(domains.BUILTIN_DOMAINS)
    if quick_mb > 0:
        entries = []
        for n in names:
            src = os.path.join(cfg.data.data_dir, "corpus", n)
            first = sorted(glob.glob(os.path.join(src, "train-*.jsonl")))[0]
            _copy_head(first, os.path.join(tmp, "corpus", n, "train-00000.jsonl"),
                       int(quick_mb * 2**20))
            for v in sorted(glob.glob(os.path.join(src, "validation-*.jsonl"))):
                shutil.copy(v, os.path.join(tmp, "corpus", n, os.path.basename(v)))
            entries.append(f"{n}={os.path.join(tmp, 'corpus', n, '{split}-*.jsonl')}")
        cfg.data.domains = ",".join(entries)
    return cfg


def _files(specs) -> list[str]:
    return [u["path"] for spec in specs for split in ("train", "validation")
            for u in (store.units(spec, split) or [])]


# 1. Preparation.

def measure_prepare(cfg) -> dict:
    import ray

    from data import sources
    seqio_src = sources.Seqio(cfg)
    files = _files(seqio_src.specs)
    text_bytes = sum(os.path.getsize(p) for p in files)
    for p in files:  # the same page cache for both: read every file once first
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass

    # In process: the same texts, the same tokenizer, as the Ray tokenizer's batches of 1024.
    # encode_batch as _ReadTokenize calls it (SentencePiece's batch encode runs its own thread
    # pool: CPU/wall says how many cores it took), then forced to one thread, then the rest of
    # a Ray batch's work (each document's ids and EOS into one flat array, as _ReadTokenize does).
    vocab = vocabulary.load(**seqio_src.vocab_args())
    dtype, eos = store._dtype(vocab.vocab_size), vocab.eos_id
    sp = getattr(vocab, "sp", None)  # SentencePiece: num_threads=1 makes it one thread
    t = {k: 0.0 for k in ("read", "encode", "encode_cpu", "encode1", "encode1_cpu", "flat")}
    inproc_tokens = 0
    for spec in seqio_src.specs:
        for split in ("train", "validation"):
            for unit in store.units(spec, split) or []:
                t0 = time.perf_counter()
                texts = list(store.read_unit(unit, cfg.data.text_key))
                t["read"] += time.perf_counter() - t0
                for i in range(0, len(texts), 1024):  # Ray's batch_size
                    chunk = texts[i:i + 1024]
                    t0, c0 = time.perf_counter(), time.process_time()
                    ids = vocab.encode_batch(chunk)
                    t["encode"] += time.perf_counter() - t0
                    t["encode_cpu"] += time.process_time() - c0
                    t0, c0 = time.perf_counter(), time.process_time()
                    ids1 = sp.encode(chunk, num_threads=1) if sp else vocab.encode_batch(chunk)
                    t["encode1"] += time.perf_counter() - t0
                    t["encode1_cpu"] += time.process_time() - c0
                    t0 = time.perf_counter()
                    flat = np.fromiter((x for doc in ids1 for x in (*doc, eos)), dtype,
                                       count=sum(len(d) + 1 for d in ids1))
                    t["flat"] += time.perf_counter() - t0
                    inproc_tokens += len(flat)
                    assert sum(map(len, ids)) == sum(map(len, ids1))
                del texts
    one_thread_s = t["read"] + t["encode1"] + t["flat"]
    pooled_s = t["read"] + t["encode"] + t["flat"]

    # Ray Data, as --mode=prepare runs it (prepare() starts Ray the same way when it is not).
    cpus = os.cpu_count()
    t0 = time.perf_counter()
    ray.init(address=None, num_cpus=None, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    ray_cpus = int(ray.cluster_resources().get("CPU", cpus))
    import ray.data  # configures its loggers on import: quiet them after
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # per-dataset INFO lines, warnings
    t0 = time.perf_counter()
    metas = seqio_src.prepare(log=lambda *a: None)
    work_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.shutdown()
    shutdown_s = time.perf_counter() - t0
    tokens = sum(m["tokens"] for splits in metas.values() for m in splits.values())
    wall = init_s + work_s + shutdown_s
    return {
        "files": len(files), "text_mib": text_bytes / 2**20, "tokens": tokens,
        "ray_cpus": ray_cpus, "ray_init_s": init_s, "ray_work_s": work_s,
        "ray_shutdown_s": shutdown_s, "prepare_wall_s": wall,
        "prepare_tokens_per_s": tokens / wall, "prepare_tokens_per_s_per_core":
            tokens / wall / ray_cpus,
        "prepare_work_tokens_per_s": tokens / work_s,
        "inproc_tokens": inproc_tokens, "inproc_read_s": t["read"],
        "inproc_encode_batch_s": t["encode"], "inproc_encode_batch_cpu_s": t["encode_cpu"],
        "inproc_encode_batch_tokens_per_s": inproc_tokens / t["encode"],
        "inproc_encode_1thread_s": t["encode1"], "inproc_encode_1thread_cpu_s": t["encode1_cpu"],
        "inproc_encode_1thread_tokens_per_s": inproc_tokens / t["encode1"],
        "inproc_flatten_s": t["flat"],
        "inproc_1thread_s": one_thread_s, "inproc_1thread_tokens_per_s":
            inproc_tokens / one_thread_s,
        "inproc_pooled_s": pooled_s, "inproc_pooled_tokens_per_s": inproc_tokens / pooled_s,
    }


# 2. Read throughput.

def _store_mixer(cfg):
    from data import sources
    return sources.Seqio(cfg)._build_from_store(train=True).source


def _pull_for(it, seconds: float) -> tuple[int, float, float]:
    """Pulls batches for `seconds`: (batches, wall s, this process's CPU s)."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def _pull_n(it, n: int, limit_s: float) -> tuple[int, float, float]:
    """Pulls n batches (fewer if `limit_s` runs out): (batches, wall s, CPU s)."""
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while done < n and time.perf_counter() - t0 < limit_s:
        next(it)
        done += 1
    return done, time.perf_counter() - t0, time.process_time() - c0


class _Timers:
    """Seconds spent inside the store reader's layers while installed."""

    def __init__(self):
        self.s = {"mixer": 0.0, "indexed": 0.0, "split": 0.0, "layout": 0.0}
        self.calls = {k: 0 for k in self.s}

    def _wrap(self, key, fn):
        @functools.wraps(fn)
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.s[key] += time.perf_counter() - t0
                self.calls[key] += 1
        return timed

    @contextlib.contextmanager
    def installed(self):
        saved = (mixing.Mixer._next_indexed, store.IndexedRows.targets, store.Split.targets,
                 store.layout)
        mixing.Mixer._next_indexed = self._wrap("mixer", saved[0])
        store.IndexedRows.targets = self._wrap("indexed", saved[1])
        store.Split.targets = self._wrap("split", saved[2])
        store.layout = self._wrap("layout", saved[3])
        try:
            yield self
        finally:
            (mixing.Mixer._next_indexed, store.IndexedRows.targets, store.Split.targets,
             store.layout) = saved


def profile_store(mixer, seconds: float) -> dict:
    """Per batch (microseconds): the Mixer's own work (draws, per-domain loop, scatter into the
    batch), IndexedRows' permutation lookups, Split.targets' memmap gather, and layout (segment
    ids, positions, inputs: once a batch), per call of each."""
    timers = _Timers()
    with timers.installed():
        n, wall, _ = _pull_for(mixer, seconds)
    s = timers.s
    own = {"mixer_own": s["mixer"] - s["indexed"] - s["layout"],
           "indexed_own": s["indexed"] - s["split"], "split_gather": s["split"],
           "layout": s["layout"]}
    return {"batches": n, "us_per_batch": 1e6 * wall / n,
            "us_per_batch_by_part": {k: 1e6 * v / n for k, v in own.items()},
            "calls_per_batch": {k: v / n for k, v in timers.calls.items()}}


def measure_read(cfg, seconds: float, otf_limit_s: float) -> dict:
    from data import tokenizer
    tokens_per_batch = cfg.train.batch_size * cfg.data.seq_len

    t0 = time.perf_counter()
    smix = _store_mixer(cfg)
    store_build_s = time.perf_counter() - t0
    next(smix)
    tf_before = "tensorflow" in sys.modules
    a = _pull_for(smix, seconds)  # before TensorFlow is in the process
    prof = profile_store(smix, min(seconds, 2.0))

    src = __import__("data.sources", fromlist=["Seqio"]).Seqio(cfg)
    t0 = time.perf_counter()
    omix = pipeline.make_train_iter(
        src.specs, vocab=tokenizer.load_vocabulary(src.vocab_path()), seq_len=cfg.data.seq_len,
        global_batch=cfg.train.batch_size, weights=cfg.data.weights, seed=cfg.seed,
        shuffle_buffer_size=cfg.data.shuffle_buffer_size)
    otf_build_s = time.perf_counter() - t0
    next(omix)  # fills the shuffle buffers
    want = a[0]
    o = _pull_n(omix, want, otf_limit_s)
    b = _pull_for(smix, seconds)

    store_tok_s = [x[0] * tokens_per_batch / x[1] for x in (a, b)]
    store_mean = float(np.mean(store_tok_s))
    otf_tok_s = o[0] * tokens_per_batch / o[1]
    # A few batches more of each, then the state a checkpoint would save.
    for _ in range(3):
        next(smix), next(omix)
    t0 = time.perf_counter()
    otf_state = json.dumps(omix.get_state())
    otf_state_s = time.perf_counter() - t0
    return {
        "tf_imported_before_first_window": tf_before,
        "store_build_s": store_build_s, "otf_build_s": otf_build_s,
        "store_batches": [a[0], b[0]], "store_s": [a[1], b[1]],
        "store_cpu_per_wall": [a[2] / a[1], b[2] / b[1]],
        "store_tokens_per_s_each": store_tok_s, "store_tokens_per_s": store_mean,
        "otf_batches_wanted": want, "otf_batches": o[0], "otf_s": o[1],
        "otf_cpu_per_wall": o[2] / o[1], "otf_tokens_per_s": otf_tok_s,
        "otf_cut_short": o[0] < want,
        "ratio": store_mean / otf_tok_s, "goal_1m_met": store_mean >= 1e6,
        "profile": prof,
        "state_bytes_store_6": len(json.dumps(smix.get_state())),
        "state_bytes_otf_6": len(otf_state), "otf_get_state_s": otf_state_s,
    }


# 3. Start-up, each in a fresh process.

_CHILD_STORE = r"""
import json, sys, time
a = json.loads(sys.argv[1])
from data import mixing, pipeline, store, vocabulary
imported = time.time()
vocab = vocabulary.load(spec=a["vocab"], data_dir=a["data_dir"], vocab_size=a["vocab_size"])
streams = [store.IndexedRows(store.Split.open(a["store"], n, "train", a["L"], vocab.start_id,
                                              vocab.eos_id), pipeline.stream_seed(a["seed"], i))
           for i, n in enumerate(a["names"])]
mixer = mixing.Mixer(streams, a["names"], global_batch=a["B"],
                     weights=mixing.parse_weights(a["weights"], a["names"]), seed=a["seed"])
batch = next(mixer)
print(json.dumps({"imported": imported, "first": time.time()}))
"""

_CHILD_OTF = r"""
import json, sys, time
a = json.loads(sys.argv[1])
from data import domains, pipeline, tasks, tokenizer  # tasks: seqio and TensorFlow
imported = time.time()
specs = [domains.parse_domain(e, a["data_dir"]) for e in a["domains"]]
vocab = tokenizer.load_vocabulary(a["vocab_path"])
mixer = pipeline.make_train_iter(specs, vocab=vocab, seq_len=a["L"], global_batch=a["B"],
                                 weights=a["weights"], seed=a["seed"],
                                 shuffle_buffer_size=a["shuffle"])
batch = next(mixer)
print(json.dumps({"imported": imported, "first": time.time()}))
"""


def _child(code: str, args: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.time()
    r = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    end = time.time()
    if r.returncode:
        raise RuntimeError(f"start-up child failed:\n{r.stderr[-3000:]}")
    t = json.loads(r.stdout.strip().splitlines()[-1])
    return {"to_first_batch_s": t["first"] - start, "imports_s": t["imported"] - start,
            "build_to_first_batch_s": t["first"] - t["imported"], "process_s": end - start}


def measure_startup(cfg, repeats: int) -> dict:
    from data import sources
    src = sources.Seqio(cfg)
    common = {"L": cfg.data.seq_len, "B": cfg.train.batch_size, "seed": cfg.seed,
              "weights": cfg.data.weights, "data_dir": cfg.data.data_dir}
    s_args = dict(common, store=cfg.data.store, names=src.names()[0], **src.vocab_args())
    s_args["vocab"] = s_args.pop("spec")
    entries = cfg.data.domains.split(",") if isinstance(cfg.data.domains, str) \
        else list(cfg.data.domains)
    o_args = dict(common, domains=entries, vocab_path=src.vocab_path(),
                  shuffle=cfg.data.shuffle_buffer_size)
    runs = {"store": [], "otf": []}
    for _ in range(repeats):  # interleaved, so load falls on both alike
        runs["store"].append(_child(_CHILD_STORE, s_args))
        runs["otf"].append(_child(_CHILD_OTF, o_args))
    return {k: {f: min(r[f] for r in v) for f in v[0]} | {"runs": v} for k, v in runs.items()}


# 4. The data state at 100 domains.

def _write_split(root: str, domain: str, split: str, tokens: np.ndarray, meta: dict) -> None:
    where = store.split_dir(root, domain, split)
    os.makedirs(where, exist_ok=True)
    tokens.tofile(os.path.join(where, store.TOKENS))
    with open(os.path.join(where, store.META), "w") as f:
        json.dump(dict(meta, domain=domain, split=split, tokens=len(tokens),
                       documents=int(np.sum(tokens == meta["tokenizer"]["eos_id"])),
                       blake2b="", sources=[]), f)


def measure_state_100(cfg, tmp: str, n: int, batches: int, otf: bool,
                      read_seconds: float) -> dict:
    from data import sources
    src = sources.Seqio(cfg)
    six = src.names()[0]
    vocab = src.vocab()
    root = os.path.join(tmp, f"store{n}")
    names = [f"d{i:03d}" for i in range(n)]
    per = 1 << 16  # tokens a domain: 512 rows of 128
    opened = [store.Split.open(cfg.data.store, d, "train", cfg.data.seq_len, vocab.start_id,
                               vocab.eos_id) for d in six]
    for i, name in enumerate(names):
        split = opened[i % len(six)]
        start = (i // len(six)) * per % max(1, len(split.tokens) - per)
        _write_split(root, name, "train", np.asarray(split.tokens[start:start + per]),
                     split.meta)
    t0 = time.perf_counter()
    streams = [store.IndexedRows(store.Split.open(root, name, "train", cfg.data.seq_len,
                                                  vocab.start_id, vocab.eos_id),
                                 pipeline.stream_seed(cfg.seed, i))
               for i, name in enumerate(names)]
    mixer = mixing.Mixer(streams, names, global_batch=cfg.train.batch_size,
                         weights=mixing.parse_weights("uniform", names), seed=cfg.seed)
    build_s = time.perf_counter() - t0
    for _ in range(batches):
        next(mixer)
    prof = profile_store(mixer, read_seconds)
    out = {"domains": n, "store_build_s": build_s,
           "store_tokens_per_s": cfg.train.batch_size * cfg.data.seq_len * 1e6
           / prof["us_per_batch"], "store_profile": prof,
           "state_bytes_store": len(json.dumps(mixer.get_state()))}
    print(f"store at {n} domains: {out['store_tokens_per_s']:,.0f} tokens/s, state "
          f"{out['state_bytes_store']:,} bytes", flush=True)
    if otf:
        from data import tokenizer
        entries = []
        vals = [sorted(glob.glob(s.pattern.replace("{split}", "validation")))[0]
                for s in src.specs]
        for i, name in enumerate(names):
            where = os.path.join(tmp, f"otf{n}", name)
            os.makedirs(where, exist_ok=True)
            shutil.copy(vals[i % len(vals)], os.path.join(where, "train-00000.jsonl"))
            entries.append(domains.parse_domain(
                f"{name}={os.path.join(where, '{split}-*.jsonl')}"))
        t0 = time.perf_counter()
        omix = pipeline.make_train_iter(
            entries, vocab=tokenizer.load_vocabulary(src.vocab_path()),
            seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size, weights="uniform",
            seed=cfg.seed, shuffle_buffer_size=cfg.data.shuffle_buffer_size)
        out["otf_build_s"] = time.perf_counter() - t0
        for _ in range(batches):
            next(omix)
        t0 = time.perf_counter()
        out["state_bytes_otf"] = len(json.dumps(omix.get_state()))
        out["otf_get_state_s"] = time.perf_counter() - t0
        out["otf_extrapolated"] = False
        del omix
    return out


def measure_feed(seq_len: int, batch: int, domains: int, seconds: float) -> dict:
    """The store's feed rate at a given row shape with no corpus (accelerator hosts): synthetic
    splits of random ids (a 32k vocabulary, a document every ~1000 tokens) written as the store
    writes them, read through the Mixer on one thread."""
    tmp = tempfile.mkdtemp(prefix="store_feed_")
    try:
        rng = np.random.default_rng(0)
        names = [f"d{i}" for i in range(domains)]
        per = max(seq_len * batch * 8, 1 << 20)
        for name in names:
            tokens = rng.integers(3, 32000, per).astype(np.uint16)
            tokens[rng.random(per) < 1e-3] = 1  # EOS
            _write_split(tmp, name, "train", tokens,
                         {"dtype": "uint16", "tokenizer": {"eos_id": 1}})
        streams = [store.IndexedRows(store.Split.open(tmp, n, "train", seq_len, 0, 1), i)
                   for i, n in enumerate(names)]
        mixer = mixing.Mixer(streams, names, global_batch=batch,
                             weights=mixing.parse_weights("uniform", names), seed=0)
        next(mixer)
        n, wall, _ = _pull_for(mixer, seconds)
        return {"seq_len": seq_len, "batch": batch, "domains": domains, "batches": n,
                "tokens_per_s": n * batch * seq_len / wall}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _exit_on_sigterm() -> None:
    """A SIGTERM (e.g. from `timeout`) unwinds through main's finally, which removes the store."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _progress(t_all: float, line: str) -> None:
    print(f"[{time.perf_counter() - t_all:.0f} s, load {_load()}] {line}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a slice of each domain; 100 on-the-fly domains extrapolated")
    parser.add_argument("--quick_mb", type=float, default=3.0,
                        help="--quick: MB of each domain's first train shard")
    parser.add_argument("--seconds", type=float, default=None,
                        help="each store read window (default 2 with --quick, else 3)")
    parser.add_argument("--startup_repeats", type=int, default=None,
                        help="fresh processes per path (default 1 with --quick, else 2)")
    parser.add_argument("--domains_100", type=int, default=100)
    parser.add_argument("--skip_otf_100", action="store_true",
                        help="extrapolate the on-the-fly state at --domains_100 domains from 6 "
                        "(as --quick does) instead of building that many tf.data pipelines "
                        "(over 6 min here)")
    parser.add_argument("--feed", default="",
                        help="SEQ_LEN,BATCH: only the store's feed rate on synthetic splits "
                             "(no corpus needed; accelerator_check.sh runs 1024,32)")
    parser.add_argument("--keep", default="", help="write the temp store here and keep it")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 3.0)
    repeats = args.startup_repeats or (1 if args.quick else 2)
    otf_limit_s = 60.0 if args.quick else 240.0

    if args.feed:
        seq_len, batch = (int(x) for x in args.feed.split(","))
        feed = measure_feed(seq_len, batch, 6, args.seconds or 3.0)
        print(f"store feed rate, one host thread, 6 synthetic domains, rows of {seq_len} x "
              f"batch {batch}: {feed['tokens_per_s']:,.0f} tokens/s")
        print(json.dumps({"benchmark": "store_throughput", "feed": feed}))
        return
    load_start = _load()
    print(f"load average at start: {load_start} ({os.cpu_count()} cores)", flush=True)
    t_all = time.perf_counter()
    _exit_on_sigterm()
    tmp = args.keep or tempfile.mkdtemp(prefix="store_throughput_")
    os.makedirs(tmp, exist_ok=True)
    try:
        cfg = _config(tmp, args.quick_mb if args.quick else 0.0)
        prep = measure_prepare(cfg)
        _exit_on_sigterm()  # again: ray.init installed its own handler
        _progress(t_all, f"prepared {prep['tokens']:,} tokens: Ray {prep['prepare_wall_s']:.1f} s "
                  f"({prep['prepare_tokens_per_s']:,.0f} tokens/s), one thread in process "
                  f"{prep['inproc_1thread_s']:.1f} s")
        read = measure_read(cfg, seconds, otf_limit_s)
        _progress(t_all, f"read: store {read['store_tokens_per_s']:,.0f} tokens/s, on the fly "
                  f"{read['otf_tokens_per_s']:,.0f}; state bytes {read['state_bytes_store_6']:,} "
                  f"/ {read['state_bytes_otf_6']:,}")
        start = measure_startup(cfg, repeats)
        _progress(t_all, f"start-up: store {start['store']['to_first_batch_s']:.2f} s, on the fly "
                  f"{start['otf']['to_first_batch_s']:.1f} s")
        otf_100 = not (args.quick or args.skip_otf_100)
        s100 = measure_state_100(cfg, tmp, args.domains_100, batches=5, otf=otf_100,
                                 read_seconds=min(seconds, 2.0))
        if not otf_100:
            s100["state_bytes_otf"] = int(read["state_bytes_otf_6"] * args.domains_100 / 6)
            s100["otf_extrapolated"] = True
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    total_s = time.perf_counter() - t_all
    load_end = _load()

    import jax  # already in the process (data.sources); only to name the machine alike
    machine = f"{platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].platform}"
    scale = (f"--quick: first {args.quick_mb:g} MB of each domain's first train shard + its "
             "validation files" if args.quick else "the whole built-in corpus (train + "
             "validation)")
    B, L = cfg.train.batch_size, cfg.data.seq_len
    print()
    print(f"machine: {machine}; config: tiny (vocab 8192 BPE, L={L}, batch {B}, uniform, "
          f"6 domains); data: {scale}")
    print(f"load average: start {load_start}, end {load_end}")
    print()
    print(f"1. preparation ({prep['files']} files, {prep['text_mib']:.1f} MiB of JSONL, "
          f"{prep['tokens']:,} tokens)")
    print(f"  {'how':44} {'wall s':>8} {'tokens/s':>12} {'per core':>12}")
    print(f"  {'Ray prepare(), start + work + stop':44} {prep['prepare_wall_s']:8.1f} "
          f"{prep['prepare_tokens_per_s']:12,.0f} {prep['prepare_tokens_per_s_per_core']:12,.0f}"
          f"  ({prep['ray_cpus']} Ray CPUs)")
    print(f"  {'  of which Ray start / stop':44} {prep['ray_init_s']:8.1f} "
          f"{'':>12} {'':>12}  (stop {prep['ray_shutdown_s']:.1f} s)")
    print(f"  {'  of which the work':44} {prep['ray_work_s']:8.1f} "
          f"{prep['prepare_work_tokens_per_s']:12,.0f} "
          f"{prep['prepare_work_tokens_per_s'] / prep['ray_cpus']:12,.0f}")
    print(f"  {'in process: encode_batch (SentencePiece pool)':44} "
          f"{prep['inproc_encode_batch_s']:8.1f} {prep['inproc_encode_batch_tokens_per_s']:12,.0f}"
          f" {'':>12}  (CPU/wall "
          f"{prep['inproc_encode_batch_cpu_s'] / prep['inproc_encode_batch_s']:.2f})")
    print(f"  {'in process: encode, num_threads=1':44} {prep['inproc_encode_1thread_s']:8.1f} "
          f"{prep['inproc_encode_1thread_tokens_per_s']:12,.0f} {'':>12}  (CPU/wall "
          f"{prep['inproc_encode_1thread_cpu_s'] / prep['inproc_encode_1thread_s']:.2f})")
    print(f"  {'in process, 1 thread: read+encode+flatten':44} {prep['inproc_1thread_s']:8.1f} "
          f"{prep['inproc_1thread_tokens_per_s']:12,.0f} {'':>12}  (read "
          f"{prep['inproc_read_s']:.1f} s, flatten {prep['inproc_flatten_s']:.1f} s; no writing)")
    if prep["inproc_tokens"] != prep["tokens"]:
        print(f"  NOTE: in process {prep['inproc_tokens']:,} tokens, the store {prep['tokens']:,}")
    print(f"  Ray against one thread in process: "
          f"{prep['inproc_1thread_s'] / prep['prepare_wall_s']:.2f}x as fast with start/stop, "
          f"{prep['inproc_1thread_s'] / prep['ray_work_s']:.2f}x the work alone "
          f"(against the pooled encode_batch: "
          f"{prep['inproc_pooled_s'] / prep['prepare_wall_s']:.2f}x, "
          f"{prep['inproc_pooled_s'] / prep['ray_work_s']:.2f}x)")
    print()
    cut = " (cut short: time limit)" if read["otf_cut_short"] else ""
    print(f"2. read throughput, one Python thread pulling batches ({B}x{L} tokens each)")
    print(f"  {'reader':30} {'batches':>8} {'s':>6} {'tokens/s':>12} {'CPU/wall':>9}")
    for i, tag in enumerate(("before TF", "after TF")):
        print(f"  {'store Mixer (' + tag + ')':30} {read['store_batches'][i]:8d} "
              f"{read['store_s'][i]:6.2f} {read['store_tokens_per_s_each'][i]:12,.0f} "
              f"{read['store_cpu_per_wall'][i]:9.2f}")
    print(f"  {'on the fly (tf.data)':30} {read['otf_batches']:8d} {read['otf_s']:6.2f} "
          f"{read['otf_tokens_per_s']:12,.0f} {read['otf_cpu_per_wall']:9.2f}{cut}")
    print(f"  ratio store / on the fly: {read['ratio']:.1f}x; goal >= 1M tokens/s on one core "
          f"from the store: {'met' if read['goal_1m_met'] else 'MISSED'} "
          f"({read['store_tokens_per_s'] / 1e6:.2f}M)")
    p = read["profile"]
    parts = ", ".join(f"{k} {v:.0f}" for k, v in p["us_per_batch_by_part"].items())
    calls = ", ".join(f"{k} {v:.1f}" for k, v in p["calls_per_batch"].items())
    print(f"  store reader, us per batch: {p['us_per_batch']:.0f} in all ({parts}); "
          f"calls per batch: {calls}")
    print(f"  building the mixer in process: store {read['store_build_s']:.2f} s, on the fly "
          f"{read['otf_build_s']:.1f} s")
    print()
    print(f"3. start-up to the first batch, fresh process (best of {repeats})")
    print(f"  {'path':12} {'parent s':>9} {'imports s':>10} {'build+1st s':>12} {'process s':>10}")
    for k, label in (("store", "store"), ("otf", "on the fly")):
        r = start[k]
        print(f"  {label:12} {r['to_first_batch_s']:9.2f} {r['imports_s']:10.2f} "
              f"{r['build_to_first_batch_s']:12.2f} {r['process_s']:10.2f}")
    print(f"  ratio on the fly / store, parent-timed: "
          f"{start['otf']['to_first_batch_s'] / start['store']['to_first_batch_s']:.1f}x")
    print()
    extra = " (EXTRAPOLATED from 6 domains)" if s100["otf_extrapolated"] else ""
    print("4. the checkpoint's data item, len(json.dumps(mixer.get_state())) bytes")
    print(f"  {'domains':8} {'store':>10} {'on the fly':>14}")
    print(f"  {6:8d} {read['state_bytes_store_6']:10,d} {read['state_bytes_otf_6']:14,d}"
          f"  (on the fly get_state {read['otf_get_state_s']:.1f} s)")
    print(f"  {s100['domains']:8d} {s100['state_bytes_store']:10,d} "
          f"{s100['state_bytes_otf']:14,d}{extra}")
    p = s100["store_profile"]
    print(f"  store at {s100['domains']} hand-written domains: built in "
          f"{s100['store_build_s']:.2f} s, reads {s100['store_tokens_per_s']:,.0f} tokens/s "
          f"({p['us_per_batch']:.0f} us a batch: "
          + ", ".join(f"{k} {v:.0f}" for k, v in p["us_per_batch_by_part"].items())
          + f"; {p['calls_per_batch']['layout']:.1f} domains a batch)"
          + (f"; on the fly built in {s100['otf_build_s']:.0f} s, get_state "
             f"{s100['otf_get_state_s']:.1f} s" if "otf_build_s" in s100 else ""))
    print(f"total {total_s:.0f} s")
    print(json.dumps({"benchmark": "store_throughput", "machine": machine, "quick": args.quick,
                      "scale": scale, "load_start": load_start, "load_end": load_end,
                      "total_s": total_s, "prepare": prep, "read": read, "startup": start,
                      "state_100": s100}))


if __name__ == "__main__":
    main()
