"""Budgeted audits on a synthetic paper-scale table (issue 15, item 5): calls used and saved, widest interval
and coverage of the rates and the deviations, over repeated simulations.

14 models with mean defense rates from 0.02 to 0.47, 13 English and 9 Portuguese groups with deviations from
-0.07 to +0.11, about 1,370 prompts per cell, judges simulated as a perfect vote. Each simulation draws a
fresh benchmark (each prompt's label is Bernoulli with its cell's rate) and a fresh drawing order; the truth
is the full benchmark's rate per cell, and each group's deviation from its model x language mean over
groups, which is what the full audit would report.

    PYTHONPATH=src python benchmarks/budget_saving.py [--sims 40] [--target 4.8] [--budget CALLS]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mijabench.run.budget import Design, TableOracle, run_plan


def paper_table(rng: np.random.Generator, prompts: int = 1370):
    models = np.linspace(0.02, 0.47, 14)
    blocks = [np.linspace(-0.07, 0.11, groups) for groups in (13, 9)]  # English, Portuguese
    rates, block = [], []
    for m, mean in enumerate(models):
        for lang, dev in enumerate(blocks):
            rates.extend(np.clip(mean + dev, 0.0, 1.0))
            block.extend([m * 2 + lang] * len(dev))
    rates, block = np.array(rates), np.array(block)
    sizes = rng.integers(prompts - 30, prompts + 31, size=len(rates))
    return rates, block, sizes


def simulate(seed: int, target: float | None, budget: int | None):
    rng = np.random.default_rng(seed)
    rates, block, sizes = paper_table(rng)
    labels = [(rng.random(n) < p).astype(np.int64)  # drawn in a random order already
              for p, n in zip(rates, sizes, strict=True)]
    truth = np.array([x.mean() for x in labels])
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    counts = np.diff(np.r_[starts, len(block)])
    true_dev = truth - np.repeat(np.add.reduceat(truth, starts) / counts, counts)
    cells = len(rates)
    design = Design(cell_stratum=np.arange(cells), cell_block=block, population=sizes, units=sizes,
                    calls_per_unit=np.ones(cells, np.int64))
    res = run_plan(design, TableOracle(labels), target=target, budget=budget)
    covered = (res.low - 1e-12 <= truth) & (truth <= res.high + 1e-12)
    dev_cov = (res.dev_low - 1e-12 <= true_dev) & (true_dev <= res.dev_high + 1e-12)
    return res, covered, dev_cov


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=40)
    ap.add_argument("--target", type=float, default=4.8, help="full width in points; 0 for none")
    ap.add_argument("--budget", type=int, default=None)
    args = ap.parse_args()
    target = args.target / 100 if args.target > 0 else None
    started, cpu = time.perf_counter(), time.process_time()
    used, full, widths, dev_widths, cov, dcov, by_budget, all_w = [], 0, [], [], [], [], 0, []
    for seed in range(args.sims):
        res, c, dc = simulate(seed, target, args.budget)
        used.append(res.calls)
        full = res.full_calls
        widths.append(np.max(res.high - res.low))
        all_w.append(res.high - res.low)
        dev_widths.append(np.max(res.dev_high - res.dev_low))
        cov.append(c)
        dcov.append(dc)
        by_budget += int(np.sum(res.status == "budget"))
    cov, dcov = np.array(cov), np.array(dcov)
    used = np.array(used)
    print(f"paper-scale table: {cov.shape[1]} cells, {full:,} calls in the full design; {args.sims} sims"
          f" ({time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU)")
    print(f"target {args.target:g} points" + (f", budget {args.budget:,} calls" if args.budget else ""))
    print(f"calls used: mean {used.mean():,.0f} ({used.mean() / full:.1%} of full), max {used.max():,} "
          f"({used.max() / full:.1%}); saved {1 - used.mean() / full:.1%}")
    print(f"widest rate interval: {100 * max(widths):.2f} points; widest deviation interval: "
          f"{100 * max(dev_widths):.2f} points; cells stopped by the budget: {by_budget}")
    p50, p95, p99 = 100 * np.percentile(np.concatenate(all_w), [50, 95, 99])
    print(f"rate interval widths over all cells: median {p50:.2f}, 95th percentile {p95:.2f}, 99th {p99:.2f}"
          " points")
    print(f"coverage of rates: {cov.mean():.2%} over all cells (worst cell {cov.mean(axis=0).min():.1%}); "
          f"of deviations: {dcov.mean():.2%} (worst cell {dcov.mean(axis=0).min():.1%})")


if __name__ == "__main__":
    main()
