"""Text from a run's checkpoint: `python main.py --mode=sample --config=... --workdir=DIR`."""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np

from data import sources
from lm import checkpoint
from lm import workdir as workdir_lib
from reweight.interface import Uniform


def sample(cfg: ml_collections.ConfigDict, workdir: str, devices=None) -> list[dict]:
    """Text from the params of `workdir`'s latest checkpoint (or config.init_from), for
    config.sample's prompt or prompts file: greedy or sampled, seeded. Writes
    `workdir/samples.jsonl` (one record per prompt) and returns the records."""
    from lm import decode
    from lm import train as train_lib
    s, checkpoint_from = cfg.sample, cfg.init_from or workdir
    problems = [p for ok, p in (
        (cfg.data.source == "seqio", f"config.data.source={cfg.data.source!r}: sampling needs "
                                     "a text vocabulary, so a seqio source"),
        (0 < s.max_new_tokens < cfg.model.max_len, f"config.sample.max_new_tokens="
                                                   f"{s.max_new_tokens} must be in [1, "
                                                   f"model.max_len={cfg.model.max_len})"),
        (s.temperature >= 0, f"config.sample.temperature={s.temperature} must be >= 0 "
                             "(0 = greedy)"),
        (0 <= s.top_k <= cfg.model.vocab_size, f"config.sample.top_k={s.top_k} must be in "
                                               f"[0, model.vocab_size] (0 = all)"),
        (not s.prompts_file or os.path.isfile(s.prompts_file),
         f"config.sample.prompts_file={s.prompts_file!r} is not a file")) if not ok]
    if problems:
        raise ValueError("cannot sample:\n  " + "\n  ".join(problems))
    workdir_lib.check_model_matches(cfg, checkpoint_from,
                                    "config.init_from" if cfg.init_from else "--workdir")
    vocab = sources.Seqio(cfg).vocab()
    if s.prompts_file:
        with open(s.prompts_file) as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    else:
        prompts = [s.prompt]
    room = cfg.model.max_len - s.max_new_tokens  # a longer prompt keeps its last tokens
    encoded = [list(vocab.encode(p))[-room:] if room else [] for p in prompts]
    rt = train_lib.build_runtime(cfg, Uniform(), 1, devices)
    chunk, length = 16, min(cfg.model.max_len, max(map(len, encoded)) + s.max_new_tokens)
    outputs = []
    with rt.context():
        params, step = checkpoint.load_params(checkpoint_from, rt.abstract.params)
        for start in range(0, len(encoded), chunk):
            part = encoded[start:start + chunk]
            buffer = np.zeros((chunk, length), np.int32)
            for i, ids in enumerate(part):
                buffer[i, :len(ids)] = ids
            lengths = np.array([len(ids) for ids in part] + [0] * (chunk - len(part)), np.int32)
            out = decode.decode(rt.model, params, buffer, lengths, s.max_new_tokens,
                                temperature=s.temperature, top_k=s.top_k,
                                start_id=getattr(vocab, "start_id", 0),
                                rng=jax.random.fold_in(jax.random.key(s.seed), start))
            outputs += np.asarray(out)[:len(part)].tolist()
    records = []
    for prompt, ids in zip(prompts, outputs):
        if vocab.eos_id in ids:  # the document ended there
            ids = ids[:ids.index(vocab.eos_id)]
        records.append({"prompt": prompt, "completion": vocab.decode(ids), "tokens": len(ids),
                        "step": step, "temperature": s.temperature, "top_k": s.top_k,
                        "seed": s.seed})
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "samples.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    return records
