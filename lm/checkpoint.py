"""One orbax checkpoint step holds everything a run needs to continue exactly.

Items of a step:
  params:      the model's params alone, so evaluation and init_from load them whatever the
               run's optimizer or methods were;
  state:       the rest of the TrainState (optimizer state, step, RNG, weighter state);
  data:        the input pipeline's state (JSON: its RNG and every stream's position);
  host_NAME:   the state (JSON) of each host method or other hook that has one (`lm.hooks`),
               one item per name.
The JSON items hold every process's state, in process order.
Orbax writes a step to a temporary directory and renames it when complete, so a step is
either whole or absent. Restoring with an abstract state that carries shardings lays the
arrays out on the current mesh, whatever mesh wrote them.
"""

import json
import os
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


def _manager(directory: str, keep: int = 3) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


HOST_PREFIX = "host_"


class Checkpointer:
    """Saves and restores a run's train state, pipeline state and hooks' states."""

    def __init__(self, directory: str, keep: int = 3):
        self._directory = os.path.abspath(directory)
        self._mngr = _manager(directory, keep)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, state, data_state: dict, host_states: dict[str, dict]) -> None:
        """Asynchronous: arrays are copied off the device before this returns. Every process
        calls it; the JSON items hold every process's states."""
        items = {"params": ocp.args.StandardSave(state.params),
                 "state": ocp.args.StandardSave(state.replace(params=None)),
                 "data": ocp.args.JsonSave({"processes": _gather_json(data_state)})}
        for name, host_state in host_states.items():
            items[HOST_PREFIX + name] = ocp.args.JsonSave({"processes": _gather_json(host_state)})
        self._mngr.save(step, args=ocp.args.Composite(**items))

    def restore_latest(self, abstract_state, apply=None) -> tuple | None:
        """(step, state, data_state, host_states) of the newest checkpoint that restores, or
        None if there is none. `apply(state, data_state, host_states)` puts the states to
        use (the pipeline's, the hooks'); a step whose files fail to restore (truncated,
        corrupt) or whose items do not fit (apply raises) is reported and moved aside to
        `<checkpoints>-corrupt/`, never deleted, and the one before it is tried; if none
        restores, nothing is moved and the first error is raised."""
        failures = []
        for step in sorted(self._mngr.all_steps(), reverse=True):
            try:
                restored = self.restore(step, abstract_state)
                if apply is not None:
                    apply(*restored)
            except Exception as e:  # orbax, tensorstore, JSON and the states' checks raise
                failures.append((step, e))
                continue
            for bad, error in failures:
                moved = (self._move_aside(bad) if jax.process_index() == 0  # one process moves it
                         else self._directory + "-corrupt/")
                warnings.warn(f"checkpoint step {bad} failed to restore ({type(error).__name__}: "
                              f"{str(error)[:300]}); moved it to {moved} and resumed from step "
                              f"{step} instead", RuntimeWarning, stacklevel=2)
            if failures:
                multihost_utils.sync_global_devices("checkpoint fallback")
                self._mngr.reload()
            return (step, *restored)
        if failures:
            step, error = failures[0]
            raise RuntimeError(
                f"no checkpoint in {self._directory} restores (tried steps "
                f"{[s for s, _ in failures]}); the newest, step {step}, failed with "
                f"{type(error).__name__}: {error}. If the model or optimizer config changed, "
                "restore the old config or start a new --workdir") from error
        return None

    def _move_aside(self, step: int) -> str:
        target = os.path.join(self._directory + "-corrupt", f"{step}-{int(time.time())}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(os.path.join(self._directory, str(step)), target)
        return target

    def restore(self, step: int, abstract_state) -> tuple:
        """(state, data_state, {hook name: state}) of `step`, the train state laid out as
        `abstract_state` says; a hook with no item in the step is left out."""
        names = [n[len(HOST_PREFIX):] for n in os.listdir(os.path.join(self._directory, str(step)))
                 if n.startswith(HOST_PREFIX)]
        items = {"params": ocp.args.StandardRestore(abstract_state.params),
                 "state": ocp.args.StandardRestore(abstract_state.replace(params=None)),
                 "data": ocp.args.JsonRestore()}
        items |= {HOST_PREFIX + n: ocp.args.JsonRestore() for n in names}
        out = self._mngr.restore(step, args=ocp.args.Composite(**items))
        state = out.state.replace(params=out.params)
        hosts = {n: _own_state(out[HOST_PREFIX + n]["processes"], step) for n in names}
        return state, _own_state(out.data["processes"], step), hosts

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def has_checkpoint(workdir: str) -> bool:
    """Whether the workdir holds a finished checkpoint step (orbax names them by number)."""
    directory = checkpoint_dir(workdir)
    return os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory))


def load_params(path: str, abstract_params, field: str = "config.init_from") -> tuple:
    """(params, step) of the newest checkpoint under `path` (a workdir or its checkpoints/
    folder) whose params restore, laid out as `abstract_params` says: for evaluation or
    continued training. Only the params item is read, so the source run's optimizer, methods
    and data do not matter. An unreadable step is reported and the one before it read (nothing
    is moved: the run may be someone else's); `field` is what error messages call `path`."""
    directory = checkpoint_dir(path) if os.path.isdir(checkpoint_dir(path)) else path
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{field}={path!r}: no checkpoint directory there; give a "
                                "workdir of an earlier run or its checkpoints/ folder")
    steps = sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True)
    if not steps:  # orbax names finished steps by number alone
        raise FileNotFoundError(f"{field}={path!r}: {directory} holds no checkpoint")
    failures = []
    # The params item alone, read directly: no manager (which would warn that it is read-only).
    with ocp.StandardCheckpointer() as reader:
        for step in steps:
            try:
                params = reader.restore(os.path.join(os.path.abspath(directory), str(step),
                                                     "params"), abstract_params)
            except Exception as e:  # orbax and tensorstore raise many kinds
                failures.append((step, e))
                continue
            for bad, error in failures:
                warnings.warn(f"checkpoint step {bad} of {directory} failed to restore "
                              f"({type(error).__name__}: {str(error)[:300]}); using step "
                              f"{step}", RuntimeWarning, stacklevel=2)
            return params, step
    step, error = failures[0]
    raise RuntimeError(f"no checkpoint in {directory} has params that restore (tried steps "
                       f"{steps}); the newest, step {step}, failed with {type(error).__name__}: "
                       f"{error}") from error


def _gather_json(tree: dict) -> list:
    """Every process's JSON-able dict, in process order (one process: just its own)."""
    if jax.process_count() == 1:
        return [tree]
    data = np.frombuffer(json.dumps(tree).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([data.size]))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    everyone = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(row[:int(n)])) for row, n in zip(everyone, sizes.reshape(-1))]


def _own_state(states: list, step: int) -> dict:
    """This process's state of a JSON item. A checkpoint written by another number of
    processes restores only if the state does not depend on the process (e.g. the synthetic
    source, a mixture policy)."""
    if len(states) == jax.process_count():
        return states[jax.process_index()]
    if all(s == states[0] for s in states):
        return states[0]
    raise ValueError(f"checkpoint step {step} was written by {len(states)} processes whose input "
                     f"pipelines or methods hold different states; this run has "
                     f"{jax.process_count()}. "
                     "Resume with the same number of processes")
