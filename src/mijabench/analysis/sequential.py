"""Anytime-valid confidence sequences for a cell's defense rate, so a budgeted audit may stop whenever its
data say so and still report an honest interval.

A budgeted audit draws each cell's prompts in a seeded random order *without replacement* from the cell's
finite set of benchmark prompts, so the estimand is the rate the full benchmark would have measured. The
interval is the prior–posterior-ratio confidence sequence of Waudby-Smith & Ramdas ("Confidence sequences
for sampling without replacement", NeurIPS 2020): with a beta-binomial prior on the number K of safe
prompts among the N, the ratio prior(K) / posterior_t(K) is a nonnegative martingale under the true K, so by
Ville's inequality the set {K : prior(K) / posterior_t(K) < 1/alpha} holds the truth at every t at once with
probability at least 1 - alpha. For this prior the ratio reduces to

    ratio_t(K) = BetaBin(S_t; t, a, b) / Hypergeom(S_t; N, K, t)

(S_t safe among the first t), so each limit is a scan over K = 0..N, vectorised over cells. The set shrinks
to the exact rate when the whole cell has been drawn, which is what lets a cell near 50% reach a narrow
interval before its prompts run out. ``population=None`` gives the with-replacement version (Robbins'
beta-binomial mixture for a Bernoulli mean), for repeated sampling of the same prompt (replicas).

Deviations at stopping are MOVER combinations of these limits (``analysis.intervals.deviation_limits``);
docs/statistics.md has the simulated coverage of both.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln, gammaln

ALPHA = 0.05
PRIOR = (1.0, 1.0)  # uniform on the rate; docs/statistics.md compares Jeffreys' (0.5, 0.5)
GRID = 4001  # points of the rate grid for the with-replacement sequence


def _logcomb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def wor_limits(safe: np.ndarray, n: np.ndarray, population: np.ndarray, alpha: float = ALPHA,
               prior: tuple[float, float] = PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits of the rate K/N after ``n`` draws without replacement with ``safe`` safe,
    per cell (arrays of one shape). A cell with n = 0 gets [0, 1]; with n = N, the exact rate."""
    safe, n, population = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (safe, n, population))
    a, b = prior
    big = int(population.max()) if population.size else 0
    k = np.arange(big + 1, dtype=np.float64)[None, :]
    s, t, pop = safe[:, None], n[:, None], population[:, None]
    fail = t - s
    possible = (k >= s) & (pop - k >= fail) & (k <= pop)
    with np.errstate(invalid="ignore"):
        log_hyp = (_logcomb(k, np.minimum(s, k)) + _logcomb(np.maximum(pop - k, 0), np.minimum(fail, pop))
                   - _logcomb(pop, t))
    log_bb = _logcomb(t, s) + betaln(s + a, fail + b) - betaln(a, b)
    inside = possible & (log_hyp > np.log(alpha) + log_bb)
    return _ends(inside, k, pop)


def bernoulli_limits(safe: np.ndarray, n: np.ndarray, alpha: float = ALPHA,
                     prior: tuple[float, float] = PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """With-replacement limits: {p : p^S (1-p)^F > alpha * B(a+S, b+F) / B(a, b)} on a fine grid, widened by
    one grid step each side so the grid never makes the interval shorter than the exact set."""
    safe, n = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (safe, n))
    a, b = prior
    p = np.linspace(0.0, 1.0, GRID)[None, :]
    s, fail = safe[:, None], (n - safe)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = np.where(s > 0, s * np.log(p), 0.0) + np.where(fail > 0, fail * np.log1p(-p), 0.0)
    inside = loglik > np.log(alpha) + betaln(s + a, fail + b) - betaln(a, b)
    low, high = _ends(inside, p * (GRID - 1), np.full((len(safe), 1), GRID - 1.0))
    step = 1.0 / (GRID - 1)
    return np.clip(low - step, 0, 1), np.clip(high + step, 0, 1)


def _ends(inside: np.ndarray, k: np.ndarray, pop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last grid point inside, over the population size; the set is an interval because the
    log-likelihood is concave in the rate."""
    any_in = inside.any(axis=1)
    first = np.argmax(inside, axis=1)
    last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    kk = np.broadcast_to(k, inside.shape)
    rows = np.arange(inside.shape[0])
    denom = np.maximum(pop[:, 0], 1)
    low = np.where(any_in, kk[rows, first] / denom, 0.0)
    high = np.where(any_in, kk[rows, last] / denom, 1.0)
    return low, high


def cell_limits(safe: np.ndarray, n: np.ndarray, population: np.ndarray | None,
                alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The limits a budgeted audit reports: without replacement when the cells' sizes are known."""
    if population is None:
        return bernoulli_limits(safe, n, alpha)
    return wor_limits(safe, n, population, alpha)
