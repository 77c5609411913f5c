"""RegMix (Liu et al. 2025): the math of a mixture sweep.

Draw mixtures from a Dirichlet around a centre (the natural proportions). By default as the
reference code does (sail-sg/regmix, `mixture_config/synthesize_mixture.py`): the prior is the
centre raised to a temperature of 0.5 and renormalised, and each draw's concentration is the
prior times a strength picked at random from 15 log-spaced values over [0.1, 5], a total
concentration below K for most draws, so many mixtures are spiky (a few domains hold most of
the weight). The older "scaled" form, Dir(s * K * centre) with s cycled over a list, is far
less spiky. Then the paper's safeguards (no domain repeated more than `max_epochs` times in the target run's tokens, tiny
weights zeroed); regress the target validation loss on the mixture (ridge-regularised linear by
default, gradient-boosted trees as an option); check the fit by its Spearman rank correlation
on held-out trials; predict over many simulated mixtures and average the top k. Running the
trials is orchestration (runs/sweep.py).
"""

from typing import Callable, Sequence

import numpy as np
import scipy.stats


def parse_strengths(text: str) -> list[float]:
    """"0.3,1,3" -> Dirichlet concentration scales, each > 0."""
    try:
        values = [float(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        values = []
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"config.sweep.dirichlet_strengths={text!r} must be comma-separated "
                         "floats > 0: each scales the natural proportions into a Dirichlet "
                         "concentration (small = spiky mixtures, large = near the centre)")
    return values


def parse_range(text: str) -> tuple[float, float]:
    """"0.1,5" -> (low, high), 0 < low <= high."""
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        low = high = -1.0
    if not 0 < low <= high:
        raise ValueError(f"config.sweep.strength_range={text!r} must be 'LOW,HIGH' with "
                         "0 < LOW <= HIGH: the Dirichlet strengths of the reference's draws")
    return low, high


def tempered(center: np.ndarray, temperature: float) -> np.ndarray:
    """center ** temperature, renormalised (zeros stay zero): the reference's prior."""
    if not 0 < temperature <= 1:
        raise ValueError(f"config.sweep.temperature={temperature} must be in (0, 1]: the "
                         "prior is the centre to this power (the reference's 0.5)")
    p = np.asarray(center, np.float64) ** temperature
    return p / p.sum()


def regmix_strengths(rng: np.random.Generator, n: int, low: float, high: float,
                     grid: int = 15) -> np.ndarray:
    """[n] strengths, each one of `grid` log-spaced values over [low, high] at random."""
    return rng.choice(np.logspace(np.log10(low), np.log10(high), grid), size=n)


def epoch_caps(counts: np.ndarray | None, target_tokens: float,
               max_epochs: float) -> np.ndarray | None:
    """Largest weight each domain may get: max_epochs * its tokens / the run's tokens."""
    if counts is None:
        return None
    if max_epochs <= 0 or target_tokens <= 0:
        raise ValueError(f"config.sweep.max_epochs={max_epochs} and the target tokens "
                         f"{target_tokens} must be > 0")
    return max_epochs * np.asarray(counts, np.float64) / target_tokens


def draw_mixtures(rng: np.random.Generator, center: np.ndarray, strengths: Sequence[float],
                  n: int, *, min_weight: float = 0.0, caps: np.ndarray | None = None,
                  max_rounds: int = 1000) -> np.ndarray:
    """[n, K] mixtures; row i comes from Dir(strengths[i % S] * K * center) (the "scaled"
    form), safeguarded as `_safeguarded`."""
    center = np.asarray(center, np.float64)
    k = (center > 0).sum()
    out = np.zeros((n, len(center)))
    for j, s in enumerate(strengths):
        rows = np.arange(j, n, len(strengths))
        out[rows] = _safeguarded(rng, lambda m: np.full(m, s * k), center, len(rows),
                                 min_weight, caps, max_rounds)
    return out


def draw_regmix(rng: np.random.Generator, center: np.ndarray, n: int, *,
                temperature: float = 0.5, strength_range: tuple[float, float] = (0.1, 5.0),
                min_weight: float = 0.0, caps: np.ndarray | None = None,
                max_rounds: int = 1000) -> np.ndarray:
    """[n, K] mixtures as the reference draws them: Dir(s * tempered(center)), s one of 15
    log-spaced strengths over `strength_range` per draw; safeguarded as `_safeguarded`."""
    prior = tempered(center, temperature)
    return _safeguarded(rng, lambda m: regmix_strengths(rng, m, *strength_range), prior, n,
                        min_weight, caps, max_rounds)


def _safeguarded(rng, concentration, prior, n, min_weight, caps, max_rounds) -> np.ndarray:
    """n draws of Dir(c * prior), c = concentration(draws) per draw, with weights below
    `min_weight` zeroed (then renormalised) and draws over `caps` redrawn. Domains with zero
    prior stay at zero."""
    live = prior > 0
    kept: list = []
    for _ in range(max_rounds):
        if len(kept) >= n:
            break
        m = max(2 * (n - len(kept)), 16)
        alpha = concentration(m)[:, None] * prior[live][None, :]
        w = np.zeros((m, len(prior)))
        # numpy's dirichlet takes one alpha vector: draw via gammas for per-row alphas.
        g = rng.standard_gamma(alpha)
        w[:, live] = g / np.maximum(g.sum(1, keepdims=True), 1e-300)
        w[w < min_weight] = 0.0
        total = w.sum(1, keepdims=True)
        ok = total[:, 0] > 0
        w = w / np.where(ok[:, None], total, 1.0)
        if caps is not None:
            ok &= (w <= caps + 1e-12).all(1)
        kept.extend(w[ok][:n - len(kept)])
    else:
        raise ValueError(f"could not draw mixtures within the epoch caps {caps}: raise "
                         "config.sweep.max_epochs or lower target_tokens")
    return np.asarray(kept)[:n]


def distinct_sample(rng: np.random.Generator, candidates: np.ndarray, n: int,
                    tol: float = 1e-5) -> np.ndarray:
    """n of `candidates` at random, without replacement, after dropping near-duplicates (rows
    within L1 `tol` of another): the reference (sail-sg/regmix, mixture_config) draws 100x the
    mixtures it needs, deduplicates and samples, so that a spiky prior's one-domain mixtures,
    drawn again and again, are each trained once (a repeated mixture and seed is a wasted
    proxy run)."""
    order = np.lexsort(candidates.T)
    kept = [order[0]]
    for i in order[1:]:
        if np.abs(candidates[i] - candidates[kept[-1]]).sum() > tol:
            kept.append(i)
    if len(kept) < n:
        raise ValueError(f"only {len(kept)} distinct mixtures among {len(candidates)} drawn, "
                         f"fewer than the {n} trials: raise config.sweep.sample_multiplier or "
                         "the Dirichlet strengths, or lower config.sweep.num_trials")
    return candidates[np.sort(rng.choice(np.asarray(kept), size=n, replace=False))]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation, ties sharing their mean rank (nan for fewer than 2 points
    or a constant side)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a, b).statistic)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    """Linear regression y ~ b + x @ w with an L2 penalty alpha on w only (weights on the
    simplex are collinear with the intercept; the penalty makes the solution unique)."""
    from sklearn.linear_model import Ridge
    return Ridge(alpha=alpha).fit(x, y).predict


