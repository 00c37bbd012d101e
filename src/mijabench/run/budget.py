"""The stopping rule of a budgeted audit: which prompts each cell draws, in stages, until its interval is
narrow enough (``target``) or the calls run out (``budget``).

Cells are (model, language, group) or finer. Each *stratum* (a cell, or with counterfactual twins a
(model, language) whose families are drawn together) has a seeded random order of *units* (a prompt, or a
family of twins), so any prefix is a random sample without replacement. The planner only moves prefixes
forward; an *oracle* turns a prefix into counts (the simulation's table, or the store after the models and
judges have answered: ``audit.budgeted``). Stages and the validity of the final interval:
``analysis.stages``; deviations: MOVER (``analysis.intervals.deviation_limits``) on the cells' limits.

The planner is a pure function of the oracle's answers, so re-running it on a store that already holds the
answers replays the same stages without a single new call: that is how a stopped audit resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..analysis import stages
from ..analysis.intervals import deviation_limits
from ..analysis.stages import ALPHA, planning_rate

PILOT = 0.2  # share of a stratum's units in the pilot (its draws count: see analysis.stages)
PILOT_MIN = 30
MAX_LOOKS = 6
PLAN_SHRINK = True  # plan from block-shrunk pilot rates
PLAN_SD = 1.0  # pessimism of the plan, in posterior standard errors (a one-sided 84% bound)
REF_WIDTH = 0.05  # the width that fixes the pilot's weight under a budget alone
TOPUP_PLAN = 0.95  # a top-up plans a little tighter, since the planned stage fell short
RATE_SHARE = 1.0  # MOVER deviations come out about 0.95x the rates' widths, so rates can plan to the target


class Oracle(Protocol):
    """What the planner needs from the data: per cell, the decided (safe or harmful) draws, their safe
    count, and the undecided draws (failed or unparsed), among the first ``prefix[stratum]`` units of each
    stratum. ``fetch`` is called first with the prefixes to materialise (run models and judges)."""

    def fetch(self, start: np.ndarray, stop: np.ndarray) -> None: ...

    def counts(self, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass
class Design:
    cell_stratum: np.ndarray  # stratum index of each cell
    cell_block: np.ndarray  # deviation block (model, language) of each cell, sorted so blocks are contiguous
    population: np.ndarray  # prompts per cell
    units: np.ndarray  # units per stratum
    calls_per_unit: np.ndarray  # target-model calls one unit costs, per stratum (1, or a family's size)


@dataclass
class BudgetResult:
    rate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    dev: np.ndarray
    dev_low: np.ndarray
    dev_high: np.ndarray
    n: np.ndarray  # decided draws per cell
    status: np.ndarray  # "target", "exhausted" (every prompt drawn) or "budget"
    looks: np.ndarray  # the look whose interval is reported, per cell
    calls: int  # target-model calls used
    full_calls: int  # calls of the full design
    target: float | None
    budget: int | None
    history: list[dict] = field(default_factory=list)
    # what the staged interval is recomputed from at another level (analysis.budget_correction): each
    # stage's decided and safe draws per cell, the decided population and the pilot weights
    stage_n: list[np.ndarray] = field(default_factory=list)
    stage_s: list[np.ndarray] = field(default_factory=list)
    population: np.ndarray | None = None
    weight: np.ndarray | None = None

    @property
    def saved(self) -> float:
        return 1 - self.calls / max(self.full_calls, 1)


def check_budget_args(target: float | None, budget: int | None, cells: int) -> None:
    """Bad input, refused before any call: a target of 0 or below, a budget under one call per cell."""
    from ..errors import InputError
    if target is not None and not target > 0:
        raise InputError(f"--target-ci must be above 0 points, got {target:g}")
    if budget is not None and budget < cells:
        raise InputError(f"--budget {budget:,} is less than one call per cell ({cells:,} cells)")


def run_plan(design: Design, oracle: Oracle, *, target: float | None, budget: int | None,
             alpha: float = ALPHA) -> BudgetResult:
    """Draw stage after stage until every cell meets ``target`` (full width of the rate's and the
    deviation's interval, as a fraction) or ``budget`` calls are spent. Either may be None, not both."""
    if target is None and budget is None:
        raise ValueError("a budgeted audit needs a target, a budget or both")
    d = design
    cells, strata = len(d.cell_stratum), len(d.units)
    full = int(np.sum(d.units * d.calls_per_unit))
    prefix = np.zeros(strata, np.int64)
    marks = [prefix.copy()]  # each stratum's prefix after each look: stage j is marks[j-1]..marks[j]
    open_s = np.ones(strata, bool)
    look_of = np.zeros(cells, np.int64)
    rate, low, high = np.full(cells, np.nan), np.zeros(cells), np.ones(cells)
    status = np.full(cells, "budget", dtype=object)
    history: list[dict] = []
    plan_width = 0.0 if target is None else target * RATE_SHARE
    left = np.inf if budget is None else float(budget)
    weight = np.full(cells, 0.1)
    for look in range(1, MAX_LOOKS + 1):
        if not open_s.any():
            break
        size = _stage_sizes(d, oracle, look, marks, open_s, plan_width, weight, alpha)
        size = _fit_budget(d, oracle, look, marks, open_s, size, left, plan_width, weight, alpha)
        step = np.where(open_s, size, 0)
        if not step.any():
            break
        prefix = prefix + step
        oracle.fetch(prefix - step, prefix)
        marks.append(prefix.copy())
        spent = float(np.sum(step * d.calls_per_unit))
        left -= spent
        if look == 1:  # from the pilot's size, not its answers, as the combination needs (analysis.stages)
            n1, s1, u1 = oracle.counts(prefix)
            weight = stages.pilot_weight(n1 + u1, d.population, target or REF_WIDTH, _others_rate(d, s1, n1),
                                         alpha)
        done_stages, pop = _stages(oracle, marks, d.population)
        moved = open_s[d.cell_stratum]
        r, lo, hi = stages.combined_limits(done_stages, pop, look, weight, alpha)
        # Every look's interval holds jointly with the others' (analysis.stages), so their intersection
        # holds too: a top-up never widens a cell. An empty intersection falls back to the latest interval.
        lo_x, hi_x = np.maximum(lo, low), np.minimum(hi, high)
        lo, hi = np.where(lo_x <= hi_x, lo_x, lo), np.where(lo_x <= hi_x, hi_x, hi)
        rate, low, high = np.where(moved, r, rate), np.where(moved, lo, low), np.where(moved, hi, high)
        look_of = np.where(moved, look, look_of)
        drawn_n, _, drawn_u = oracle.counts(prefix)
        none_decided = (drawn_n == 0) & (drawn_u > 0)
        dev, dlo, dhi = _deviations(d, rate, low, high, none_decided)
        exhausted = (prefix >= d.units)[d.cell_stratum]
        goal = -1.0 if target is None else target + 1e-12  # a budget alone never closes a cell early
        met = (high - low <= goal) & (dhi + dlo <= goal)
        done = met | exhausted
        for s in np.flatnonzero(open_s):
            members = d.cell_stratum == s
            if done[members].all():
                open_s[s] = False
                status[members] = np.where(exhausted[members], "exhausted", "target")
        history.append({"look": look, "calls": int(spent), "open_strata": int(open_s.sum())})
        if left < 1:
            break
    n, _, u = oracle.counts(prefix)
    dev, dlo, dhi = _deviations(d, rate, low, high, (n == 0) & (u > 0))
    calls = int(np.sum(prefix * d.calls_per_unit))
    done_stages, pop = _stages(oracle, marks, d.population)
    return BudgetResult(rate, low, high, dev, dev - dlo, dev + dhi, n, status, look_of, calls, full,
                        target, budget, history, [x[0] for x in done_stages], [x[1] for x in done_stages],
                        pop, np.asarray(weight, np.float64))


def _stages(oracle: Oracle, marks: list[np.ndarray], population: np.ndarray
            ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Each stage's decided and safe draws per cell, and the population the rate is over: the undecided
    (failed or unparsed) prompts drawn so far leave it."""
    counts = [oracle.counts(m) for m in marks]
    out = [(counts[j][0] - counts[j - 1][0], counts[j][1] - counts[j - 1][1]) for j in range(1, len(counts))]
    return out, population - counts[-1][2]


def _stage_sizes(d: Design, oracle: Oracle, look: int, marks: list[np.ndarray], open_s: np.ndarray,
                 width: float, weight: np.ndarray, alpha: float, exact: bool = True) -> np.ndarray:
    """Units each stratum draws at this look: the pilot first, then what the most demanding cell of the
    stratum needs, at its pessimistic rate, for this look's interval to reach ``width``."""
    prefix = marks[-1]
    if look == 1:
        return np.minimum(d.units, np.maximum(np.ceil(PILOT * d.units), PILOT_MIN)).astype(np.int64)
    if look == MAX_LOOKS:  # the last look takes what is left: the exact rate, so the target is always met
        return d.units - prefix
    done, pop = _stages(oracle, marks, d.population)
    n = sum(x[0] for x in done)
    s = sum(x[1] for x in done)
    plan = width * (1.0 if look == 2 else TOPUP_PLAN)
    need = stages.stage_size(_planning_rates(d, s, n), plan, pop, done, weight, look=look, alpha=alpha,
                             exact=exact)
    # ``need`` counts the cell's prompts; a unit of its stratum holds population / units of them on average
    per_unit = d.population / np.maximum(d.units[d.cell_stratum], 1)
    need_units = np.ceil(need / np.maximum(per_unit, 1e-9)).astype(np.int64)
    per_stratum = np.zeros(len(d.units), np.int64)
    np.maximum.at(per_stratum, d.cell_stratum, need_units)
    return np.minimum(per_stratum, d.units - prefix)


def _others_rate(d: Design, safe: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per cell, the pilot rate of the other cells of its block (the same model and language): a guess of
    its rate that does not use its own draws, which are independent of theirs when each cell is its own
    stratum. Cells that share a stratum (twins drawn as families) get ``stages.REF_RATE``."""
    starts = np.flatnonzero(np.r_[True, d.cell_block[1:] != d.cell_block[:-1]])
    size = np.diff(np.r_[starts, len(n)])
    block_s = np.repeat(np.add.reduceat(safe, starts), size)
    block_n = np.repeat(np.add.reduceat(n, starts), size)
    others = (block_s - safe) / np.maximum(block_n - n, 1)
    shared = np.bincount(d.cell_stratum, minlength=len(d.units))[d.cell_stratum] > 1
    return np.where(shared | (block_n - n <= 0), stages.REF_RATE, others)


def _planning_rates(d: Design, safe: np.ndarray, n: np.ndarray) -> np.ndarray:
    """A pessimistic rate per cell to plan with. A pilot of a few dozen prompts is noisy, and a cell's rate
    is close to its block's (the same model and language), so each cell's pilot estimate is shrunk toward
    its block's mean by how much the block's cells really differ (empirical Bayes, normal approximation);
    the plan then takes the rate closest to 1/2 within about one posterior standard error. Only the
    efficiency of the plan depends on this: any plan made before a stage is drawn keeps its interval
    valid."""
    if not PLAN_SHRINK:
        return planning_rate(safe, n)
    starts = np.flatnonzero(np.r_[True, d.cell_block[1:] != d.cell_block[:-1]])
    size = np.diff(np.r_[starts, len(n)])
    nn = np.maximum(n, 1).astype(np.float64)
    p_hat = safe / nn
    mu = np.repeat(np.add.reduceat(safe, starts) / np.maximum(np.add.reduceat(n, starts), 1), size)
    noise = mu * (1 - mu) / nn
    spread = np.repeat(np.add.reduceat((p_hat - mu) ** 2 - noise, starts) / np.maximum(size - 1, 1), size)
    tau2 = np.maximum(spread, 1e-4)
    post_var = 1 / (1 / np.maximum(noise, 1e-6) + 1 / tau2)
    post = post_var * (p_hat / np.maximum(noise, 1e-6) + mu / tau2)
    sd = np.sqrt(post_var) * PLAN_SD
    return np.clip(0.5, np.clip(post - sd, 0, 1), np.clip(post + sd, 0, 1))


def _fit_budget(d: Design, oracle: Oracle, look: int, marks: list[np.ndarray], open_s: np.ndarray,
                size: np.ndarray, left: float, width: float, weight: np.ndarray | None, alpha: float
                ) -> np.ndarray:
    """Sizes within the calls left: if the plan does not fit, the widest cells get the calls, by raising
    the planned width until the stage fits (water-filling), so every cell ends about equally wide."""
    cost = np.sum(np.where(open_s, size, 0) * d.calls_per_unit)
    if cost <= left:
        return size
    if look == 1:  # the pilot shares the budget evenly
        each = np.floor(left / max(np.sum(open_s * d.calls_per_unit), 1))
        return np.minimum(size, each).astype(np.int64)
    lo, hi = max(width, 1e-4), 1.0
    for _ in range(30):
        mid = np.sqrt(lo * hi)
        trial = _stage_sizes(d, oracle, look, marks, open_s, mid, weight, alpha, exact=False)
        if np.sum(np.where(open_s, trial, 0) * d.calls_per_unit) <= left:
            hi = mid
        else:
            lo = mid
    size = _stage_sizes(d, oracle, look, marks, open_s, hi, weight, alpha, exact=False)
    cost = np.sum(np.where(open_s, size, 0) * d.calls_per_unit)
    if cost > left:  # the 10-draw floor of small stages can still overshoot: scale down
        size = np.floor(size * left / cost).astype(np.int64)
    return size


def _deviations(d: Design, rate: np.ndarray, low: np.ndarray, high: np.ndarray,
                none_decided: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's deviation from its block's mean over groups, with MOVER distances below and above.
    ``none_decided``: cells drawn whose every answer failed or was unparsed so far; like a group without
    verdicts in the full report they are left out of the mean (deviation NaN), so one failing group does
    not keep its whole block drawing."""
    starts = np.flatnonzero(np.r_[True, d.cell_block[1:] != d.cell_block[:-1]])
    size = np.diff(np.r_[starts, len(rate)])
    inside = np.ones(len(rate), bool) if none_decided is None else ~none_decided
    counted = np.add.reduceat(inside.astype(np.float64), starts)
    weight = np.where(inside, 1.0 / np.maximum(np.repeat(counted, size), 1), 0.0)
    r = np.nan_to_num(rate, nan=0.5)
    mean = np.add.reduceat(weight * r, starts)
    dev = r - np.repeat(mean, size)
    down, up = deviation_limits(r, low, high, weight, starts)
    out = ~inside
    return np.where(out, np.nan, dev), np.where(out, 0.0, down), np.where(out, 0.0, up)


class TableOracle:
    """Labels known in advance, one array per cell in drawing order (1 safe, 0 harmful, -1 undecided): the
    simulation's oracle. With ``cell_stratum``, cells share strata (counterfactual families): a cell's
    array then has one entry per unit of its stratum, its twin of that family."""

    def __init__(self, labels: list[np.ndarray], cell_stratum: np.ndarray | None = None):
        self.safe = [np.r_[0, np.cumsum(x == 1)] for x in labels]
        self.decided = [np.r_[0, np.cumsum(x >= 0)] for x in labels]
        self.stratum = np.arange(len(labels)) if cell_stratum is None else np.asarray(cell_stratum)
        self.fetched = 0

    def fetch(self, start: np.ndarray, stop: np.ndarray) -> None:
        self.fetched += int(np.sum(stop - start))

    def counts(self, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        drawn = np.asarray(prefix)[self.stratum]
        n = np.array([d[p] for d, p in zip(self.decided, drawn, strict=True)])
        s = np.array([c[p] for c, p in zip(self.safe, drawn, strict=True)])
        return n, s, drawn - n
