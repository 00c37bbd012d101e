"""Intervals of a budgeted audit: the combination boundaries, the staged intervals' coverage when stage
sizes follow the data, stage sizes, and the anytime-valid sequences."""

import numpy as np
import pytest

from mijabench.analysis import stages
from mijabench.analysis.sequential import bernoulli_limits, wor_limits
from mijabench.analysis.stages import boundary, coefficients, combined_limits, stage_size


def test_boundaries_spend_the_alpha_of_each_look_on_the_gaussian_sequence():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((400_000, 4))
    a, b = np.sqrt(1 - stages.TOPUP_WEIGHT), np.sqrt(stages.TOPUP_WEIGHT)
    c = [z[:, 0]]
    for r in range(1, 4):
        c.append(a * c[-1] + b * z[:, r])
    crossed = np.zeros(len(z), bool)
    for look, (stat, share) in enumerate(zip(c, stages.SPEND, strict=True), start=2):
        first = (stat > boundary(look)) & ~crossed
        assert first.mean() == pytest.approx(share * 0.025, abs=4 * np.sqrt(share * 0.025 / len(z)) + 2e-5)
        crossed |= stat > boundary(look)
    total = stages.PILOT_SHARE + sum(stages.SPEND)
    assert total <= 1 + 1e-12 and boundary(3) < boundary(2) * 1.15  # a top-up's boundary stays close


def test_exhausted_cell_is_exact_and_empty_cell_is_the_whole_range():
    w = np.array([0.2, 0.2])
    rate, low, high = combined_limits([(np.array([40, 0]), np.array([7, 0])),
                                       (np.array([60, 0]), np.array([33, 0]))], np.array([100, 100]), 2, w)
    assert rate[0] == pytest.approx(0.40) and low[0] == high[0] == pytest.approx(0.40)
    assert (low[1], high[1]) == (0.0, 1.0)


def _two_stage_coverage(pop, k_true, pilot, plan, sims, rng, weight=0.3):
    """Coverage of the look-2 interval when the second stage's size is ``plan(pilot safe count)``."""
    labels = np.r_[np.ones(k_true), np.zeros(pop - k_true)]
    drawn = labels[np.argsort(rng.random((sims, pop)), axis=1)]
    s1 = drawn[:, :pilot].sum(axis=1).astype(np.int64)
    m = np.minimum(plan(s1), pop - pilot)
    cum = np.cumsum(drawn, axis=1)
    s2 = (cum[np.arange(sims), pilot + m - 1] - cum[:, pilot - 1]).astype(np.int64)
    _, low, high = combined_limits([(np.full(sims, pilot), s1), (m, s2)], np.full(sims, pop), 2,
                                   np.full(sims, weight))
    truth = k_true / pop
    return np.mean((low - 1e-12 <= truth) & (truth <= high + 1e-12))