def fit_gbm(x: np.ndarray, y: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Gradient-boosted trees (scikit-learn's HistGradientBoostingRegressor)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    model = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1,
                                          min_samples_leaf=max(2, len(x) // 16),
                                          random_state=seed).fit(x, y)
    return model.predict


def fit(kind: str, x: np.ndarray, y: np.ndarray, *, ridge_alpha: float,
        seed: int) -> Callable[[np.ndarray], np.ndarray]:
    if kind == "ridge":
        return fit_ridge(x, y, ridge_alpha)
    if kind == "gbm":
        return fit_gbm(x, y, seed)
    raise ValueError(f"config.sweep.regression={kind!r} is unknown; use ridge or gbm")


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): at least 2 of each when n >= 4, else nothing held out."""
    m = max(2, round(fraction * n)) if fraction > 0 else 0
    if n - m < 2 or m < 2:
        return np.arange(n), np.arange(0)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[m:]), np.sort(perm[:m])


def top_k_mixture(predict: Callable[[np.ndarray], np.ndarray], simulated: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean of the k simulated mixtures with the lowest predicted loss, their predictions)."""
    pred = predict(simulated)
    best = np.argsort(pred)[:max(1, min(k, len(pred)))]
    w = simulated[best].mean(0)
    return w / w.sum(), pred[best]
