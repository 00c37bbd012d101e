"""Intervals for a staged (budgeted) audit, and the sample size each stage needs.

A budgeted audit draws a cell's prompts without replacement, in a seeded random order, in *stages*: a
pilot (look 1), a stage whose size is planned from the pilot (look 2) and, only where that stage missed the
target, top-ups (looks 3, 4, ...). The estimand is the rate over the cell's N benchmark prompts, K / N: the
number the full audit would have reported.

Why the interval is valid although every stage size is chosen from the data. It is an adaptive
group-sequential design with the inverse-normal combination of the stages' p-values (Lehmacher & Wassmer
1999). For a candidate K, stage j's p-value p_j(K) is the exact hypergeometric tail of its safe count given
everything drawn before it: given the past, stage j is a simple random sample of the prompts not yet drawn,
so p_j(K) is (super)uniform *conditionally on the past, whatever rule chose the stage's size*. Hence
Z_j = Φ⁻¹(1 − p_j) is at most a standard normal given the past, and a combination with weights fixed
*before* the stages they weigh is at most a standard normal too:

    C_2 = w1 Z_1 + w2 Z_2 (w1² + w2² = 1, w1 fixed from the design before the pilot)
    C_r = sqrt(1 − ρ) C_(r−1) + sqrt(ρ) Z_r for a top-up r ≥ 3 (ρ fixed).

(C_2, C_3, ...) is then jointly the Gaussian AR(1) sequence with correlations sqrt(1 − ρ), or stochastically
below it, so boundaries c_2, c_3, ... with P(some C_r > c_r) = the α spent on looks 2, 3, ... (computed once
by numerical integration, ``boundaries``) bound the chance that *any* look's interval misses K; the pilot's
own exact interval gets a Bonferroni share, and a look past the schedule (6) gets none: its boundary is
+inf, so its interval is only the K consistent with every draw, exact when the look drew the whole cell and
no narrower than that when a budget cut it short. A look's interval is {K : C_r(K) ≤ c_r for both tails}; the
p-values are monotone in K, so it is an interval, found by bisection. The reported interval is the
intersection of the looks made, which misses only if some look missed. Unlike a design that uses the last
stage alone, the pilot's prompts count towards the estimate, and a top-up only has to add what was missing.

docs/statistics.md compares this with anytime-valid confidence sequences (``analysis.sequential``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import beta, hypergeom, norm

ALPHA = 0.05
PILOT_SHARE = 0.004  # of alpha, Bonferroni, on the pilot's own interval (a budget may stop a cell there)
SPEND = (0.92, 0.07, 0.004, 0.002)  # of alpha, on looks 2, 3, 4, 5; none is left for look 6 (``boundary``)
TOPUP_WEIGHT = 0.1  # rho: the share of a top-up's z in the combination (fixed in advance)
REF_RATE = 0.25  # the rate that fixes the pilot's weight (only efficiency depends on it)
MAX_PILOT_WEIGHT = 0.5
PLAN_LEVEL = 0.80  # two-sided level of the interval whose most pessimistic rate plans (no shrinkage)
PLAN_MARGIN = 1.02  # a planned stage a little long is cheaper than a top-up


@lru_cache(maxsize=8)
def boundaries(alpha: float, rho: float, spend: tuple[float, ...], pilot_share: float) -> tuple[float, ...]:
    """c_1 (the pilot's, Bonferroni) and c_2 ... c_5: one-sided boundaries of the combination statistics,
    each tail spending half of the look's alpha, by integrating the AR(1) Gaussian sequence on a grid.
    Rounded up by 1e-4 so the grid's error only makes them conservative."""
    c = [float(norm.isf(pilot_share * alpha / 2))]
    x = np.linspace(-9.0, 9.0, 1801)
    dx = x[1] - x[0]
    a, b = np.sqrt(1 - rho), np.sqrt(rho)
    kernel = norm.pdf((x[:, None] - a * x[None, :]) / b) / b * dx  # C_r's mass given C_(r-1)
    c2 = float(norm.isf(spend[0] * alpha / 2))
    c.append(c2 + 1e-4)
    density = np.where(x <= c2, norm.pdf(x) * dx, 0.0)  # C_2 not past its boundary (a probability mass)
    for share in spend[1:]:
        lo, hi = 0.0, 8.0
        for _ in range(40):
            mid = (lo + hi) / 2
            crossing = float(np.sum(density * norm.sf((mid - a * x) / b)))
            lo, hi = (lo, mid) if crossing <= share * alpha / 2 else (mid, hi)
        c.append(hi + 1e-4)
        density = np.where(x <= hi, kernel @ density, 0.0)
    return tuple(c)


def boundary(look: int, alpha: float = ALPHA) -> float:
    """c_look. Past the spending schedule (look 6, meant to take every prompt left) no alpha is left: the
    boundary is +inf, so the look's interval is only what its draws prove for certain, every K consistent
    with them (exact when they are the whole cell). A finite boundary there, such as c_5 again when a budget
    cuts the last look short, would spend about 0.5% of alpha beyond alpha (tests/test_budget_stats.py)."""
    bounds = boundaries(alpha, TOPUP_WEIGHT, SPEND, PILOT_SHARE)
    return bounds[look - 1] if look <= len(bounds) else float("inf")


def coefficients(look: int, pilot_weight: np.ndarray) -> list[np.ndarray]:
    """The weight of each stage's z in look ``look``'s statistic, per cell."""
    w1 = np.sqrt(pilot_weight)
    if look <= 1:
        return [np.ones_like(w1)]
    coef = [w1, np.sqrt(1 - pilot_weight)]
    for _ in range(3, look + 1):
        coef = [np.sqrt(1 - TOPUP_WEIGHT) * x for x in coef] + [np.full_like(w1, np.sqrt(TOPUP_WEIGHT))]
    return coef


def pilot_weight(pilot_n: np.ndarray, population: np.ndarray, width: float,
                 rate: np.ndarray | float = REF_RATE, alpha: float = ALPHA) -> np.ndarray:
    """w1², the pilot's share of the information a cell at ``rate`` needs for ``width`` (information
    ~ n / (1 - n/N), the inverse variance of the estimate). It must not depend on the cell's own pilot:
    the caller passes a rate fixed in advance or learnt from other, independent cells."""
    n1, pop = np.asarray(pilot_n, np.float64), np.asarray(population, np.float64)
    info1 = n1 / np.maximum(1 - n1 / np.maximum(pop, 1), 1e-9)
    p = np.clip(np.asarray(rate, np.float64), 0.02, 0.5)
    need = (2 * boundary(2, alpha) / max(width, 1e-3)) ** 2 * p * (1 - p)
    return np.clip(info1 / need, 0.01, MAX_PILOT_WEIGHT)


def _z(p: np.ndarray) -> np.ndarray:
    return norm.isf(np.clip(p, 0.0, 1.0))


def _statistic(k: np.ndarray, stages: list[tuple[np.ndarray, np.ndarray]], population: np.ndarray,
               coef: list[np.ndarray], upper: bool) -> np.ndarray:
    """C(K) for the upper tail (evidence that K is too small) or the lower tail, per cell; +inf where K is
    impossible given the draws."""
    total = np.zeros(k.shape)
    impossible = np.zeros(k.shape, bool)
    before_n, before_s = np.zeros_like(k), np.zeros_like(k)
    for (n_j, s_j), w in zip(stages, coef, strict=True):
        pool, left = population - before_n, k - before_s
        p = hypergeom.sf(s_j - 1, pool, left, n_j) if upper else hypergeom.cdf(s_j, pool, left, n_j)
        p = np.where(n_j > 0, p, 1.0)  # an empty stage says nothing: z = -inf, the look accepts every K
        impossible |= p <= 0
        with np.errstate(invalid="ignore"):
            total = total + w * _z(p)
        before_n, before_s = before_n + n_j, before_s + s_j
    return np.where(impossible, np.inf, np.nan_to_num(total, nan=-np.inf))


def combined_limits(stages: list[tuple[np.ndarray, np.ndarray]], population: np.ndarray, look: int,
                    weight: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and limits of K / N at ``look`` from the stages drawn so far, ``stages[j] = (decided draws,
    safe draws)`` of stage j + 1 per cell (arrays of one shape). A cell with nothing drawn gets [0, 1]."""
    stages = [(np.asarray(n, np.int64), np.asarray(s, np.int64)) for n, s in stages]
    pop = np.asarray(population, np.int64)
    n = sum(x[0] for x in stages)
    s = sum(x[1] for x in stages)
    c, coef = boundary(look, alpha), coefficients(look, np.asarray(weight, np.float64))
    steps = int(np.ceil(np.log2(max(int(pop.max(initial=1)), 1) + 1))) + 1
    # lower limit: the smallest K the upper-tail test accepts, in [s, N - failures]
    lo, hi = s.copy(), pop - (n - s)
    for _ in range(steps):
        mid = (lo + hi) // 2
        ok = _statistic(mid, stages, pop, coef, upper=True) <= c
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, np.minimum(mid + 1, hi))
    k_low = hi
    lo, hi = s.copy(), pop - (n - s)
    for _ in range(steps):
        mid = (lo + hi + 1) // 2
        ok = _statistic(mid, stages, pop, coef, upper=False) <= c
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, np.maximum(mid - 1, lo))
    k_high = lo
    denom = np.maximum(pop, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    empty = n == 0
    return rate, np.where(empty, 0.0, k_low / denom), np.where(empty, 1.0, np.maximum(k_high, k_low) / denom)


def stage_size(rate: np.ndarray, width: np.ndarray | float, population: np.ndarray,
               stages: list[tuple[np.ndarray, np.ndarray]], weight: np.ndarray, look: int = 2,
               alpha: float = ALPHA, exact: bool = True) -> np.ndarray:
    """Draws of the next stage (look ``look``) so that, were it to show the planning ``rate``, the look's
    interval would be at most ``width`` wide: the normal approximation of the combination's information
    (w-weighted square roots of the stages' informations), then, with ``exact``, a bisection on the exact
    limits themselves (the approximation misses near rates of 0 and 1). At most the prompts left."""
    pop = np.atleast_1d(np.asarray(population, np.int64))
    n_before = sum(np.asarray(x[0], np.int64) for x in stages) if stages else np.zeros_like(pop)
    left = pop - n_before
    if not np.isfinite(boundary(look, alpha)):  # past the schedule only the whole cell narrows the interval
        return left.astype(np.int64)
    p = np.broadcast_to(np.asarray(rate, np.float64), pop.shape)
    w = np.broadcast_to(np.asarray(width, np.float64), pop.shape)

    def limits_with(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new = (m, np.clip(np.round(p * m), 0, m).astype(np.int64))
        _, lo, hi = combined_limits([*stages, new], pop, look, weight, alpha)
        return lo, hi

    coef = coefficients(look, np.asarray(weight, np.float64))
    pq = np.maximum(p * (1 - p), 1.0 / np.maximum(pop, 1))
    need = (2 * boundary(look, alpha) / np.maximum(w, 1e-4)) ** 2 * pq
    info_done = np.zeros(pop.shape)
    nb = np.zeros(pop.shape)
    for (n_j, _), cj in zip(stages, coef[:-1], strict=True):
        info_done = info_done + cj * np.sqrt(_stage_info(n_j, pop - nb, pop))
        nb = nb + n_j
    root = np.maximum(np.sqrt(need) - info_done, 0) / np.maximum(coef[-1], 1e-9)
    j = root ** 2 * (np.maximum(left, 1) / np.maximum(pop, 1)) ** 2
    m = np.clip(np.ceil(j / (1 + j / np.maximum(left, 1))), 1, np.maximum(left, 1))
    if exact:  # refine on the exact limits, in a bracket around the approximation (only cost depends on it)
        lo = np.minimum(np.floor(0.7 * m).astype(np.int64), left)
        hi = np.minimum(np.ceil(2.5 * m + 40).astype(np.int64), left)
        for _ in range(int(np.ceil(np.log2(max(int(np.max(hi - lo, initial=1)), 2))))):
            mid = (lo + hi) // 2
            l_, h_ = limits_with(np.maximum(mid, 1))
            ok = (h_ - l_) <= w
            hi, lo = np.where(ok, mid, hi), np.where(ok, lo, np.minimum(mid + 1, hi))
        m = hi
    m = np.ceil(PLAN_MARGIN * m)
    return np.clip(np.where(w <= 0, left, np.maximum(m, 10)), 0, left).astype(np.int64)


def _stage_info(m: np.ndarray, pool: np.ndarray, population: np.ndarray) -> np.ndarray:
    """The information about K / N of m draws from the pool of prompts left, in units of single draws
    from the whole population: (N / M)² m / (1 - m / M)."""
    m, pool = np.asarray(m, np.float64), np.maximum(np.asarray(pool, np.float64), 1)
    return (population / pool) ** 2 * m / np.maximum(1 - m / pool, 1e-9)


def planning_rate(safe: np.ndarray, n: np.ndarray, level: float | None = None) -> np.ndarray:
    """The rate in the cell's Clopper–Pearson interval (at ``level``) closest to 1/2: the pessimistic
    variance to plan with, so a lucky pilot does not under-size the next stage."""
    s, n = np.asarray(safe, dtype=np.float64), np.asarray(n, dtype=np.float64)
    a = (1 - (PLAN_LEVEL if level is None else level)) / 2
    with np.errstate(invalid="ignore"):
        low = np.where(s > 0, beta.ppf(a, s, n - s + 1), 0.0)
        high = np.where(s < n, beta.ppf(1 - a, s + 1, n - s), 1.0)
    return np.where(n > 0, np.clip(0.5, low, high), 0.5)
