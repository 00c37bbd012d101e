"""Hypothesis tests on counts, written with math and numpy (no scipy): two-proportion z-test, Fisher's exact
test, the exact McNemar test, and Holm's step-down correction."""

from __future__ import annotations

import math

import numpy as np


def log_factorials(n_max: int) -> np.ndarray:
    """log(k!) for k = 0..n_max, exact sums of logs (no Stirling approximation)."""
    out = np.zeros(n_max + 1)
    if n_max > 0:
        out[1:] = np.cumsum(np.log(np.arange(1, n_max + 1)))
    return out


def two_proportion_z(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the pooled two-proportion z-test, elementwise. A pooled rate of 0 or 1 (no
    variation at all) gives p = 1."""
    k1, n1, k2, n2 = (np.asarray(a, dtype=np.float64) for a in (k1, n1, k2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (k1 + k2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = np.abs(k1 / n1 - k2 / n2) / se
    p = np.array([math.erfc(v / math.sqrt(2)) if np.isfinite(v) else 1.0 for v in np.atleast_1d(z)])
    return np.where(se > 0, p, 1.0).reshape(np.shape(z))


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p of Fisher's exact test on the table [[a, b], [c, d]]: the sum of the probabilities of all
    tables with the same margins that are no more likely than the observed one (as R and scipy do)."""
    n = a + b + c + d
    row1, col1 = a + b, a + c
    lf = log_factorials(n)
    lo, hi = max(0, row1 + col1 - n), min(row1, col1)
    x = np.arange(lo, hi + 1)
    logp = (lf[row1] + lf[n - row1] + lf[col1] + lf[n - col1] - lf[n]
            - lf[x] - lf[row1 - x] - lf[col1 - x] - lf[n - row1 - col1 + x])
    observed = logp[a - lo]
    p = np.exp(logp[logp <= observed + 1e-7]).sum()
    return float(min(1.0, p))


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p from the discordant counts: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2),
    capped at 1. No discordant pair at all gives 1."""
    n = b + c
    if n == 0:
        return 1.0
    lf = log_factorials(n)
    x = np.arange(0, min(b, c) + 1)
    tail = np.exp(lf[n] - lf[x] - lf[n - x] - n * math.log(2)).sum()
    return float(min(1.0, 2 * tail))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    stepped = (m - np.arange(m)) * p[order]
    adjusted = np.minimum(1.0, np.maximum.accumulate(stepped))
    out = np.empty(m)
    out[order] = adjusted
    return out

