"""RegMix (Liu et al. 2025): the math of a mixture sweep.

Draw mixtures from a Dirichlet around a centre (the natural proportions), with the paper's
safeguards (no domain repeated more than `max_epochs` times in the target run's tokens, tiny
weights zeroed); regress the target validation loss on the mixture (ridge-regularised linear by
default, gradient-boosted trees as an option); check the fit by its Spearman rank correlation
on held-out trials; predict over many simulated mixtures and average the top k. Running the
trials is orchestration (sweep.py).
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
    """[n, K] mixtures; row i comes from Dir(strengths[i % S] * K * center), with weights
    below `min_weight` zeroed (then renormalised) and rows over `caps` redrawn. Domains with
    zero centre weight stay at zero."""
    center = np.asarray(center, np.float64)
    live = center > 0
    out = np.zeros((n, len(center)))
    for j, s in enumerate(strengths):
        rows = np.arange(j, n, len(strengths))
        kept: list = []
        for _ in range(max_rounds):
            if len(kept) >= len(rows):
                break
            w = np.zeros((max(2 * (len(rows) - len(kept)), 16), len(center)))
            w[:, live] = rng.dirichlet(s * live.sum() * center[live], size=len(w))
            w[w < min_weight] = 0.0
            total = w.sum(1, keepdims=True)
            ok = total[:, 0] > 0
            w = w / np.where(ok[:, None], total, 1.0)
            if caps is not None:
                ok &= (w <= caps + 1e-12).all(1)
            kept.extend(w[ok][:len(rows) - len(kept)])
        else:
            raise ValueError(f"could not draw mixtures within the epoch caps {caps} (strength "
                             f"{s}): raise config.sweep.max_epochs or lower target_tokens")
        out[rows] = np.asarray(kept)[:len(rows)]
    return out


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
