"""Every field of a comparison, with its default. Compare configs build on this one.

  python main.py --mode=compare --config=configs/compare/<name>.py --workdir=DIR

A comparison trains every arm with every seed (run k of each arm uses seed k: the same initial
params and, where the mixture is the same, the same batches) and tables them against the
baseline arm (runs/compare.py). Override any field on the command line, e.g.
`--config.compare.seeds=0,1,2,3,4`.
"""

import ml_collections


def arm(config: str, overrides: str = "") -> ml_collections.ConfigDict:
    """An arm: an experiment config file and "field=value;..." overrides applied to it."""
    return ml_collections.ConfigDict({"config": config, "overrides": overrides})


def prerequisite(config: str, overrides: str = "", mode: str = "train"
                 ) -> ml_collections.ConfigDict:
    """A run the arms need first: an arm-like spec with its main.py mode, train or skill_graph
    (a Skill-It graph estimate, whose skill_graph.json an arm reads)."""
    return ml_collections.ConfigDict({"config": config, "overrides": overrides, "mode": mode})


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.compare = ml_collections.ConfigDict()
    c.compare.baseline = "baseline"  # the arm every other arm is compared with
    c.compare.arms = ml_collections.ConfigDict()  # arm name -> arm(config file, overrides)
    # Runs the arms need, trained first, once each, in DIR/prerequisites/<name>/ (a reference
    # model, a DoReMi proxy): name -> prerequisite(config file, overrides, mode) or arm(...);
    # "@name" in any overrides
    # (the arms', the comparison's, another prerequisite's) is that run's workdir.
    c.compare.prerequisites = ml_collections.ConfigDict()
    c.compare.seeds = "0,1,2"  # comma-separated; run k of every arm uses seed k
    c.compare.overrides = ""  # "field=value;..." applied to every arm before its own
    c.compare.eval_rows = 256  # validation rows per domain, the same rows for every arm
    c.compare.confidence = 0.95  # level of every interval (Student t over seeds)
    # Domains of the headline mean, its AUC and steps-to-target ("" = the baseline's training
    # domains), e.g. the clean domains when some arms also train on planted junk.
    c.compare.domains = ""
    c.compare.accuracy_target = 0.9  # steps_to_accuracy: first eval with every accuracy >= this
    # Existing runs instead of training: "arm=glob;..." (each glob's workdirs are the arm's
    # seeds, paired by their recorded config.seed); arms and seeds above are then unused.
    c.compare.runs = ""
    c.compare.backend = "local"  # local | ray
    c.compare.processes = 1  # local: runs trained at once, each in its own process (1 = here)
    c.compare.ray_address = ""  # ray: "" starts a local Ray, else ray.init(address=...)
    c.compare.ray_cpus_per_run = 1.0  # ray: resources each run asks for
    c.compare.ray_gpus_per_run = 0.0  # ray: resources each run asks for
    return c
