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


def test_rates_and_deviations_are_covered_at_stopping():
    rng = np.random.default_rng(11)
    rates, size, cover, dev_cover = np.array([0.05, 0.2, 0.35, 0.5]), 300, [], []
    design = Design(cell_stratum=np.arange(4), cell_block=np.zeros(4, np.int64), population=np.full(4, size),
                    units=np.full(4, size), calls_per_unit=np.ones(4, np.int64))
    for _ in range(120):
        labels = [(rng.random(size) < p).astype(np.int64) for p in rates]
        truth = np.array([x.mean() for x in labels])
        res = run_plan(design, TableOracle(labels), target=0.12, budget=None)
        cover.append((res.low - 1e-12 <= truth) & (truth <= res.high + 1e-12))
        dev = truth - truth.mean()
        dev_cover.append((res.dev_low - 1e-12 <= dev) & (dev <= res.dev_high + 1e-12))
    assert np.mean(cover) >= 0.94 and np.mean(dev_cover) >= 0.94
