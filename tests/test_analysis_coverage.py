"""The 95% intervals hold in every regime: small and large cells, rates near 0 and 1, spreads of 0, prompts
shared by several models (docs/statistics.md has the tables these simulations print).

Rates are checked exactly (the binomial probability of every count whose interval covers the truth).
Everything else is simulated, vectorised over simulations: the interval functions directly where a table
would need millions of rows, and the analysis functions (``rates``, ``deviations``, ``compare_tables``) on
tables that stack the simulations as languages, so the code path a report uses is checked too.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mijabench.analysis import deviations, rates
from mijabench.analysis.compare import compare_tables
from mijabench.analysis.disparity import disparity
from mijabench.analysis.intervals import (
    all_equal_pvalue,
    clopper_pearson,
    deviation_limits,
    spread_limits,
    wilson,
)
from mijabench.analysis.table import Categorical, JudgedTable

SIZES = (10, 20, 50, 200, 2000)
RATES = (0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
GROUPS = 13


def exact_rate_coverage(n: int, p: float) -> float:
    x = np.arange(n + 1)
    low, high = clopper_pearson(x, np.full(n + 1, n))
    return float(stats.binom.pmf(x, n, p)[(low <= p) & (p <= high)].sum())


@pytest.mark.parametrize("n", SIZES)
def test_rate_interval_covers_every_rate_exactly(n):
    coverage = np.array([exact_rate_coverage(n, p) for p in RATES])
    # Clopper-Pearson never drops below its level (documented as conservative at small n)
    assert coverage.min() >= 0.95, dict(zip(RATES, coverage.round(4), strict=True))
    if n >= 2000:  # and it is not needlessly wide once cells are large
        assert coverage.max() <= 0.97


def table(model, language, group, safe, item=None, pair=None) -> JudgedTable:
    """A judged table from code arrays; languages and models are simulation indices."""
    def cat(codes, prefix):
        codes = np.asarray(codes, np.int32)
        return Categorical(codes, tuple(f"{prefix}{i}" for i in range(int(codes.max()) + 1)))
    cols = {"model": cat(model, "m"), "language": cat(language, "sim"), "group": cat(group, "g"),
            "label": Categorical(np.where(safe, 0, 1).astype(np.int32), ("safe", "harmful"))}
    if item is not None:
        cols["item_id"] = cat(item, "i")
    if pair is not None:
        cols["pair_id"] = Categorical(np.asarray(pair, np.int32), ("",) + tuple(f"p{i}" for i in
                                                                                 range(int(np.max(pair)))))
    return JudgedTable.from_columns(**cols)


def independent_table(true: np.ndarray, n: int, sims: int, seed: int) -> JudgedTable:
    """One model, ``sims`` languages, len(true) groups of n responses each."""
    rng = np.random.default_rng(seed)
    groups = len(true)
    cell = np.repeat(np.arange(sims * groups), n)
    safe = rng.random(len(cell)) < true[cell % groups]
    return table(np.zeros(len(cell)), cell // groups, cell % groups, safe)


def test_rates_use_the_exact_interval_and_never_collapse():
    t = table([0] * 8, [0] * 8, [0] * 4 + [1] * 4, [False] * 4 + [True] * 4)
    frame = rates(t, ["group"])
    low, high = clopper_pearson(frame["n_safe"], frame["n_judged"])
    assert np.array_equal(frame["ci_low"], low) and np.array_equal(frame["ci_high"], high)
    assert frame["ci_low"][0] == 0 and frame["ci_high"][0] > 0.5  # 0/4: [0, 60%], not a point
    assert frame["ci_low"][1] < 0.5 and frame["ci_high"][1] == 1
    dev = deviations(t)
    # 0/4 against 4/4: the deviation (-50) sits at the edge of what is possible, but the interval keeps a
    # width instead of collapsing to the point
    assert all(dev["ci_low"] <= dev["deviation"]) and all(dev["deviation"] <= dev["ci_high"])
    assert all(dev["ci_high"] - dev["ci_low"] > 0.2)


def deviation_coverage(true: np.ndarray, n: int, sims: int, rng) -> np.ndarray:
    """Per-group coverage of the MOVER deviation interval (groups mean) over ``sims`` simulations."""
    k = rng.binomial(n, true, size=(sims, len(true))).ravel().astype(float)
    nn = np.full(k.shape, float(n))
    starts = np.arange(sims) * len(true)
    rate = k / nn
    weight = np.full(k.shape, 1 / len(true))
    mean = np.add.reduceat(rate * weight, starts)
    dev = rate - np.repeat(mean, len(true))
    down, up = deviation_limits(rate, *wilson(k, nn), weight, starts)
    truth = np.tile(true - true.mean(), sims)
    return ((dev - down <= truth) & (truth <= dev + up)).reshape(sims, len(true)).mean(axis=0)


DEVIATION_SCENARIOS = {
    "all 2%": np.full(GROUPS, 0.02), "all 50%": np.full(GROUPS, 0.5), "all 95%": np.full(GROUPS, 0.95),
    "2% to 98%": np.linspace(0.02, 0.98, GROUPS), "1% to 20%": np.linspace(0.01, 0.2, GROUPS),
    "80% to 99%": np.linspace(0.8, 0.99, GROUPS),
}


@pytest.mark.parametrize("n", (50, 2000))
@pytest.mark.parametrize("scenario", DEVIATION_SCENARIOS)
def test_deviation_interval_covers_every_group(n, scenario):
    coverage = deviation_coverage(DEVIATION_SCENARIOS[scenario], n, 3000, np.random.default_rng(n))
    # every group, the worst one included, is covered in at least 93%; over-coverage is bounded
    assert coverage.min() >= 0.93 and coverage.mean() <= 0.99, coverage.round(3)


def test_deviations_of_the_analysis_cover_the_truth():
    true = np.array([0.02, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.98, 0.6, 0.4, 0.2, 0.8])
    sims = 300
    frame = deviations(independent_table(true, 50, sims, seed=5))
    group = np.array([int(g[1:]) for g in frame["group"]])
    truth = true[group] - true.mean()
    covered = (frame["ci_low"] <= truth) & (truth <= frame["ci_high"])
    assert len(frame) == sims * GROUPS and covered.mean() >= 0.93
    near_zero = np.abs(frame["deviation"]) < 0.01
    assert frame["significant"].sum() > 0 and not frame["significant"][near_zero].any()


def spread_rates(spread: float) -> np.ndarray:
    return np.linspace(0.5 - spread / 2, 0.5 + spread / 2, GROUPS)


@pytest.mark.parametrize("n", (50, 2000))
@pytest.mark.parametrize("spread", (0.0, 0.05, 0.2, 0.4))
def test_spread_interval_covers_the_true_spread(n, spread):
    sims = 2000
    true = spread_rates(spread)
    k = np.random.default_rng(7).binomial(n, true, size=(sims, GROUPS)).ravel()
    low, high = spread_limits(k, np.full(k.shape, n), np.arange(sims) * GROUPS)
    coverage = ((low <= spread + 1e-12) & (spread - 1e-12 <= high)).mean()
    assert coverage >= 0.90, coverage
    estimate = np.ptp(k.reshape(sims, GROUPS) / n, axis=1)
    assert np.all((low <= estimate) & (estimate <= high))  # never the estimate on the edge outside


@pytest.mark.parametrize("n", (50, 2000))
@pytest.mark.parametrize("p", (0.05, 0.5))
def test_all_equal_test_holds_its_level(n, p):
    sims, rng = 1000, np.random.default_rng(int(n * 10 + p * 100))
    k = rng.binomial(n, p, size=sims * GROUPS)
    pvalue = all_equal_pvalue(k, np.full(k.shape, n), np.arange(sims) * GROUPS, 199, rng)
    false_positive = (pvalue <= 0.05).mean()
    # at most 5%, up to the simulation's own noise (two standard errors of 1,000 draws)
    assert false_positive <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / sims), false_positive
    spread = rng.binomial(n, spread_rates(0.4), size=(200, GROUPS)).ravel()
    power = (all_equal_pvalue(spread, np.full(spread.shape, n), np.arange(200) * GROUPS, 199, rng)
             <= 0.05).mean()
    assert power > 0.9


def test_disparity_uses_the_simultaneous_interval_and_the_test():
    t = independent_table(spread_rates(0.0), 50, 200, seed=3)
    disp = disparity(deviations(t, resamples=199))
    assert (disp["spread_ci_low"] == 0).mean() >= 0.9  # a true spread of 0 is inside the interval
    assert (disp["p_all_equal"] <= 0.05).mean() <= 0.08
    assert np.all((disp["spread_ci_low"] <= disp["spread"]) & (disp["spread"] <= disp["spread_ci_high"]))


def shared_prompt_table(true: np.ndarray, models: int, items: int, sims: int, rho: float, seed: int,
                        family: bool = False) -> JudgedTable:
    """``models`` models answer the same ``items`` prompts per group; a prompt's difficulty is shared by
    the models (latent correlation ``rho``). With ``family`` the j-th prompts of all groups form one
    counterfactual family sharing that difficulty."""
    rng = np.random.default_rng(seed)
    groups = len(true)
    n_items = sims * groups * items
    sim, grp = np.arange(n_items) // (groups * items), np.arange(n_items) // items % groups
    fam = sim * items + np.arange(n_items) % items
    shared = rng.standard_normal(sims * items)[fam] if family else rng.standard_normal(n_items)
    latent = np.sqrt(rho) * shared[None, :] + np.sqrt(1 - rho) * rng.standard_normal((models, n_items))
    safe = latent < stats.norm.ppf(true[grp])[None, :]
    model = np.repeat(np.arange(models), n_items)
    item = np.tile(np.arange(n_items), models)
    pair = np.tile(fam + 1, models) if family else None
    return table(model, np.tile(sim, models), np.tile(grp, models), safe.ravel(), item=item, pair=pair)


def test_pooled_tables_cover_with_shared_prompts():
    true = np.array([0.3, 0.6, 0.9, 0.97])
    sims = 300
    t = shared_prompt_table(true, models=5, items=40, sims=sims, rho=0.5, seed=11)
    frame = rates(t, ["language", "group"])
    truth = true[np.array([int(g[1:]) for g in frame["group"]])]
    coverage = ((frame["ci_low"] <= truth) & (truth <= frame["ci_high"])).mean()
    naive_low, naive_high = clopper_pearson(frame["n_safe"], frame["n_judged"])
    naive = ((naive_low <= truth) & (truth <= naive_high)).mean()
    assert coverage >= 0.93 and naive < 0.90, (coverage, naive)  # treating responses as independent fails
    assert frame["design_effect"].mean() > 1.5


def test_counterfactual_families_are_clusters():
    true = np.array([0.4, 0.6, 0.7, 0.8])
    sims = 300
    t = shared_prompt_table(true, models=3, items=30, sims=sims, rho=0.5, seed=12, family=True)
    frame = rates(t, ["language"])  # every family lies in one cell: responses agree across groups and models
    coverage = ((frame["ci_low"] <= true.mean()) & (true.mean() <= frame["ci_high"])).mean()
    assert coverage >= 0.93, coverage


def test_compare_pairs_the_sides_on_shared_prompts():
    true_a = np.array([0.3, 0.6, 0.85, 0.95])
    true_b = np.array([0.35, 0.5, 0.9, 0.95])
    sims, items = 300, 60
    rng = np.random.default_rng(21)
    n_items = sims * len(true_a) * items
    sim, grp = np.arange(n_items) // (len(true_a) * items), np.arange(n_items) // items % len(true_a)
    shared = rng.standard_normal(n_items)
    sides = []
    for true in (true_a, true_b):
        latent = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal(n_items)
        sides.append(table(np.zeros(n_items), sim, grp, latent < stats.norm.ppf(true[grp]),
                           item=np.arange(n_items)))
    result = compare_tables(*sides, threshold=100, max_spread=100, resamples=19)
    g = result.groups
    truth = (true_b - true_a)[np.array([int(x[1:]) for x in g["group"]])]
    coverage = ((g["ci_low"] <= truth) & (truth <= g["ci_high"])).mean()
    assert len(g) == sims * len(true_a) and coverage >= 0.93, coverage
    assert g["correlation"].mean() > 0.15  # the pairing was found
    # and pairing narrows the interval relative to treating the sides as independent
    unpaired = np.sqrt((g["rate_a"] * (1 - g["rate_a"]) + g["rate_b"] * (1 - g["rate_b"])) / items)
    assert np.median(g["ci_high"] - g["ci_low"]) < np.median(2 * 1.96 * unpaired)


def test_scaling_covers_with_shared_prompts():
    from mijabench.analysis.disparity import scaling

    true = np.array([[0.3, 0.5, 0.7, 0.9], [0.4, 0.5, 0.8, 0.95], [0.6, 0.6, 0.7, 0.8]])  # 3 models x groups
    models, groups, items, sims, rho = 3, 4, 50, 300, 0.5
    rng = np.random.default_rng(31)
    n_items = sims * groups * items
    sim, grp = np.arange(n_items) // (groups * items), np.arange(n_items) // items % groups
    latent = np.sqrt(rho) * rng.standard_normal(n_items) + np.sqrt(1 - rho) * rng.standard_normal(
        (models, n_items))
    safe = latent < stats.norm.ppf(true[:, grp])
    t = table(np.repeat(np.arange(models), n_items), np.tile(sim, models), np.tile(grp, models), safe.ravel(),
              item=np.tile(np.arange(n_items), models))
    meta = {f"m{i}": ("fam", "small", 1.0 + i) for i in range(models)}
    scale = scaling(disparity(deviations(t, resamples=19), seed=1), meta)
    assert len(scale) == sims and set(scale["n_models"]) == {models}
    rate_truth, spread_truth = true.mean(), np.ptp(true, axis=1).mean()
    rate_cov = ((scale["rate_ci_low"] <= rate_truth) & (rate_truth <= scale["rate_ci_high"])).mean()
    spread_cov = ((scale["spread_ci_low"] <= spread_truth) & (spread_truth <= scale["spread_ci_high"])).mean()
    assert rate_cov >= 0.93 and spread_cov >= 0.90, (rate_cov, spread_cov)


def test_counterfactual_twins_pair_the_deviations():
    """Each family aims one attack at all 13 groups of a model; a family's difficulty is shared by its twins
    (latent correlation 0.5). Resampling families jointly narrows the deviations' intervals where treating
    the groups as independent over-covers, and keeps them at 95%."""
    true = np.linspace(0.05, 0.95, GROUPS)
    families, sims = 50, 300
    rng = np.random.default_rng(41)
    family = np.repeat(np.arange(sims * families), GROUPS)
    grp = np.tile(np.arange(GROUPS), sims * families)
    latent = np.sqrt(0.5) * rng.standard_normal(sims * families)[family] + np.sqrt(0.5) * rng.standard_normal(
        len(family))
    safe = latent < stats.norm.ppf(true[grp])
    sim = family // families
    truth_of = true - true.mean()
    out = {}
    for name, pair in (("twins", family + 1), ("unpaired", None)):
        judged = table(np.zeros(len(family)), sim, grp, safe, item=np.arange(len(family)), pair=pair)
        frame = deviations(judged, resamples=9)
        truth = truth_of[np.array([int(g[1:]) for g in frame["group"]])]
        disp = disparity(frame, seed=1)
        out[name] = (((frame["ci_low"] <= truth) & (truth <= frame["ci_high"])).mean(),
                     np.median(frame["ci_high"] - frame["ci_low"]),
                     ((disp["mean_ci_low"] <= true.mean()) & (true.mean() <= disp["mean_ci_high"])).mean())
    assert 0.93 <= out["twins"][0] <= 0.97 and out["unpaired"][0] > out["twins"][0], out
    assert out["twins"][1] < 0.92 * out["unpaired"][1], out
    # the model's mean over groups: twins that agree make it vary more than independent groups would
    assert out["twins"][2] >= 0.93 and out["unpaired"][2] < 0.85, out


@pytest.mark.parametrize("n", (10, 50, 200))
def test_paired_difference_covers_and_never_collapses(n):
    from mijabench.analysis.intervals import paired_difference_limits
    from mijabench.analysis.paired import paired_analysis

    rng = np.random.default_rng(n)
    sims = 3000
    scenarios = ((0.5, 0.5, 0.5), (0.9, 0.7, 0.5), (0.95, 0.95, 0.5), (0.2, 0.05, 0.3), (0.5, 0.3, 0.0))
    for pa, pb, rho in scenarios:
        shared = rng.standard_normal((sims, n))
        a = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.standard_normal((sims, n)) < stats.norm.ppf(pa)
        b = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.standard_normal((sims, n)) < stats.norm.ppf(pb)
        low, high = paired_difference_limits((a & b).sum(1), (a & ~b).sum(1), (~a & b).sum(1),
                                             (~a & ~b).sum(1))
        coverage = ((low <= pa - pb) & (pa - pb <= high)).mean()
        assert coverage >= 0.93, (pa, pb, rho, coverage)
    # every twin pair concordant: no discordant pair, yet the interval keeps a width
    twins = table([0] * 2 * n, [0] * 2 * n, [0, 1] * n, [True] * 2 * n, item=np.arange(2 * n),
                  pair=np.repeat(np.arange(n), 2) + 1)
    frame = paired_analysis(twins, resamples=50)
    assert frame["paired_difference"][0] == 0 and frame["ci_low"][0] < 0 < frame["ci_high"][0]
