"""Runs one experiment: `python main.py --config=configs/<name>.py --workdir=DIR`.

--mode=train trains (resuming from DIR's latest checkpoint if there is one);
--mode=eval reports per-domain validation loss of DIR's latest checkpoint (or config.init_from).
--mode=sweep runs a RegMix mixture sweep of proxy trainings in DIR (see sweep.py).
--mode=skill_graph estimates a Skill-It skills graph in DIR (see skill_graph.py).
Outputs in DIR: checkpoints/, metrics.jsonl, tb/ (TensorBoard), config.json, eval.json, and
mixture.txt for a policy that produces a mixture (DoReMi).
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and plots go")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sweep", "skill_graph"],
                  "what to run")
flags.DEFINE_bool("allow_config_change", False,
                  "resume a workdir whose recorded config differs (the differing fields are named)")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def make_data(cfg):
    """(train iterator, {eval domain name: batches}) for this process, from config.data."""
    import jax
    index, count = jax.process_index(), jax.process_count()
    if cfg.data.source == "synthetic":
        from data.synthetic import SyntheticMixture
        it = SyntheticMixture(num_domains=cfg.data.num_domains, vocab_size=cfg.model.vocab_size,
                              seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size,
                              weights=cfg.data.weights, seed=cfg.seed, process_index=index,
                              process_count=count)
        return it, it.eval_batches(cfg.data.eval_rows)
    if cfg.data.source == "lego":
        from data import lego
        if cfg.model.vocab_size < lego.VOCAB_SIZE:
            raise ValueError(f"config.model.vocab_size={cfg.model.vocab_size} is smaller than "
                             f"LEGO's {lego.VOCAB_SIZE} words: raise it")
        gen = lego.Lego(cfg.data.lego_k, cfg.data.lego_supervision, cfg.data.seq_len, cfg.seed,
                        eval_examples=cfg.data.eval_rows)
        common = dict(global_batch=cfg.train.batch_size, process_index=index, process_count=count)
        return (lego.make_train_iter(gen, weights=cfg.data.weights, seed=cfg.seed, **common),
                lego.make_eval_batches(gen, **common))
    if cfg.data.source != "seqio":
        raise ValueError(f"config.data.source={cfg.data.source!r} is unknown; use seqio, "
                         "synthetic or lego")
    from data import pipeline, tokenizer
    specs = pipeline.specs_from_config(cfg.data)
    vocab = tokenizer.load_vocabulary(
        str(tokenizer.model_path(cfg.data.data_dir, cfg.model.vocab_size))
        if cfg.data.vocab == "builtin" else cfg.data.vocab)
    if vocab.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"config.model.vocab_size={cfg.model.vocab_size} is smaller than the "
                         f"tokenizer's {vocab.vocab_size} ids: raise it")
    common = dict(vocab=vocab, seq_len=cfg.data.seq_len, global_batch=cfg.train.batch_size,
                  process_index=index, process_count=count, data_dir=cfg.data.data_dir)
    it = pipeline.make_train_iter(specs, weights=cfg.data.weights, seed=cfg.seed,
                                  shuffle_buffer_size=cfg.data.shuffle_buffer_size, **common)
    eval_specs = specs + (pipeline.heldout_domains(cfg.data.data_dir) if cfg.data.heldout else [])
    return it, pipeline.make_eval_batches(eval_specs, max_rows_per_domain=cfg.data.eval_rows,
                                          **common)


def run(cfg, workdir: str, *, mode: str = "train", allow_config_change: bool = False) -> dict:
    """Trains or evaluates one config in `workdir`; every check runs before any training."""
    import jax
    from lm import checkpoint, loop, sharding, validation
    from lm import workdir as workdir_lib
    from reweight.instance import make_instance_weighter
    from reweight.mixture import make_mixture_policy
    from reweight.selector import make_stage_selector

    sharding.maybe_initialize_distributed(cfg.mesh)
    validation.validate_config(cfg, jax.device_count(), jax.process_count())
    if mode == "train":
        workdir_lib.check_resume(cfg, workdir, has_checkpoint=checkpoint.has_checkpoint(workdir),
                                 allow_config_change=allow_config_change)
    if cfg.init_from:
        workdir_lib.check_model_matches(cfg, cfg.init_from)
    if mode == "eval" and not cfg.init_from:
        workdir_lib.check_model_matches(cfg, workdir)
    weighter = make_instance_weighter(cfg.reweight)
    selector = make_stage_selector(cfg)
    train_iter, eval_batches = make_data(cfg)
    mixture = make_mixture_policy(cfg, train_iter.domain_names)
    if mode == "train":
        if jax.process_index() == 0:
            workdir_lib.record(cfg, workdir)
        result = loop.train(cfg, workdir, train_iter=train_iter, eval_batches=eval_batches,
                            weighter=weighter, mixture=mixture, selector=selector)
    else:
        result = loop.evaluate(cfg, workdir, eval_batches=eval_batches, weighter=weighter)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump(result, f, indent=2)
        if mode == "train" and hasattr(mixture, "final_weights"):  # e.g. DoReMi's mean
            from reweight.schedule import write_mixture
            write_mixture(os.path.join(workdir, "mixture.txt"), train_iter.domain_names,
                          mixture.final_weights())
    return result


def main(argv):
    del argv
    cfg, workdir = FLAGS.config, FLAGS.workdir
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if FLAGS.mode == "sweep":  # many trainings, each through make_data (sweep.py)
        import sweep
        print(json.dumps(sweep.run(cfg, workdir, make_data)))
        return
    if FLAGS.mode == "skill_graph":  # one H-step training per skill (skill_graph.py)
        import skill_graph
        from reweight.instance import make_instance_weighter
        print(json.dumps(skill_graph.estimate(cfg, workdir, make_data=make_data,
                                              weighter=make_instance_weighter(cfg.reweight))))
        return
    result = run(cfg, workdir, mode=FLAGS.mode, allow_config_change=FLAGS.allow_config_change)
    import jax
    if jax.process_index() == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
