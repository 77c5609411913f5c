"""Loss-based instance reweighting (Sow et al., ICLR 2025): LinUpper, Quadratic, Extremes.

Each step, over the global batch's rows that have loss tokens and a finite loss:
  h_i = d ((l_i - l_min) - (l_max - l_i)) / max(l_max - l_min, 1e-6)   in [-d, d]
  f_i = strategy(h_i);  w_i = softmax_i(f_i / r)
so sum_i w_i = 1 and no weight exceeds another by more than e^{(max f - min f) / r}.
Strategies and the f range they reach on a batch whose losses are not all equal:
  linupper:  f = min(h + d, d)  in [0, d], both ends always reached -> max ratio exactly e^{d/r};
  quadratic: f = 1 - h^2 / d^2  in [0, 1], 0 at both ends, 1 only if a row sits at the midpoint
             -> max ratio e^{1/r} (not e^{d/r} unless d = 1), reached only with a midpoint row;
  extremes:  f = |h|            in [0, d], d at both ends, 0 only at the midpoint -> max ratio
             e^{d/r} only with a midpoint row (two distinct losses give uniform weights).
Naming trap: the GPT-2 reference repo calls LinUpper `linupper` (its `upper` is a plain linear
0.5 h + 0.5 d, not implemented here) and Quadratic `mid`; fms-fsdp calls LinUpper `upper`.

Gradient accumulation: the train step collects every micro-batch's losses first and calls the
weighter once, so l_min, l_max and the softmax always cover the whole global batch.

Non-finite losses: a row whose loss is NaN or +-inf gets weight 0, is left out of l_min, l_max
and the softmax (so the other rows' weights stay what they would be without it), and is counted
in the metric `nonfinite_rows`. The step's objective sum_i w_i l_i still turns non-finite
(0 * NaN = NaN), so the training loop stops with its non-finite-loss error rather than training
on silently: the policy keeps the weights and their metrics readable, it does not hide the fault.
"""

import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from reweight.interface import MethodEnv, StepInputs

Strategy = Callable[[jax.Array, float], jax.Array]

STRATEGIES: dict[str, Strategy] = {
    "linupper": lambda h, d: jnp.minimum(h + d, d),
    "quadratic": lambda h, d: 1.0 - h**2 / d**2,
    "extremes": lambda h, d: jnp.abs(h),
}
# Names from the reference repositories that mean something else here, with what to use instead.
_ALIASES = {
    "upper": "fms-fsdp's `upper` is LinUpper: use linupper (the GPT-2 repo's `upper`, a plain "
             "linear 0.5h + 0.5d, is not implemented)",
    "mid": "the GPT-2 repo's `mid` is Quadratic: use quadratic",
}
R_SCHEDULES = ("constant", "step", "linear")
_MIN_RANGE = 1e-6  # the papers' floor on l_max - l_min: equal losses give h = 0, uniform weights
FIELD = "config.reweight.loss_based"


def defaults() -> ml_collections.ConfigDict:
    """config.reweight.loss_based: LossBased's settings, each with its default."""
    c = ml_collections.ConfigDict()
    c.strategy = "quadratic"  # linupper | quadratic | extremes (fms-fsdp `upper` = linupper)
    c.r = 1.0  # softmax temperature; max weight ratio e^(d/r); larger is closer to uniform
    c.d = 1.0  # per-example losses are min-max normalised to [-d, d]
    c.warmup_steps = 0  # uniform weights for the first steps
    c.r_schedule = "constant"  # constant | step (r_start, then r) | linear (r_start to r)
    c.r_start = 100.0  # step/linear schedules: r at step 0
    c.r_schedule_steps = 0  # step/linear schedules: steps until r is reached (> 0)
    return c


def problems(cfg: ml_collections.ConfigDict) -> list[str]:
    """Every bad value of config.reweight.loss_based, one message each, building nothing."""
    return _problems(**cfg.reweight.loss_based)


def _positive(name: str, value, meaning: str) -> list[str]:
    if isinstance(value, numbers.Real) and math.isfinite(value) and value > 0:
        return []
    return [f"{FIELD}.{name} must be a finite number > 0, got {value}: {meaning}"]


def _non_negative_int(name: str, value, meaning: str) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0 \
            or not float(value).is_integer():
        return [f"{FIELD}.{name} must be an integer >= 0, got {value!r}: {meaning}"]
    return []


def _problems(strategy: str, r: float, d: float, warmup_steps: int, r_schedule: str,
              r_start: float, r_schedule_steps: int) -> list[str]:
    """The checks of LossBased's settings, shared by the config and the constructor."""
    out = []
    if strategy not in STRATEGIES:
        hint = f" ({_ALIASES[strategy]})" if strategy in _ALIASES else ""
        out.append(f"{FIELD}.strategy={strategy!r} is unknown{hint}; choose one of "
                   f"{sorted(STRATEGIES)}")
    out += _positive("r", r, "r is the softmax temperature; larger is closer to uniform")
    out += _positive("d", d, "losses are normalised to [-d, d]; the papers use 1")
    out += _non_negative_int("warmup_steps", warmup_steps,
                             "the number of first steps with uniform weights")
    if r_schedule not in R_SCHEDULES:
        out.append(f"{FIELD}.r_schedule={r_schedule!r} is unknown; choose one of "
                   f"{list(R_SCHEDULES)}")
    elif r_schedule != "constant":
        out += _positive("r_start", r_start,
                         f"the temperature the {r_schedule} r schedule starts from")
        steps = _non_negative_int("r_schedule_steps", r_schedule_steps,
                                  "the steps the r schedule takes to reach r")
        if not steps and r_schedule_steps == 0:
            steps = [f"{FIELD}.r_schedule_steps must be > 0 with r_schedule={r_schedule!r}, "
                     "got 0: set the steps it takes to reach r, or use r_schedule='constant'"]
        out += steps
    return out


