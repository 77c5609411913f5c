"""Runs one experiment: `python main.py --config=configs/<name>.py --workdir=DIR`.

--mode=train trains (resuming from DIR's latest checkpoint if there is one);
--mode=eval reports per-domain validation loss of DIR's latest checkpoint (or config.init_from).
--mode=sweep runs a RegMix mixture sweep of proxy trainings in DIR (see sweep.py).
--mode=skill_graph estimates a Skill-It skills graph in DIR (see skill_graph.py).
Outputs in DIR: checkpoints/, metrics.jsonl, tb/ (TensorBoard), config.json, eval.json, and
whatever the run's methods write (e.g. mixture.txt for DoReMi).
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


def run(cfg, workdir: str, *, mode: str = "train", allow_config_change: bool = False) -> dict:
    """Trains or evaluates one config in `workdir`; every check runs before any training.
    Returns the last evaluation's scalars ({} if none ran), with "preempted" if stopped early."""
    import jax
    import experiment
    from lm import checkpoint, sharding, validation
    from lm import workdir as workdir_lib

    sharding.maybe_initialize_distributed(cfg.mesh)
    validation.validate_config(cfg, jax.device_count(), jax.process_count())
    if mode == "train":
        workdir_lib.check_resume(cfg, workdir, has_checkpoint=checkpoint.has_checkpoint(workdir),
                                 allow_config_change=allow_config_change)
    if cfg.init_from:
        workdir_lib.check_model_matches(cfg, cfg.init_from)
    if mode == "eval" and not cfg.init_from:
        workdir_lib.check_model_matches(cfg, workdir)
    exp = experiment.build(cfg, train=mode == "train")
    if mode == "train":
        if jax.process_index() == 0:
            workdir_lib.record(cfg, workdir)
        result = exp.train(workdir)
        evaluation, preempted = result.eval, result.preempted
    else:
        evaluation, preempted = exp.evaluate(cfg.init_from or workdir), False
    scalars = evaluation.scalars() if evaluation is not None else {}
    if jax.process_index() == 0 and evaluation is not None:  # a finished run keeps its file
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump(scalars, f, indent=2)
    return scalars | ({"preempted": result.step} if preempted else {})


def main(argv):
    del argv
    cfg, workdir = FLAGS.config, FLAGS.workdir
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if FLAGS.mode == "sweep":  # many trainings (sweep.py)
        import sweep
        print(json.dumps(sweep.run(cfg, workdir)))
        return
    if FLAGS.mode == "skill_graph":  # one H-step training per skill (skill_graph.py)
        import skill_graph
        print(json.dumps(skill_graph.estimate(cfg, workdir)))
        return
    result = run(cfg, workdir, mode=FLAGS.mode, allow_config_change=FLAGS.allow_config_change)
    import jax
    if jax.process_index() == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
