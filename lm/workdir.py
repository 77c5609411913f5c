"""A workdir holds one run: its config is recorded there, and a different one may not resume it.

Resuming with another model, data mix, method or schedule would silently train a hybrid that
matches no config. The resume rule, field by field (dotted names), recorded vs. today's:
- a field renamed since the run was recorded is read under today's name (`RENAMED`, old name
  -> new, used by every reader of a recorded config), so a rename alone is no difference;
- a field the recorded config lacks (added since) is no difference when today's value is its
  default (configs/base.py): that default is what the older run did; a recorded field that no
  longer exists is one (rename it in `RENAMED`, or allow the change);
- fields that change only how the run is watched or laid out (`MAY_DIFFER`: logging,
  checkpoint cadence, the mesh) may differ;
- a method's own fields (`reweight.NAME.*`) may differ when neither config chooses NAME in a
  `reweight.KIND` field (instance, mixture, selector): unread, they change nothing, so a
  method's new default does not stop the runs of other methods;
- any other difference stops the resume with one error naming every differing field, unless
  --allow_config_change is given.
"""

import contextlib
import json
import os
import socket
import time
import warnings

import ml_collections
from flax.traverse_util import flatten_dict, unflatten_dict

CONFIG_FILE = "config.json"

# Fields a resumed run may change: they do not change what is trained.
MAY_DIFFER = ("train.run_steps", "train.progress_bar", "train.log_every", "train.eval_every",
              "train.checkpoint_every", "train.keep_checkpoints", "train.peak_flops",
              "data.prefetch", "data.eval_rows", "data.data_dir", "data.tfds_data_dir",
              "data.check_records",
              "eval.", "sample.", "mesh.", "init_from")
# Config fields renamed since runs were recorded: old dotted name -> today's. Data, not code:
# a rename adds a line here, and every older workdir still resumes and reads under the new name.
RENAMED = {
    "reweight.strategy": "reweight.loss_based.strategy",
    "reweight.r": "reweight.loss_based.r",
    "reweight.d": "reweight.loss_based.d",
    "reweight.warmup_steps": "reweight.loss_based.warmup_steps",
    "reweight.r_schedule": "reweight.loss_based.r_schedule",
    "reweight.r_start": "reweight.loss_based.r_start",
    "reweight.r_schedule_steps": "reweight.loss_based.r_schedule_steps",
}


def _as_json(cfg: ml_collections.ConfigDict) -> dict:
    return json.loads(cfg.to_json_best_effort())


def differences(old: dict, new: dict, ignore=(), defaults: dict | None = None) -> list[str]:
    """'field: old -> new' for every leaf that differs, skipping fields under `ignore` and,
    given `defaults`, fields absent from `old` whose new value is their default."""
    a, b = flatten_dict(old, sep="."), flatten_dict(new, sep=".")
    default = flatten_dict(defaults, sep=".") if defaults is not None else {}
    out = []
    for key in sorted(set(a) | set(b)):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in ignore):
            continue
        if key not in a and key in default and b.get(key) == default[key]:
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return out


def read_config(workdir: str) -> dict | None:
    """The config recorded in `workdir` (None if there is none), renamed fields under today's
    names (`RENAMED`; where a file holds both, today's name wins)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        flat = flatten_dict(json.load(f), sep=".")
    today = {RENAMED[k]: v for k, v in flat.items() if k in RENAMED}
    today |= {k: v for k, v in flat.items() if k not in RENAMED}
    return unflatten_dict(today, sep=".")


def check_resume(cfg: ml_collections.ConfigDict, workdir: str, *,
                 defaults: ml_collections.ConfigDict, has_checkpoint: bool,
                 allow_config_change: bool = False) -> None:
    """Refuses to resume a run whose recorded config differs in a field that matters (the
    module docstring's rule); `defaults` are today's (configs/base.py), which a field the
    recorded config lacks may keep."""
    old = read_config(workdir)
    if has_checkpoint and old is not None and not allow_config_change:
        new = _as_json(cfg)
        diff = differences(old, new, ignore=MAY_DIFFER + unchosen_methods(old, new),
                           defaults=_as_json(defaults))
        if diff:
            raise ValueError(
                f"--workdir={workdir} holds a run with another config; resuming it with this one "
                "would mix them. Differing fields:\n  " + "\n  ".join(diff) + "\nUse a new "
                "--workdir, or pass --allow_config_change to continue that run with these values")


def unchosen_methods(*configs: dict) -> tuple[str, ...]:
    """"reweight.NAME." of every method field group (a dict under reweight) that no
    reweight.KIND field (a string under reweight) of any of `configs` names."""
    chosen = {v for c in configs for v in c.get("reweight", {}).values() if isinstance(v, str)}
    groups = {k for c in configs for k, v in c.get("reweight", {}).items() if isinstance(v, dict)}
    return tuple(f"reweight.{k}." for k in sorted(groups - chosen))


def record(cfg: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the config the run trains with (once its checkpoint, if any, has restored)."""
    write_atomic(os.path.join(workdir, CONFIG_FILE), cfg.to_json_best_effort(indent=2))


def write_atomic(path: str, text: str) -> None:
    """The whole file or the old one, never half of it: a temp file renamed over `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def check_model_matches(cfg: ml_collections.ConfigDict, source: str,
                        field: str = "config.init_from") -> None:
    """Before loading params from another run (init_from, --mode=eval): the model configs must
    agree, or the error names the field (orbax's own error names only array shapes). `field`
    is what the error calls `source` (config.init_from, or --workdir for evaluation)."""
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{field}={source!r}: no checkpoint there; give the workdir of "
                                "an earlier run or its checkpoints/ folder")
    old = read_config(source)
    if old is None or "model" not in old:
        return
    diff = differences({"model": old["model"]}, {"model": _as_json(cfg)["model"]},
                       ignore=("model.compute_dtype", "model.remat", "model.attention",
                               "model.max_len"))
    if diff:
        raise ValueError(f"the checkpoint in {source} was written by a model with another config; "
                         "set these fields as it had them:\n  " + "\n  ".join(diff))


LOCK_FILE = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def lock(workdir: str):
    """Holds the workdir for one run: a lock file naming this process and host, taken
    atomically (O_EXCL) and removed on any exit. A second run meets a clear error naming the
    holder; a lock left by a process that died on this host (kill -9) is taken over with a
    warning. One process takes it for a multi-process run."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%F %T")}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, json.JSONDecodeError):  # being written, or removed meanwhile
                time.sleep(0.05)
                continue
            if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                warnings.warn(f"{path} was left by pid {holder.get('pid')}, which is no longer "
                              "running (killed?); taking the workdir over", RuntimeWarning)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise RuntimeError(
                f"--workdir={workdir} is in use by another run: pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('since')} ({path}). Wait for it to "
                "end, use another --workdir, or, if that run is dead on another host, delete "
                "the lock file") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