class LossBased:
    """Weights each row by a softmax of a function of its min-max normalised loss.

    Stateless: the weights depend only on this step's losses and the step number, so a resumed
    run weighs exactly as an unbroken one.
    """

    needs_losses = True
    needs_reference = False

    def __init__(self, strategy: str, r: float, d: float = 1.0, warmup_steps: int = 0,
                 r_schedule: str = "constant", r_start: float = 100.0, r_schedule_steps: int = 0):
        found = _problems(strategy, r, d, warmup_steps, r_schedule, r_start, r_schedule_steps)
        if found:
            raise ValueError("\n".join(found))
        self.strategy, self.r_schedule = strategy, r_schedule
        self.r, self.d, self.warmup_steps = float(r), float(d), int(warmup_steps)
        self.r_start, self.r_schedule_steps = float(r_start), int(r_schedule_steps)

    def temperature(self, step: jax.Array) -> jax.Array:
        """r at `step` (counted from 0, warm-up included): the "step" schedule holds r_start for
        the first r_schedule_steps steps, then r (fms-fsdp: 100 for 2000 steps); "linear" moves
        from r_start at step 0 to r at step r_schedule_steps; "constant" is r throughout."""
        step = jnp.asarray(step, jnp.float32)
        if self.r_schedule == "step":
            return jnp.where(step < self.r_schedule_steps, self.r_start, self.r)
        if self.r_schedule == "linear":
            frac = jnp.clip(step / self.r_schedule_steps, 0.0, 1.0)
            return self.r_start + (self.r - self.r_start) * frac
        return jnp.asarray(self.r, jnp.float32)

    def init(self) -> tuple:
        return ()

    def __call__(self, state: tuple, inputs: StepInputs) -> tuple[jax.Array, tuple, dict]:
        """(weights summing to 1 over valid finite rows, the unchanged state, scalar metrics)."""
        losses_B = inputs.example_loss_B.astype(jnp.float32)
        valid_B, step = inputs.valid_B, inputs.step
        finite_B = jnp.isfinite(losses_B)
        usable_B = valid_B & finite_B
        n = usable_B.sum()
        any_usable = n > 0
        l_B = jnp.where(usable_B, losses_B, 0.0)
        l_max = jnp.where(any_usable, jnp.where(usable_B, l_B, -jnp.inf).max(), 0.0)
        l_min = jnp.where(any_usable, jnp.where(usable_B, l_B, jnp.inf).min(), 0.0)
        # (l - l_min) - (l_max - l) = 2l - l_max - l_min, but exactly +-range at the two ends.
        h_B = self.d * ((l_B - l_min) - (l_max - l_B)) / jnp.maximum(l_max - l_min, _MIN_RANGE)
        r = self.temperature(step)
        z_B = STRATEGIES[self.strategy](h_B, self.d) / r
        z_max = jnp.where(any_usable, jnp.where(usable_B, z_B, -jnp.inf).max(), 0.0)
        z_min = jnp.where(any_usable, jnp.where(usable_B, z_B, jnp.inf).min(), 0.0)
        e_B = jnp.where(usable_B, jnp.exp(z_B - z_max), 0.0)  # the largest is exp(0) = 1
        softmax_B = e_B / jnp.maximum(e_B.sum(), 1.0)

        warming_up = step < self.warmup_steps
        uniform_B = usable_B.astype(jnp.float32) / jnp.maximum(n, 1)
        w_B = jnp.where(warming_up, uniform_B, softmax_B)

        sum_sq = (w_B**2).sum()
        ess = jnp.where(any_usable, 1.0 / jnp.maximum(sum_sq, 1e-30), 0.0)
        metrics = {
            # w_i / w_j = exp(z_i - z_j): exact even where the smallest weight underflows to 0.
            "max_weight_ratio": jnp.where(warming_up, 1.0, jnp.exp(z_max - z_min)),
            "entropy": jax.scipy.special.entr(w_B).sum(),  # nats; log(rows) when uniform
            "ess": ess,  # effective sample size 1 / sum w^2
            "ess_fraction": ess / jnp.maximum(n, 1),  # of the valid finite rows; 1 when uniform
            "r": r,
            "warmup": warming_up.astype(jnp.float32),
            "nonfinite_rows": (valid_B & ~finite_B).sum().astype(jnp.float32),
        }
        return w_B, state, metrics


def from_config(cfg: ml_collections.ConfigDict, env: MethodEnv) -> LossBased:
    """The weighter of config.reweight.loss_based (every bad field in one error)."""
    return LossBased(**cfg.reweight.loss_based)
