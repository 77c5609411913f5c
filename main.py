"""Runs one experiment: `python main.py --config=configs/<name>.py --workdir=DIR`.

--mode=train trains (resuming from DIR's latest checkpoint if there is one);
--mode=eval reports per-domain validation loss of DIR's latest checkpoint (or config.init_from).
Outputs in DIR: checkpoints/, metrics.jsonl, tb/ (TensorBoard), config.json, eval.json.
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and plots go")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "what to run")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def make_data(cfg):
  """(train iterator, eval batches) for this process, from config.data."""
  import jax
  if cfg.data.source == "synthetic":
    from data.synthetic import SyntheticMixture
    it = SyntheticMixture(num_domains=cfg.data.num_domains, vocab_size=cfg.model.vocab_size,
                          seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size,
                          weights=cfg.data.weights, seed=cfg.seed,
                          process_index=jax.process_index(), process_count=jax.process_count())
    return it, it.eval_batches(cfg.data.eval_rows)
  raise ValueError(f"config.data.source={cfg.data.source!r} is unknown; use synthetic")


def main(argv):
  del argv
  cfg, workdir = FLAGS.config, FLAGS.workdir
  import jax
  from lm import loop, sharding, validation
  from reweight.instance import make_instance_weighter

  sharding.maybe_initialize_distributed(cfg.mesh)
  validation.validate_config(cfg, jax.device_count(), jax.process_count())
  weighter = make_instance_weighter(cfg.reweight)
  train_iter, eval_batches = make_data(cfg)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2))
  if FLAGS.mode == "train":
    result = loop.train(cfg, workdir, train_iter=train_iter, eval_batches=eval_batches,
                        weighter=weighter)
  else:
    result = loop.evaluate(cfg, workdir, eval_batches=eval_batches,
                           domain_names=train_iter.domain_names, weighter=weighter)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
