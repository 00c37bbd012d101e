"""Analytic intervals for defense rates and the figures built on them, chosen so that their coverage holds
for small and large cells alike (docs/statistics.md has the simulated coverage and the reasons):

* a cell's rate: Clopper-Pearson (exact, never below 95%, never collapses at 0/n or n/n);
* a cell whose responses cluster on shared prompts: Clopper-Pearson on the effective sample size
  n / design effect (Korn & Graubard);
* a deviation from the mean of a model's groups: MOVER (Zou & Donner) on the groups' Wilson limits;
* the max-min spread between groups: Sidak-simultaneous Clopper-Pearson limits of every group;
* "all groups equal": a Monte-Carlo permutation test of the chi-square of homogeneity.

Every function is vectorised over cells; counts may be fractional (effective counts of clustered cells).
"""

from __future__ import annotations

import numpy as np

from .frame import CI_LEVEL

# scipy.special is imported where it is used (a quarter of a second): most commands that import this package
# never compute an interval


def clopper_pearson(k: np.ndarray, n: np.ndarray, level: float | np.ndarray = CI_LEVEL
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial limits from Beta quantiles; NaN where n is 0. ``level`` may differ per cell."""
    from scipy import special

    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    alpha = (1 - np.asarray(level, np.float64)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        # the quantile's parameters must stay positive; the k=0 and k=n branches are replaced below
        low = special.betaincinv(np.maximum(k, 1e-12), np.maximum(n - k + 1, 1e-12), alpha)
        high = special.betaincinv(np.maximum(k + 1, 1e-12), np.maximum(n - k, 1e-12), 1 - alpha)
    low = np.where(k <= 0, 0.0, low)
    high = np.where(k >= n, 1.0, high)
    empty = ~(n > 0)
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def wilson(k: np.ndarray, n: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score limits; NaN where n is 0."""
    from scipy import special

    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    z = float(special.ndtri(1 - (1 - level) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(np.maximum(p * (1 - p), 0) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def effective_counts(safe: np.ndarray, judged: np.ndarray, cluster_safe: np.ndarray,
                     cluster_judged: np.ndarray, cluster_cell: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(effective safe, effective judged, design effect) per cell from its clusters' counts (Korn &
    Graubard). The design effect is the ratio-estimator variance with clusters resampled over the binomial
    variance, never below 1 (a cell of independent prompts keeps its n). Cells with no variation (0/n, n/n)
    or a single cluster cannot estimate it and keep design effect 1."""
    safe, judged = np.asarray(safe, np.float64), np.asarray(judged, np.float64)
    cells = len(safe)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = safe / judged
        resid = cluster_safe - p[cluster_cell] * cluster_judged
        m = np.bincount(cluster_cell, minlength=cells).astype(np.float64)
        var = np.bincount(cluster_cell, resid * resid, minlength=cells) * m / (m - 1) / judged ** 2
        deff = var / (p * (1 - p) / judged)
    deff = np.where(np.isfinite(deff) & (m > 1), np.maximum(deff, 1.0), 1.0)
    return safe / deff, judged / deff, deff


def deviation_limits(rate: np.ndarray, low: np.ndarray, high: np.ndarray, weight: np.ndarray,
                     starts: np.ndarray, corr: np.ndarray | None = None, scale: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """MOVER distances (below, above the estimate) of rate_g - sum_j weight_j rate_j over the cells of each
    parent block (``starts``). ``low``/``high``: each cell's own limits; ``weight`` sums to 1 within a block.

    The deviation is own - others, own = (1 - w_g) rate_g and others = sum_{j != g} w_j rate_j. Independent
    cells: Zou & Donner's MOVER for a sum. Cells linked by shared clusters (counterfactual twins): ``corr``
    is the correlation of own and others, ``scale`` the others' standard error over its value for
    independent cells (both from ``twin_dependence``), and MOVER for correlated terms combines them."""
    parent = np.cumsum(np.isin(np.arange(len(rate)), starts)) - 1
    down, up = (rate - low) ** 2, (high - rate) ** 2
    w2 = weight ** 2
    # the others' lower side comes from their lower limits and vice versa
    others_up = np.add.reduceat(w2 * up, starts)[parent] - w2 * up if len(starts) else up
    others_down = np.add.reduceat(w2 * down, starts)[parent] - w2 * down if len(starts) else down
    own = (1 - weight) ** 2
    r = np.zeros(len(rate)) if corr is None else corr
    k = np.ones(len(rate)) if scale is None else scale
    own_down, own_up = np.sqrt(own * down), np.sqrt(own * up)
    oth_up, oth_down = k * np.sqrt(np.maximum(others_up, 0)), k * np.sqrt(np.maximum(others_down, 0))
    dev_low = np.sqrt(np.maximum(own_down ** 2 + oth_up ** 2 - 2 * r * own_down * oth_up, 0))
    dev_high = np.sqrt(np.maximum(own_up ** 2 + oth_down ** 2 - 2 * r * own_up * oth_down, 0))
    return dev_low, dev_high


def twin_dependence(cell: np.ndarray, cluster: np.ndarray, safe: np.ndarray, judged: np.ndarray,
                    rate: np.ndarray, n: np.ndarray, weight: np.ndarray, parent: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corr, scale) per cell g for ``deviation_limits``, from the clusters' residuals: corr of own = (1 -
    w_g) rate_g with others = sum_{j != g} w_j rate_j, and the others' standard error with clusters
    resampled jointly over the same with the cells independent. Counterfactual families spanning the groups
    of one model make both differ from (0, 1); clusters that each lie in one cell give exactly (0, 1).
    Third: the same standard-error ratio for each block's whole mean.
    ``cell``/``cluster``/``safe``/``judged``: the (cell, cluster) sums; ``parent``: each cell's block."""
    u = (safe - rate[cell] * judged) / n[cell]  # each cluster's share of its cell's rate residual
    cells, parents = len(rate), int(parent.max()) + 1 if len(parent) else 0
    key = cluster * max(parents, 1) + parent[cell]
    if len(key) < 2 or np.all(key[1:] >= key[:-1]):
        # pairs ordered by cluster then cell (as ClusterIndex gives them): (cluster, parent) runs are
        # contiguous, so no sort is needed
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
        inverse = np.cumsum(np.r_[False, key[1:] != key[:-1]]) if len(key) else first
        family = key[first]
    else:
        family, inverse = np.unique(key, return_inverse=True)
    mean = np.bincount(inverse, weight[cell] * u, len(family))  # the parent mean's residual per cluster
    a = np.bincount(cell, u * u, cells)  # sum over clusters of u_g^2
    b = np.bincount(cell, u * mean[inverse], cells)  # sum of u_g * mean
    c_block = np.bincount(family % max(parents, 1), mean * mean, parents)  # sum of mean^2
    c = c_block[parent]
    w = weight
    var_own = (1 - w) ** 2 * a
    var_others = c - 2 * w * b + w * w * a  # others' residual per cluster: mean - w u_g
    mean_indep = np.bincount(parent, w * w * a, parents)
    var_others_indep = mean_indep[parent] - w * w * a
    cov = (1 - w) * (b - w * a)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(var_own * var_others)
        scale = np.sqrt(var_others / var_others_indep)
        mean_scale = np.sqrt(c_block / mean_indep)
    corr = np.where(np.isfinite(corr), np.clip(corr, -1, 1), 0.0)
    scale = np.where(np.isfinite(scale) & (var_others_indep > 0), scale, 1.0)
    mean_scale = np.where(np.isfinite(mean_scale) & (mean_indep > 0), mean_scale, 1.0)
    return corr, scale, mean_scale


def paired_difference_limits(both: np.ndarray, only_a: np.ndarray, only_b: np.ndarray, neither: np.ndarray,
                             level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Limits of rate_a - rate_b over matched pairs: Newcombe's method 10, MOVER on the two Wilson
    intervals with the phi correlation of the 2x2 table (reduced by n/2 when positive, as Newcombe
    advises). It keeps a width when no pair is discordant, where a bootstrap of the pairs collapses."""
    both, only_a, only_b, neither = (np.asarray(x, np.float64) for x in (both, only_a, only_b, neither))
    n = both + only_a + only_b + neither
    ka, kb = both + only_a, both + only_b
    with np.errstate(invalid="ignore", divide="ignore"):
        pa, pb = ka / n, kb / n
        la, ha = wilson(ka, n, level)
        lb, hb = wilson(kb, n, level)
        cross = both * neither - only_a * only_b
        cross = np.where(cross > 0, np.maximum(cross - n / 2, 0), cross)
        phi = cross / np.sqrt((both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither))
    phi = np.where(np.isfinite(phi), phi, 0.0)
    d = pa - pb
    low = d - np.sqrt(np.maximum((pa - la) ** 2 - 2 * phi * (pa - la) * (hb - pb) + (hb - pb) ** 2, 0))
    high = d + np.sqrt(np.maximum((ha - pa) ** 2 - 2 * phi * (ha - pa) * (pb - lb) + (pb - lb) ** 2, 0))
    return np.maximum(low, -1.0), np.minimum(high, 1.0)


def spread_limits(k: np.ndarray, n: np.ndarray, starts: np.ndarray, level: float = CI_LEVEL
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Limits of max - min of the rates in each block: every cell gets a Clopper-Pearson interval at the
    Sidak level level^(1/G), so all G hold together with probability >= level; then the spread lies in
    [max(0, max low - min high), max high - min low]."""
    ends = np.append(starts[1:], len(k)).astype(np.int64) if len(starts) else np.zeros(0, np.int64)
    size = (ends - starts).astype(np.float64)
    parent = np.repeat(np.arange(len(starts)), ends - starts)
    low, high = clopper_pearson(k, n, level ** (1 / size[parent]) if len(starts) else level)
    if not len(starts):
        return np.zeros(0), np.zeros(0)
    max_low, min_low = np.maximum.reduceat(low, starts), np.minimum.reduceat(low, starts)
    max_high, min_high = np.maximum.reduceat(high, starts), np.minimum.reduceat(high, starts)
    return np.maximum(0.0, max_low - min_high), max_high - min_low


def all_equal_pvalue(k: np.ndarray, n: np.ndarray, starts: np.ndarray, resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Per block, the permutation p-value of "every cell has the same rate": Pearson's chi-square of
    homogeneity, compared with ``resamples`` tables drawn from the multivariate hypergeometric law of the
    safe counts given both margins (the exact null distribution). p = (1 + #{X*2 >= X2}) / (1 + resamples),
    so the test never rejects more often than its level. Blocks of one cell, or with no variation, get 1."""
    k, n = np.asarray(k, np.int64), np.asarray(n, np.int64)
    if not len(starts):
        return np.zeros(0)
    ends = np.append(starts[1:], len(k)).astype(np.int64)
    size = ends - starts
    blocks = len(starts)
    total_k, total_n = np.add.reduceat(k, starts), np.add.reduceat(n, starts)
    observed = _chi_square(k[:, None].astype(np.float64), n, total_k, total_n, starts)[:, 0]
    # draw the counts cell by cell: cell j's safe count is hypergeometric given what earlier cells took
    left_k = np.repeat(total_k[:, None], resamples, axis=1)
    left_n = np.repeat(total_n[:, None], resamples, axis=1)
    draws = np.zeros((len(k), resamples), np.float64)
    for j in range(int(size.max())):
        active = np.flatnonzero(size > j)
        cell = starts[active] + j
        nj = np.repeat(n[cell][:, None], resamples, axis=1)
        good, bad = left_k[active], left_n[active] - left_k[active]
        x = rng.hypergeometric(good, bad, nj) if good.size else good
        draws[cell] = x
        left_k[active] -= x
        left_n[active] -= nj
    null = _chi_square(draws, n, total_k, total_n, starts)
    exceed = (null >= observed[:, None] * (1 - 1e-9) - 1e-12).sum(axis=1)
    p = (1 + exceed) / (1 + resamples)
    flat = (total_k == 0) | (total_k == total_n) | (size < 2)
    return np.where(flat, 1.0, p).reshape(blocks)


def _chi_square(k: np.ndarray, n: np.ndarray, total_k: np.ndarray, total_n: np.ndarray,
                starts: np.ndarray) -> np.ndarray:
    """(blocks, columns) Pearson chi-square of homogeneity for the (cells, columns) safe counts ``k``."""
    parent = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(n))))
    p = (total_k / np.maximum(total_n, 1))[parent]
    expected = n * p
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (k - expected[:, None]) ** 2 / (n * p * (1 - p))[:, None]
    terms = np.where(np.isfinite(terms), terms, 0.0)
    return np.add.reduceat(terms, starts, axis=0)
