"""The method interfaces: what a data method sees and what it returns.

`lm/` imports this module and nothing else of `reweight/`; a method imports it and nothing of
`lm/`. It defines no concrete method but the defaults (uniform weights, a method that does
nothing). A method comes in one of two places:

- in the step, a `Weighter`: a pure function inside the jitted train step, from the batch's
  `StepInputs` (per-token and per-example losses, domains, an RNG, ...) to per-example or
  per-token weights. Its state is a pytree in the train state.
- between steps, a `HostMethod` (mixture policies, stage selectors, anything else on the
  host): it says at which steps it acts, observes per-domain training sums and evaluations,
  acts with the `HostContext` the loop hands it, and keeps its state as its own checkpoint
  item. A `MixturePolicy` (weights from per-domain losses) becomes a host method through
  `reweight.mixture.MixtureMethod`.

Methods are built by `reweight.registry` from the config and a `MethodEnv`, which tells them
about the data without handing them the pipeline.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

PyTree = Any


class BatchSource(Protocol):
    """An input pipeline as the loop and host methods see it: this process's rows of each
    global batch as numpy arrays (inputs, targets, segment_ids, positions, loss_mask,
    domain_id), an exactly restorable state, and domain weights that apply from the next
    batch."""
    domain_names: Sequence[str]

    def __next__(self) -> dict: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...
    def set_weights(self, weights) -> None: ...


# In the step.

@struct.dataclass
class StepInputs:
    """The global batch as a weighter sees it; every array is detached from the gradient."""
    domain_B: jax.Array  # int32 domain id of each row
    valid_B: jax.Array  # bool: the row has loss tokens
    loss_mask_BxL: jax.Array  # float32: 1 at the tokens trained on
    step: jax.Array  # int32: the step being taken, counted from 0
    rng: jax.Array  # a key folded with the step: new each step, the same after a resume
    # The losses are None when the weighter's `needs_losses` is False (no extra forward pass
    # under gradient accumulation).
    token_loss_BxL: jax.Array | None = None  # per-token cross-entropy
    example_loss_B: jax.Array | None = None  # each row's mean token loss
    # A frozen reference model's per-token losses on the same tokens (config.reference.workdir),
    # when the weighter's `needs_reference` is True (None otherwise).
    reference_token_loss_BxL: jax.Array | None = None


class Weighter(Protocol):
    """Per-example or per-token weights inside the jitted step, held constant in the gradient.

    Per-example weights w[B] sum to 1 over the valid rows, and the step minimises
    sum_i w_i * (row i's mean token loss). Per-token weights w[B, L] sum to 1 over the batch's
    loss tokens, and the step minimises sum_{i,t} w_it * loss_it. Which one is decided by the
    shape returned.
    """
    needs_losses: bool  # False: the weights never read the losses (they are None in inputs)
    # True: the step runs the frozen reference model's forward on the batch and hands its
    # per-token losses in `inputs.reference_token_loss_BxL` (a weighter without it: False).
    needs_reference: bool

    def init(self) -> PyTree:
        """The initial state (any pytree of arrays; () if stateless)."""

    def __call__(self, state: PyTree, inputs: StepInputs) -> tuple[jax.Array, PyTree, dict]:
        """(weights [B] or [B, L], new state, scalar metrics logged as weighter/NAME)."""


class Uniform:
    """Every row with loss tokens weighs the same: the plain mean of per-example losses."""

    needs_losses = False
    needs_reference = False

    def init(self) -> PyTree:
        return ()

    def __call__(self, state: PyTree, inputs: StepInputs) -> tuple[jax.Array, PyTree, dict]:
        valid = inputs.valid_B.astype(jnp.float32)
        return valid / jnp.maximum(valid.sum(), 1.0), state, {}


# Between steps.

@dataclasses.dataclass(frozen=True)
class DomainSums:
    """One training step's sums per training domain (domain order), over the global batch."""
    loss: np.ndarray  # summed token loss
    tokens: np.ndarray  # loss tokens
    rows: np.ndarray  # rows with any loss token
    weight: np.ndarray  # summed instance weight
    # Summed per-token clipped excess loss max(l_model - l_reference, 0) over the loss tokens,
    # when the step runs a reference model (some method's `needs_reference`); None otherwise.
    excess: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """One evaluation of every eval domain (training domains, then held-out ones)."""
    step: int
    loss: dict[str, float]  # token-weighted validation loss per domain
    accuracy: dict[str, float]  # exact-match rate per domain (every loss token right)
    overall_loss: float  # token-weighted over every eval domain's tokens
    loss_se: dict[str, float]  # standard error of `loss` over the domain's eval rows
    # summed loss / (UTF-8 bytes of the scored text x ln 2), text domains only: comparable
    # across tokenizers
    bits_per_byte: dict[str, float] = dataclasses.field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """The flat form of metrics.jsonl and eval.json: eval/NAME/loss, eval/NAME/loss_se,
        eval/NAME/accuracy, eval/NAME/bits_per_byte, eval/loss (token-weighted) and
        eval/loss_domain_mean (the mean over domains)."""
        out = {f"eval/{n}/loss": v for n, v in self.loss.items()}
        out |= {f"eval/{n}/bits_per_byte": v for n, v in self.bits_per_byte.items()}
        out |= {f"eval/{n}/loss_se": v for n, v in self.loss_se.items()}
        out |= {f"eval/{n}/accuracy": v for n, v in self.accuracy.items()}
        out["eval/loss"] = self.overall_loss
        out["eval/loss_domain_mean"] = float(np.mean(list(self.loss.values())))
        return out


@dataclasses.dataclass(frozen=True)
class HostContext:
    """What the loop hands a host method when it acts: the live train state, to read only,
    and pure functions over it that run on the run's mesh."""
    step: int  # the step just taken (0: before the first)
    domain_names: tuple[str, ...]  # training domains, in domain-id order
    params: PyTree  # the model's live params: never change them
    opt_state: PyTree  # the optimizer's live state: never change it
    set_weights: Callable[[np.ndarray], None]  # domain sampling weights from the next batch
    to_global: Callable[[dict], dict]  # this process's rows -> arrays sharded over the batch
    replicated: Callable[[dict], dict]  # rows every process holds alike -> replicated arrays
    all_gather: Callable[[np.ndarray], np.ndarray]  # every process's rows, in process order
    # jitted (params, global rows) -> [R] each row's mean token loss
    example_loss: Callable[[PyTree, dict], jax.Array]
    # numpy reference rows (alike on every process) -> the replicated reference the three
    # functions below read (with where its loss tokens are: logits are computed only there)
    reference_set: Callable[[dict], dict]
    # jitted (params, reference) -> token-weighted mean loss over the rows' loss tokens
    reference_loss: Callable[[PyTree, dict], jax.Array]
    # jitted (params, reference) -> (that loss, its gradient): once per act, for
    # first_order_change
    reference_grad: Callable[[PyTree, dict], tuple[jax.Array, PyTree]]
    # jitted (params, opt_state, global rows [C, L], reference) -> [C]: the reference loss
    # after one real optimizer step on each row alone (the exact probe)
    loss_after_step: Callable[[PyTree, PyTree, dict, dict], jax.Array]
    # jitted (params, opt_state, global rows [C, L], reference gradient) -> [C]: the change of
    # the reference loss from that step to first order, <grad L_ref, update(row)> (no
    # reference forward per row)
    first_order_change: Callable[[PyTree, PyTree, dict, PyTree], jax.Array]
    # jitted (reference name, global rows) -> [R] each row's mean token loss under a frozen
    # reference model; the names are the set fields of config.reference (workdir, target,
    # general); an unknown or unset name raises ValueError
    reference_row_loss: Callable[[str, dict], jax.Array]
    train_flops_per_token: float  # of one training step (forward + backward) at seq_len
    process_index: int
    process_count: int


class HostMethod:
    """A method that acts between steps. Subclass it and override what the method needs.

    The loop, with nothing drawn ahead at any step where some method acts:
      - `wrap`s the input pipeline once, before anything else (a selector serves its rows);
      - on resume, calls `set_state` with the method's checkpoint item (before the pipeline's
        own state is restored: a method may move the source, e.g. to redraw a pool);
      - after every finite step, `observe_train` with that step's per-domain sums; after every
        evaluation, `observe_eval`;
      - at every step where `acts_at(step)` (step 0: a fresh run, before the first batch),
        calls `act` after the step's evaluation and before its checkpoint; the dict it returns
        is logged at that step;
      - at every checkpoint, saves `get_state()` (JSON) as item "host_NAME", one per process;
      - at the end of each invocation, on process 0, `write_outputs(workdir)`.
    A metric `act` returns as "PREFIX/overhead_flops" is the FLOPs it spent beyond training;
    a comparison adds it to the run's FLOPs.
    """
    name: str = ""  # its checkpoint item is "host_" + name; unique within a run
    # True: the step runs the reference model (config.reference.workdir) on every batch, so
    # that `observe_train`'s sums carry `excess`
    needs_reference: bool = False

    def wrap(self, source: BatchSource) -> BatchSource:
        return source

    def acts_at(self, step: int) -> bool:
        return False

    def observe_train(self, step: int, sums: DomainSums) -> None:
        pass

    def observe_eval(self, result: EvalResult) -> None:
        pass

    def act(self, ctx: HostContext) -> dict:
        return {}

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def write_outputs(self, workdir: str) -> None:
        pass


class MixturePolicy:
    """Domain sampling weights from per-domain losses, every `update_every` steps: subclass it
    and override what the policy needs (`reweight.mixture.MixtureMethod` runs it)."""
    update_every: int = 0  # steps between updates; 0 = never
    needs_reference: bool = False  # as HostMethod's: the step's sums then carry `excess`

    def observe_train(self, step: int, sums: DomainSums) -> None:
        """After every finite step: its per-domain sums (for a policy that keeps its own
        window, e.g. of the reference excess)."""

    def initial_weights(self) -> np.ndarray | None:
        """Weights for the first batch of a fresh run (None = the data config's weights)."""
        return None

    def observe_eval(self, step: int, eval_loss: dict) -> None:
        """After every evaluation: training domain -> validation loss."""

    def update(self, step: int, train_loss: dict, eval_loss: dict) -> np.ndarray | None:
        """New weights in domain order, used from the next batch (None = keep the current).

        train_loss: domain -> mean token loss over the steps since the last update (domains
        drawn in that window only); eval_loss: the latest validation loss per training domain
        ({} before the first evaluation)."""
        return None

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def final_weights(self) -> np.ndarray | None:
        """The mixture the run produces, if it produces one (written to mixture.txt)."""
        return None


class MethodEnv(Protocol):
    """What the experiment builder tells a method factory about the data."""
    domain_names: tuple[str, ...]  # training domains, in domain-id order

    def weights(self, spec: str) -> np.ndarray:
        """A WEIGHTS spec (uniform | natural | floats | name:w,... | file:PATH) ->
        probabilities in domain order."""

    def token_counts(self) -> np.ndarray | None:
        """Estimated training tokens per domain (None: endless generated domains)."""

    def reference_rows(self, kind: str, domain: str, rows: int, length: int) -> dict:
        """A reference set as one batch of numpy rows, the same on every process: kind "cloze"
        (last-word cloze from `domain`'s validation text, `length` tokens per row) or
        "validation" (`rows` validation rows of eval domain `domain` after the eval's own
        first data.eval_rows, so that a method tuned on them is not scored on them)."""
