"""The stopping rule: targets met, budgets kept, widest cells fed first, replay from stored answers."""

import numpy as np
import pytest

from mijabench.errors import InputError
from mijabench.run.budget import Design, TableOracle, check_budget_args, run_plan


def _table(seed=0, cells=6, size=600):
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.03, 0.5, cells)
    labels = [(rng.random(size) < p).astype(np.int64) for p in rates]
    design = Design(cell_stratum=np.arange(cells), cell_block=np.repeat([0, 1], cells // 2),
                    population=np.full(cells, size), units=np.full(cells, size),
                    calls_per_unit=np.ones(cells, np.int64))
    return design, labels


def test_target_met_on_every_cell_with_fewer_calls_than_the_full_design():
    design, labels = _table()
    oracle = TableOracle(labels)
    res = run_plan(design, oracle, target=0.10, budget=None)
    assert np.all(res.high - res.low <= 0.10 + 1e-9)
    assert np.all(res.dev_high - res.dev_low <= 0.10 + 1e-9)
    assert res.calls == oracle.fetched < res.full_calls
    assert set(res.status) <= {"target", "exhausted"}
    # the low-rate cell is cheaper than the cell near 50%
    assert res.n[0] < res.n[-1]


def test_budget_is_kept_and_spent_on_the_widest_cells():
    design, labels = _table()
    res = run_plan(design, TableOracle(labels), target=None, budget=900)
    assert res.calls <= 900
    assert np.all(res.status == "budget")
    assert res.n[-1] > res.n[0]  # the 50% cell is wider at equal n, so it gets more of the budget


def test_budget_below_the_target_marks_cells_stopped_by_budget():
    design, labels = _table()
    res = run_plan(design, TableOracle(labels), target=0.02, budget=1500)
    assert res.calls <= 1500
    assert "budget" in set(res.status)


def test_same_answers_give_the_same_plan():
    design, labels = _table(seed=4)
    a = run_plan(design, TableOracle(labels), target=0.08, budget=None)
    b = run_plan(design, TableOracle(labels), target=0.08, budget=None)
    assert np.array_equal(a.n, b.n) and np.array_equal(a.low, b.low) and a.calls == b.calls


@pytest.mark.parametrize("target,budget", [(0.0, None), (-1.0, None), (None, 5)])
def test_bad_targets_and_budgets_are_refused(target, budget):
    with pytest.raises(InputError):
        check_budget_args(target, budget, cells=6)
    check_budget_args(0.05, 6, cells=6)


def _blocks(rng, rates, sizes, sims, undecided=0.0):
    """``sims`` independent blocks (one simulation each) of cells with these rates and sizes, in one
    design, so the planner runs once; labels 1 safe, 0 harmful, -1 undecided (failed or unparsed)."""
    cells = len(rates)
    labels = []
    for _ in range(sims):
        for p, n in zip(rates, sizes, strict=True):
            x = (rng.random(n) < p).astype(np.int64)
            labels.append(np.where(rng.random(n) < undecided, -1, x))
    total = cells * sims
    design = Design(cell_stratum=np.arange(total), cell_block=np.repeat(np.arange(sims), cells),
                    population=np.tile(sizes, sims), units=np.tile(sizes, sims),
                    calls_per_unit=np.ones(total, np.int64))
    return design, labels


def _coverage(res, labels, design):
    # the truth: what the full audit reports, the safe share of the decided prompts of each cell
    truth = np.array([np.sum(x == 1) / max(np.sum(x >= 0), 1) for x in labels])
    cells = np.bincount(design.cell_block)
    mean = np.repeat(np.bincount(design.cell_block, weights=truth) / cells, cells)
    rate_ok = (res.low - 1e-12 <= truth) & (truth <= res.high + 1e-12)
    dev_ok = (res.dev_low - 1e-12 <= truth - mean) & (truth - mean <= res.dev_high + 1e-12)
    return rate_ok.mean(), dev_ok.mean()


def test_rates_and_deviations_are_covered_at_stopping_in_small_cells_near_0_and_1():
    rng = np.random.default_rng(11)
    rates, sizes = np.array([0.01, 0.2, 0.5, 0.98]), np.array([40, 150, 300, 300])
    design, labels = _blocks(rng, rates, sizes, sims=100)
    res = run_plan(design, TableOracle(labels), target=0.12, budget=None)
    assert res.calls < 0.8 * res.full_calls
    rate_cover, dev_cover = _coverage(res, labels, design)
    assert rate_cover >= 0.95 and dev_cover >= 0.95


def test_unparsed_verdicts_are_never_counted_safe_and_coverage_holds():
    rng = np.random.default_rng(5)
    rates, sizes = np.array([0.05, 0.3, 0.6]), np.array([200, 200, 200])
    design, labels = _blocks(rng, rates, sizes, sims=80, undecided=0.08)
    res = run_plan(design, TableOracle(labels), target=0.15, budget=None)
    rate_cover, dev_cover = _coverage(res, labels, design)
    assert rate_cover >= 0.95 and dev_cover >= 0.95
    # a cell whose answers are all undecided or harmful has a rate of 0, over its decided draws only
    odd = [np.where(np.arange(100) % 2 == 0, -1, 0)]
    one = Design(cell_stratum=np.zeros(1, np.int64), cell_block=np.zeros(1, np.int64),
                 population=np.array([100]), units=np.array([100]), calls_per_unit=np.ones(1, np.int64))
    res = run_plan(one, TableOracle(odd), target=0.3, budget=None)
    drawn = res.calls
    assert res.rate[0] == 0 and res.n[0] == drawn - (drawn + 1) // 2 and res.high[0] < 0.3


def test_counterfactual_families_are_drawn_together_and_stay_covered():
    # each simulation is a (model, language) stratum of 250 families, one twin per group; a family's twins
    # tend to get the same answer (the attack, not the group, decides most refusals)
    rng = np.random.default_rng(2)
    groups, families, sims = np.array([0.1, 0.2, 0.35]), 250, 60
    labels = []
    for _ in range(sims):
        shared = rng.random(families)
        for g, p in enumerate(groups):
            own = rng.random(families)
            u = np.where(rng.random(families) < 0.7, shared, own)  # correlated twins
            labels.append((u < p).astype(np.int64))
            del g
    total = len(groups) * sims
    stratum = np.repeat(np.arange(sims), len(groups))
    design = Design(cell_stratum=stratum, cell_block=stratum, population=np.full(total, families),
                    units=np.full(sims, families), calls_per_unit=np.full(sims, len(groups)))
    oracle = TableOracle(labels, cell_stratum=stratum)
    res = run_plan(design, oracle, target=0.16, budget=None)
    n = res.n.reshape(sims, len(groups))
    assert np.all(n == n[:, :1])  # every group of a stratum has the same families drawn: pairs stay paired
    assert res.calls == oracle.fetched * len(groups) < res.full_calls
    rate_cover, dev_cover = _coverage(res, labels, design)
    assert rate_cover >= 0.95 and dev_cover >= 0.95


def test_a_group_whose_answers_all_fail_does_not_keep_its_block_drawing():
    labels = [np.full(40, -1), np.zeros(300, np.int64), (np.arange(300) % 4 == 0).astype(np.int64)]
    sizes = np.array([len(x) for x in labels])
    design = Design(cell_stratum=np.arange(3), cell_block=np.zeros(3, np.int64), population=sizes,
                    units=sizes, calls_per_unit=np.ones(3, np.int64))
    res = run_plan(design, TableOracle(labels), target=0.15, budget=None)
    assert res.n[0] == 0 and np.isnan(res.dev[0])  # no verdict: no rate, out of the groups' mean
    assert list(res.status[1:]) == ["target", "target"] and res.calls < sizes.sum() - 200


def test_a_last_look_cut_short_by_the_budget_adds_only_what_its_draws_prove():
    # Most answers undecided, so stages fall short of their plan and two cells reach look 6, the look that
    # takes every prompt left; a budget 14 calls short of that cuts it. No alpha is left past look 5
    # (analysis.stages.boundary), so the look may narrow a cell only to the rates its draws allow for
    # certain: the cell ends with its look-5 interval (a run whose budget stops there) cut by those bounds.
    rng = np.random.default_rng(3)
    size = 400
    labels = [np.where(rng.random(size) < 0.8, -1, (rng.random(size) < 0.4).astype(np.int64))
              for _ in range(2)]
    design = Design(cell_stratum=np.arange(2), cell_block=np.zeros(2, np.int64),
                    population=np.full(2, size), units=np.full(2, size), calls_per_unit=np.ones(2, np.int64))
    full = run_plan(design, TableOracle(labels), target=0.2, budget=None)
    assert len(full.history) == 6 and full.status[1] == "exhausted"
    through_5 = sum(h["calls"] for h in full.history[:5])
    five = run_plan(design, TableOracle(labels), target=0.2, budget=through_5)
    cut = run_plan(design, TableOracle(labels), target=0.2, budget=full.calls - 14)
    assert list(cut.looks) == [5, 6] and 0 < cut.stage_n[5][1] and cut.calls < full.calls
    n, s = sum(cut.stage_n)[1], sum(cut.stage_s)[1]
    pop = cut.population[1]
    assert n < pop  # not the whole cell: the look's interval is not exact
    low, high = max(five.low[1], s / pop), min(five.high[1], (pop - (n - s)) / pop)
    assert (cut.low[1], cut.high[1]) == pytest.approx((low, high), abs=1e-12)
    assert (cut.low[0], cut.high[0]) == (five.low[0], five.high[0])  # the cell that stopped at look 5
