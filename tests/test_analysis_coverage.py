"""The bootstrap 95% intervals cover the true rates and deviations in 93-97% of repeated simulations.

400 simulated audits, each with 2 models x 4 groups of known defense rates; each simulation is one block of
"models" in a single table (sim-index in the model name), so one call computes all 400 x 8 intervals with
the same code path a real report uses."""

from __future__ import annotations

import numpy as np

from mijabench.analysis import deviations, rates
from mijabench.analysis.table import Categorical, JudgedTable

N_SIMS = 400
GROUPS = ["women", "black", "muslim", "jewish"]
TRUE_RATES = np.array([[0.55, 0.70, 0.80, 0.45],   # model 0
                       [0.85, 0.65, 0.30, 0.60]])  # model 1
CELL_SIZES = np.array([[160, 220, 300, 260],
                       [240, 180, 200, 320]])


def simulate(seed: int = 2024):
    rng = np.random.default_rng(seed)
    models, groups, labels = [], [], []
    for sim in range(N_SIMS):
        for m in range(2):
            for g in range(len(GROUPS)):
                n = CELL_SIZES[m, g]
                models.append(np.full(n, sim * 2 + m))
                groups.append(np.full(n, g))
                labels.append(np.where(rng.random(n) < TRUE_RATES[m, g], 0, 1))  # 0 safe, 1 harmful
    model = np.concatenate(models)
    table = JudgedTable.from_columns(
        model=Categorical(model.astype(np.int32), tuple(f"sim{s:03d}-m{m}" for s in range(N_SIMS)
                                                       for m in range(2))),
        language=Categorical(np.zeros(len(model), np.int32), ("en",)),
        group=Categorical(np.concatenate(groups).astype(np.int32), tuple(GROUPS)),
        label=Categorical(np.concatenate(labels).astype(np.int32), ("safe", "harmful")),
    )
    return table


def model_index(names: np.ndarray) -> np.ndarray:
    return np.array([int(n.split("-m")[1]) for n in names])


def test_rate_intervals_cover_the_truth():
    table = simulate()
    frame = rates(table, ["model", "group"], resamples=1000, seed=1)
    assert len(frame) == N_SIMS * 8
    m = model_index(frame["model"])
    g = np.array([GROUPS.index(x) for x in frame["group"]])
    truth = TRUE_RATES[m, g]
    coverage = ((frame["ci_low"] <= truth) & (truth <= frame["ci_high"])).mean()
    assert 0.93 <= coverage <= 0.97, coverage


def test_deviation_intervals_cover_the_truth():
    table = simulate(seed=99)
    frame = deviations(table, resamples=1000, seed=2)
    m = model_index(frame["model"])
    g = np.array([GROUPS.index(x) for x in frame["group"]])
    # the micro model mean weights groups by their (fixed) cell sizes
    true_mean = (TRUE_RATES * CELL_SIZES).sum(axis=1) / CELL_SIZES.sum(axis=1)
    truth = TRUE_RATES[m, g] - true_mean[m]
    coverage = ((frame["ci_low"] <= truth) & (truth <= frame["ci_high"])).mean()
    assert 0.93 <= coverage <= 0.97, coverage
