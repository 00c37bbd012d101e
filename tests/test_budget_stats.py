"""Intervals of a budgeted audit: the staged exact intervals, the anytime-valid sequences, stage sizes."""

import numpy as np
import pytest
from scipy.stats import hypergeom

from mijabench.analysis import stages
from mijabench.analysis.sequential import bernoulli_limits, wor_limits
from mijabench.analysis.stages import exact_stage_size, hypergeom_limits, look_alpha, stage_limits


def test_look_alpha_sums_to_at_most_alpha():
    total = sum(look_alpha(r) for r in range(1, 60))
    assert total <= 0.05 + 1e-12
    assert look_alpha(2) > look_alpha(1) and look_alpha(3) > look_alpha(4)


def test_hypergeom_limits_match_a_direct_scan():
    pool, m, a = 60, 20, 0.05
    for s in (0, 3, 10, 20):
        lo, hi = hypergeom_limits([s], [m], [pool], a)
        rs = np.arange(pool + 1)
        ok_lo = (s == 0) | (hypergeom.sf(s - 1, pool, rs, m) > a / 2)
        ok_hi = (s == m) | (hypergeom.cdf(s, pool, rs, m) > a / 2)
        assert lo[0] == rs[ok_lo].min() and hi[0] == rs[ok_hi].max()


def test_stage_limits_exact_when_the_cell_is_exhausted_and_known_counts_add():
    rate, low, high = stage_limits([7, 0], [40, 0], [33, 0], [60, 0], [100, 100], 2)
    assert rate[0] == pytest.approx(0.40) and low[0] == high[0] == pytest.approx(0.40)
    assert (low[1], high[1]) == (0.0, 1.0)  # nothing drawn: the whole range


def test_staged_interval_covers_with_a_data_dependent_stage_size():
    # the last stage's size depends on the pilot, and only the last stage is used: coverage holds anyway
    rng = np.random.default_rng(3)
    sims, pop, k_true = 3000, 400, 120
    pop_labels = np.r_[np.ones(k_true), np.zeros(pop - k_true)]
    perms = np.argsort(rng.random((sims, pop)), axis=1)
    drawn = pop_labels[perms]
    pilot = 30
    s1 = drawn[:, :pilot].sum(axis=1)
    m = np.where(s1 > 9, 150, 60)  # a plan that reacts to the pilot
    s2 = np.array([drawn[i, pilot:pilot + m[i]].sum() for i in range(sims)])
    _, low, high = stage_limits(s1, np.full(sims, pilot), s2, m, np.full(sims, pop), 2)
    cover = np.mean((low <= k_true / pop) & (k_true / pop <= high))
    assert cover >= 1 - look_alpha(2) - 0.01


def test_exact_stage_size_meets_the_width_at_the_planning_rate():
    pop, known = np.array([1370, 1370, 1370]), np.array([55, 55, 55])
    rates = np.array([0.02, 0.3, 0.5])
    m = exact_stage_size(rates, 0.048, pop, known)
    _, low, high = stage_limits(np.round(rates * known), known, np.round(rates * m), m, pop, 2)
    assert np.all(high - low <= 0.048 * stages.PLAN_MARGIN + 1e-9)
    assert m[0] < m[1] < m[2] < pop[2] - known[2]


def test_anytime_sequences_are_exact_at_the_end_and_cover():
    low, high = wor_limits([0, 685], [0, 1370], [1370, 1370])
    assert (low[0], high[0]) == (0.0, 1.0) and low[1] == high[1] == 0.5
    rng = np.random.default_rng(0)
    p, n = 0.3, np.array([20, 100, 400])
    k = rng.binomial(n, p, size=(2000, 3))
    lo, hi = bernoulli_limits(k.ravel(), np.tile(n, 2000))
    assert np.mean((lo <= p) & (p <= hi)) >= 0.95
