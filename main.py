"""Runs one experiment: `python main.py --config=configs/<name>.py --workdir=DIR`.

--mode=train trains (resuming from DIR's latest checkpoint if there is one);
--mode=eval reports per-domain validation loss of DIR's latest checkpoint (or config.init_from).
--mode=sweep runs a RegMix mixture sweep of proxy trainings in DIR (see sweep.py).
--mode=skill_graph estimates a Skill-It skills graph in DIR (see skill_graph.py).
--mode=compare trains and compares arms x seeds in DIR, or compares existing runs (compare.py).
Outputs in DIR: checkpoints/, metrics.jsonl, tb/ (TensorBoard), config.json, eval.json, and
whatever the run's methods write (e.g. mixture.txt for DoReMi).
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and plots go")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sweep", "skill_graph", "compare"],
                  "what to run")
flags.DEFINE_bool("allow_config_change", False,
                  "resume a workdir whose recorded config differs (the differing fields are named)")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    cfg, workdir = FLAGS.config, FLAGS.workdir
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if FLAGS.mode == "sweep":  # many trainings (sweep.py)
        import sweep
        print(json.dumps(sweep.run(cfg, workdir)))
        return
    if FLAGS.mode == "compare":  # arms x seeds, then the table (compare.py)
        import compare
        compare.run(cfg, workdir)
        with open(os.path.join(workdir, "compare.md")) as f:
            print(f.read())
        return
    if FLAGS.mode == "skill_graph":  # one H-step training per skill (skill_graph.py)
        import skill_graph
        print(json.dumps(skill_graph.estimate(cfg, workdir)))
        return
    import experiment
    result = experiment.run(cfg, workdir, mode=FLAGS.mode,
                            allow_config_change=FLAGS.allow_config_change)
    import jax
    if jax.process_index() == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
