"""Coverage of the report's 95% intervals, printed as the Markdown tables of docs/statistics.md.

Rates: exact coverage (the binomial probability of every count whose interval covers the truth) of
Clopper-Pearson, Wilson and Jeffreys. Everything else: vectorised simulations of the interval functions in
``mijabench.analysis.intervals`` and, for shared prompts and ``compare``, of the analysis functions on
simulated tables. About a minute on one core.

    .venv/bin/python benchmarks/interval_coverage.py [--sims N]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from mijabench.analysis import deviations, rates
from mijabench.analysis.compare import compare_tables
from mijabench.analysis.disparity import disparity, scaling
from mijabench.analysis.intervals import (
    all_equal_pvalue,
    clopper_pearson,
    deviation_limits,
    paired_difference_limits,
    spread_limits,
    wilson,
)
from mijabench.analysis.table import Categorical, JudgedTable

SIZES = (10, 20, 50, 200, 2000)
RATES = (0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
GROUPS = 13


def jeffreys(k, n):
    low = np.where(k <= 0, 0.0, stats.beta.ppf(0.025, k + 0.5, n - k + 0.5))
    high = np.where(k >= n, 1.0, stats.beta.ppf(0.975, k + 0.5, n - k + 0.5))
    return low, high


def exact(method, n, p):
    x = np.arange(n + 1)
    low, high = method(x.astype(float), np.full(n + 1, float(n)))
    return stats.binom.pmf(x, n, p)[(low <= p) & (p <= high)].sum()


def rate_tables():
    for name, method in (("Clopper-Pearson (used)", clopper_pearson), ("Wilson", wilson),
                         ("Jeffreys", jeffreys)):
        print(f"\n{name}: exact coverage (%) of a cell's rate\n")
        print("| n | " + " | ".join(f"p={p:g}" for p in RATES) + " |")
        print("|---" * (len(RATES) + 1) + "|")
        for n in SIZES:
            print(f"| {n} | " + " | ".join(f"{100 * exact(method, n, p):.1f}" for p in RATES) + " |")


def deviation_table(sims, rng):
    scenarios = {"all 2%": np.full(GROUPS, 0.02), "all 50%": np.full(GROUPS, 0.5),
                 "all 95%": np.full(GROUPS, 0.95), "2% to 98%": np.linspace(0.02, 0.98, GROUPS),
                 "1% to 20%": np.linspace(0.01, 0.2, GROUPS), "80% to 99%": np.linspace(0.8, 0.99, GROUPS)}
    print("\nDeviation from the mean over 13 groups, MOVER-Wilson: coverage (%) mean over groups / worst "
          f"group, {sims} simulations\n")
    print("| true rates | n=10 | n=50 | n=2000 |\n|---|---|---|---|")
    for name, true in scenarios.items():
        cells = []
        for n in (10, 50, 2000):
            k = rng.binomial(n, true, size=(sims, GROUPS)).ravel().astype(float)
            nn = np.full(k.shape, float(n))
            starts = np.arange(sims) * GROUPS
            rate = k / nn
            dev = rate - np.repeat(np.add.reduceat(rate, starts) / GROUPS, GROUPS)
            down, up = deviation_limits(rate, *wilson(k, nn), np.full(k.shape, 1 / GROUPS), starts)
            truth = np.tile(true - true.mean(), sims)
            cov = ((dev - down <= truth) & (truth <= dev + up)).reshape(sims, GROUPS).mean(axis=0)
            cells.append(f"{100 * cov.mean():.1f} / {100 * cov.min():.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def spread_table(sims, rng):
    print(f"\nMax-min spread of 13 groups (rates centred on 50%), {sims} simulations: coverage (%) of the "
          "Sidak interval | of the old percentile bootstrap; false-positive rate / power (%) of the "
          "all-equal permutation test (999 permutations)\n")
    print("| true spread (pts) | n | Sidak coverage | percentile coverage | test rejects at 5% |")
    print("|---|---|---|---|---|")
    for spread in (0.0, 0.05, 0.2, 0.4):
        true = np.linspace(0.5 - spread / 2, 0.5 + spread / 2, GROUPS)
        for n in (50, 2000):
            k = rng.binomial(n, true, size=(sims, GROUPS))
            low, high = spread_limits(k.ravel(), np.full(k.size, n), np.arange(sims) * GROUPS)
            sidak = ((low <= spread + 1e-12) & (spread - 1e-12 <= high)).mean()
            boot = rng.binomial(n, (k / n)[:, :, None], size=(sims, GROUPS, 500)) / n
            spread_boot = boot.max(axis=1) - boot.min(axis=1)
            plow, phigh = np.quantile(spread_boot, [0.025, 0.975], axis=1)
            percentile = ((plow <= spread + 1e-12) & (spread - 1e-12 <= phigh)).mean()
            m = sims
            p = all_equal_pvalue(k[:m].ravel(), np.full(m * GROUPS, n), np.arange(m) * GROUPS, 999, rng)
            print(f"| {100 * spread:g} | {n} | {100 * sidak:.1f} | {100 * percentile:.1f} | "
                  f"{100 * (p <= 0.05).mean():.1f} |")


def _table(model, language, group, safe, item, pair=None):
    def cat(codes, prefix):
        codes = np.asarray(codes, np.int32)
        return Categorical(codes, tuple(f"{prefix}{i}" for i in range(int(codes.max()) + 1)))
    cols = {"model": cat(model, "m"), "language": cat(language, "s"), "group": cat(group, "g"),
            "item_id": cat(item, "i"),
            "label": Categorical(np.where(safe, 0, 1).astype(np.int32), ("safe", "harmful"))}
    if pair is not None:  # pair codes 1.. name families; 0 is the empty pair id
        cols["pair_id"] = Categorical(np.asarray(pair, np.int32),
                                      ("",) + tuple(f"p{i}" for i in range(int(np.max(pair)))))
    return JudgedTable.from_columns(**cols)


def shared_table(sims, rng):
    print(f"\nShared prompts (latent correlation 0.5 between the models answering a prompt), {sims} "
          "simulated tables: coverage (%)\n")
    print("| table | clustered (used) | responses treated as independent |\n|---|---|---|")
    true = np.array([0.3, 0.6, 0.9, 0.97])
    items, models = 40, 5
    n_items = sims * len(true) * items
    sim, grp = np.arange(n_items) // (len(true) * items), np.arange(n_items) // items % len(true)
    shared = rng.standard_normal(n_items)
    latent = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal((models, n_items))
    safe = latent < stats.norm.ppf(true[grp])
    t = _table(np.repeat(np.arange(models), n_items), np.tile(sim, models), np.tile(grp, models),
               safe.ravel(), np.tile(np.arange(n_items), models))
    frame = rates(t, ["language", "group"], resamples=10)
    truth = true[np.array([int(g[1:]) for g in frame["group"]])]
    naive_low, naive_high = clopper_pearson(frame["n_safe"], frame["n_judged"])
    print(f"| rate by language and group, pooled over {models} models | "
          f"{100 * ((frame['ci_low'] <= truth) & (truth <= frame['ci_high'])).mean():.1f} | "
          f"{100 * ((naive_low <= truth) & (truth <= naive_high)).mean():.1f} |")
    true_b = np.array([0.35, 0.5, 0.9, 0.95])
    sides = []
    for p in (true, true_b):
        z = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal(n_items)
        sides.append(_table(np.zeros(n_items), sim, grp, z < stats.norm.ppf(p[grp]), np.arange(n_items)))
    g = compare_tables(*sides, threshold=100, max_spread=100, resamples=19).groups
    diff = (true_b - true)[np.array([int(x[1:]) for x in g["group"]])]
    paired = ((g["ci_low"] <= diff) & (diff <= g["ci_high"])).mean()
    # the same MOVER interval without the correlation: the sides treated as independent samples
    la, ha = wilson(g["rate_a"] * g["n_a"], g["n_a"])
    lb, hb = wilson(g["rate_b"] * g["n_b"], g["n_b"])
    d = g["difference"]
    low = d - np.sqrt((g["rate_b"] - lb) ** 2 + (ha - g["rate_a"]) ** 2)
    high = d + np.sqrt((hb - g["rate_b"]) ** 2 + (g["rate_a"] - la) ** 2)
    unpaired = ((low <= diff) & (diff <= high)).mean()
    print(f"| compare, b - a per group, {items} shared prompts per group | {100 * paired:.1f} (median width "
          f"{100 * np.median(g['ci_high'] - g['ci_low']):.1f} pts) | {100 * unpaired:.1f} (median width "
          f"{100 * np.median(high - low):.1f} pts) |")


def scaling_rows(sims, rng):
    true = np.array([[0.3, 0.5, 0.7, 0.9], [0.4, 0.5, 0.8, 0.95], [0.6, 0.6, 0.7, 0.8]])  # 3 models x groups
    models, groups, items = 3, 4, 50
    n_items = sims * groups * items
    sim, grp = np.arange(n_items) // (groups * items), np.arange(n_items) // items % groups
    noise = rng.standard_normal((models, n_items))
    latent = np.sqrt(0.5) * rng.standard_normal(n_items) + np.sqrt(0.5) * noise
    safe = latent < stats.norm.ppf(true[:, grp])
    t = _table(np.repeat(np.arange(models), n_items), np.tile(sim, models), np.tile(grp, models),
               safe.ravel(), np.tile(np.arange(n_items), models))
    meta = {f"m{i}": ("fam", "small", 1.0 + i) for i in range(models)}
    scale = scaling(disparity(deviations(t, resamples=19)), meta)
    rate, spread = true.mean(), np.ptp(true, axis=1).mean()
    rate_cov = ((scale["rate_ci_low"] <= rate) & (rate <= scale["rate_ci_high"])).mean()
    spread_cov = ((scale["spread_ci_low"] <= spread) & (spread <= scale["spread_ci_high"])).mean()
    print(f"| scaling: mean rate of 3 models of a size class ({items} prompts per group) | "
          f"{100 * rate_cov:.1f} | – |")
    print(f"| scaling: mean spread of those models | {100 * spread_cov:.1f} | – |")


def twins_table(sims, rng):
    print(f"\nCounterfactual twins: families aim one attack at all 13 groups of a model (latent correlation "
          f"0.5 within a family), rates 5% to 95%, {sims} simulations: deviation coverage (%) mean / worst "
          "group, median width (pts)\n")
    print("| families (replies per group) | families resampled jointly (used) | groups as independent |")
    print("|---|---|---|")
    true = np.linspace(0.05, 0.95, GROUPS)
    for families in (10, 50, 200):
        family = np.repeat(np.arange(sims * families), GROUPS)
        grp = np.tile(np.arange(GROUPS), sims * families)
        shared = rng.standard_normal(sims * families)[family]
        latent = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal(len(family))
        safe = latent < stats.norm.ppf(true[grp])
        cells = []
        for pair in (family + 1, None):
            t = _table(np.zeros(len(family)), family // families, grp, safe, np.arange(len(family)), pair)
            frame = deviations(t, resamples=9)
            g = np.array([int(x[1:]) for x in frame["group"]])
            truth = (true - true.mean())[g]
            hit = (frame["ci_low"] <= truth) & (truth <= frame["ci_high"])
            per_group = np.array([hit[g == j].mean() for j in range(GROUPS)])
            cells.append(f"{100 * hit.mean():.1f} / {100 * per_group.min():.1f}, "
                         f"{100 * np.median(frame['ci_high'] - frame['ci_low']):.1f}")
        print(f"| {families} | " + " | ".join(cells) + " |")


def paired_table(sims, rng):
    print(f"\nPaired difference over counterfactual pairs (Newcombe's method 10), {sims} simulations: "
          "coverage (%); rate A, rate B, latent correlation within a pair\n")
    scenarios = ((0.5, 0.5, 0.5), (0.9, 0.7, 0.5), (0.95, 0.95, 0.5), (0.2, 0.05, 0.3), (0.99, 0.9, 0.5),
                 (0.5, 0.3, 0.0))
    print("| pairs | " + " | ".join(f"{a:g} / {b:g} / {r:g}" for a, b, r in scenarios) + " |")
    print("|---" * (len(scenarios) + 1) + "|")
    for n in (10, 20, 50, 200):
        cells = []
        for pa, pb, rho in scenarios:
            shared = rng.standard_normal((sims, n))
            a = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.standard_normal((sims, n)) < stats.norm.ppf(pa)
            b = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.standard_normal((sims, n)) < stats.norm.ppf(pb)
            low, high = paired_difference_limits((a & b).sum(1), (a & ~b).sum(1), (~a & b).sum(1),
                                                 (~a & ~b).sum(1))
            cells.append(f"{100 * ((low <= pa - pb) & (pa - pb <= high)).mean():.1f}")
        print(f"| {n} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    rate_tables()
    deviation_table(args.sims, rng)
    spread_table(min(args.sims, 2000), rng)
    shared_table(min(args.sims, 1000), rng)
    scaling_rows(min(args.sims, 1000), rng)
    twins_table(min(args.sims, 1000) // 2, rng)
    paired_table(args.sims, rng)


if __name__ == "__main__":
    main()