@pytest.mark.parametrize("pop,k_true", [(60, 1), (60, 59), (200, 100), (200, 6), (400, 396)])
def test_pilot_counts_and_coverage_holds_with_a_stage_size_that_reacts_to_the_pilot(pop, k_true):
    # an adversarial plan: a pilot that looks extreme gets a short second stage, one that looks central a
    # long one (the opposite of a sensible plan, so conditioning on it would hurt most)
    rng = np.random.default_rng(pop + k_true)
    pilot = 20

    def plan(s1):
        return np.where(np.abs(s1 / pilot - 0.5) > 0.3, 10, pop // 3)

    cover = _two_stage_coverage(pop, k_true, pilot, plan, 1500, rng)
    assert cover >= 1 - stages.SPEND[0] * 0.05 - 0.012


def test_the_pilot_narrows_the_interval():
    # the same 300 draws of 1,000: as one stage, and as a pilot of 100 plus 200 with the pilot weighted
    pop = np.array([1000])
    one = combined_limits([(np.array([0]), np.array([0])), (np.array([300]), np.array([90]))], pop, 2,
                          np.array([0.01]))
    two = combined_limits([(np.array([100]), np.array([30])), (np.array([200]), np.array([60]))], pop, 2,
                          np.array([1 / 3]))
    last_only = combined_limits([(np.array([100]), np.array([30])), (np.array([200]), np.array([60]))], pop,
                                2, np.array([0.01]))
    width = [float(x[2][0] - x[1][0]) for x in (one, two, last_only)]
    assert width[1] < width[2] and width[1] <= width[0] * 1.03


def test_stage_size_meets_the_width_at_the_planning_rate():
    pop = np.array([1370, 1370, 1370])
    pilot = (np.full(3, 274), np.round(np.array([0.02, 0.3, 0.5]) * 274).astype(np.int64))
    rates = np.array([0.02, 0.3, 0.5])
    w = stages.pilot_weight(pilot[0], pop, 0.048, rates)
    m = stage_size(rates, 0.048, pop, [pilot], w)
    _, low, high = combined_limits([pilot, (m, np.round(rates * m).astype(np.int64))], pop, 2, w)
    assert np.all(high - low <= 0.048 + 1e-9)
    assert m[0] < m[1] < m[2] < 1370 - 274


def test_coefficients_square_to_one():
    w = np.array([0.1, 0.4])
    for look in (2, 3, 5):
        assert np.allclose(sum(c ** 2 for c in coefficients(look, w)), 1.0)


def test_anytime_sequences_are_exact_at_the_end_and_cover():
    low, high = wor_limits([0, 685], [0, 1370], [1370, 1370])
    assert (low[0], high[0]) == (0.0, 1.0) and low[1] == high[1] == 0.5
    rng = np.random.default_rng(0)
    p, n = 0.3, np.array([20, 100, 400])
    k = rng.binomial(n, p, size=(2000, 3))
    lo, hi = bernoulli_limits(k.ravel(), np.tile(n, 2000))
    assert np.mean((lo <= p) & (p <= hi)) >= 0.95


def test_no_look_past_the_spending_schedule_spends_alpha():
    # The joint chance, on the Gaussian sequence C_2 ... C_6, that some look crosses the boundary it uses,
    # integrated on a grid of cells (exact cell masses and truncation, independent of ``boundaries``' own
    # grid): at most the alpha scheduled for looks 2-5 per tail. Look 6 (the planner's last, which a budget
    # can cut short of the whole cell) has no alpha left; reusing c_5 there spent 0.5% of alpha beyond it.
    from scipy.stats import norm

    from mijabench.run.budget import MAX_LOOKS
    x = np.linspace(-10, 10, 2001)
    dx = x[1] - x[0]
    a, b = np.sqrt(1 - stages.TOPUP_WEIGHT), np.sqrt(stages.TOPUP_WEIGHT)
    step = norm.cdf((x[:, None] + dx / 2 - a * x[None, :]) / b) - norm.cdf((x[:, None] - dx / 2 - a * x) / b)
    mass = norm.cdf(x + dx / 2) - norm.cdf(x - dx / 2)  # C_2's
    crossed = 0.0
    for look in range(2, MAX_LOOKS + 1):
        c = boundary(look)
        if look > 2:
            crossed += float(np.sum(mass * norm.sf((c - a * x) / b)))
            mass = step @ mass
        else:
            crossed += float(norm.sf(c))
        mass = mass * np.clip((c - (x - dx / 2)) / dx, 0, 1)  # paths still below the boundary
    assert crossed <= sum(stages.SPEND) * stages.ALPHA / 2
    assert crossed >= 0.99 * sum(stages.SPEND) * stages.ALPHA / 2  # the schedule is spent, not wasted
    assert boundary(MAX_LOOKS) == np.inf and boundary(MAX_LOOKS + 1) == np.inf
    # past the schedule, the interval is every K the draws allow: 12 safe and 6 harmful of 100 prompts
    six = [(np.array([3]), np.array([2]))] * MAX_LOOKS
    _, low, high = combined_limits(six, np.array([100]), MAX_LOOKS, np.array([0.2]))
    assert (low[0], high[0]) == (0.12, 0.94)
