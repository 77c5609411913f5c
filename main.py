"""The one command: `python main.py --config=configs/<name>.py --workdir=DIR [--mode=...]`.

Without --mode, a config runs in its own mode: a comparison config (configs/compare/) in
compare, an experiment config in train; a sweep or skill-graph config asks for its flag.

--mode=train trains (resuming from DIR's latest checkpoint if there is one);
--mode=eval reports per-domain validation loss of DIR's latest checkpoint (or config.init_from),
and its downstream tasks (config.eval.harness.tasks, lm-evaluation-harness).
--mode=sweep runs a RegMix mixture sweep of proxy trainings in DIR (runs/sweep.py).
--mode=skill_graph estimates a Skill-It skills graph in DIR (runs/skill_graph.py).
--mode=compare trains and compares arms x seeds in DIR, or compares existing runs
(runs/compare.py).
--mode=sample writes text from DIR's latest checkpoint for config.sample's prompts.
--mode=prepare tokenizes every domain once into config.data.store (data/store.py), which
training, evaluation, sweeps and comparisons then read by index.
Outputs in DIR: checkpoints/, metrics.jsonl, tb/ (TensorBoard), config.json, eval.json,
harness.json and harness_samples/ (downstream tasks), and whatever the run's methods write
(e.g. mixture.txt for DoReMi).
"""

import json
import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and plots go")
flags.DEFINE_enum("mode", None, ["train", "eval", "sweep", "skill_graph", "compare", "sample",
                                  "prepare"],
                  "what to run (default: the config's own: compare for a comparison config, "
                  "else train)")
flags.DEFINE_bool("allow_config_change", False,
                  "resume a workdir whose recorded config differs (the differing fields are named)")
flags.mark_flags_as_required(["config"])  # and --workdir, except for --mode=prepare
FLAGS = flags.FLAGS


def main(argv):
    """Runs the mode; on any error prints it and exits with status 1 at once. After an error,
    TensorFlow's input threads can deadlock the interpreter's shutdown (seen with a bad JSONL
    record), so the exit skips it; the loop has closed the checkpoints and logs by then."""
    from runs import executor
    try:
        _main(argv)
    except Exception as e:  # SystemExit and KeyboardInterrupt keep their own exits
        clean = (ValueError, FileNotFoundError, FloatingPointError, executor.Preempted)
        if isinstance(e, clean) and not FLAGS["verbosity"].present:  # says what, and the fix
            print(f"error: {e}\n(--verbosity=0 shows the traceback)", file=sys.stderr)
        else:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _main(argv):
    del argv
    from runs import overrides
    cfg, workdir = FLAGS.config, FLAGS.workdir
    mode = overrides.check_mode(cfg, FLAGS.mode, config_flags.get_config_filename(
        FLAGS["config"]))
    if FLAGS["verbosity"].present:  # the libraries' own logs, as absl's --verbosity asks
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:  # quiet: warnings and errors only, TensorFlow's native INFO lines off
        logging.set_verbosity(logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if mode != "prepare" and not workdir:
        raise ValueError(f"--mode={mode} needs --workdir: the run's directory")
    if mode == "sweep":  # many trainings (runs/sweep.py)
        from runs import sweep
        print(json.dumps(sweep.run(cfg, workdir)))
        return
    if mode == "compare":  # arms x seeds, then the table (runs/compare.py)
        from runs import compare
        compare.run(cfg, workdir)
        with open(os.path.join(workdir, "compare.md")) as f:
            print(f.read())
        return
    if mode == "skill_graph":  # one H-step training per skill
        from runs import skill_graph
        print(json.dumps(skill_graph.estimate(cfg, workdir)))
        return
    if mode == "prepare":  # the token store, on Ray Data
        from data import sources, store
        source = sources.source_of(cfg)
        if not hasattr(source, "prepare"):
            raise ValueError(f"--mode=prepare tokenizes text domains: config.data.source="
                             f"{cfg.data.source!r} generates its rows; use seqio")
        prepared = source.prepare()
        for name, counts in store.shapes(prepared).items():
            print(f"{name}: {counts['tokens']:,} tokens, {counts['documents']:,} documents")
        print(f"token store in {cfg.data.store}: set --config.data.store={cfg.data.store} "
              "(the config already does) to train from it")
        return
    import jax
    from data import sources
    from runs import experiment, sample
    if mode == "sample":
        for record in sample.sample(cfg, workdir):
            print(f"--- {record['prompt']!r}\n{record['prompt']}{record['completion']}")
        print(f"samples in {os.path.join(workdir, 'samples.jsonl')}")
        return
    result = experiment.run(cfg, workdir, mode=mode,
                            allow_config_change=FLAGS.allow_config_change)
    if jax.process_index() != 0:
        return
    if mode == "eval" and result:
        from lm.metrics import eval_table
        losses = {k.split("/")[1]: v for k, v in result.items()
                  if k.startswith("eval/") and k.endswith("/loss") and k.count("/") == 2}
        print(eval_table(f"eval of {cfg.init_from or workdir}", losses,
                         sources.domain_names(cfg)[0]))
        from lm import downstream
        if downstream.task_specs(cfg.eval.harness.tasks):
            print(downstream.table(downstream.read(workdir)))
    if "preempted" in result:
        print(f"stopped after step {result['preempted']}: rerun the same command to resume")
    print(f"results in {workdir}: eval.json, metrics.jsonl, *.png")


if __name__ == "__main__":
    app.run(main)
