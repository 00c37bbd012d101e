"""Judge-error correction of a budgeted audit: simulated coverage of the staged box intervals
(analysis.budget_correction) with a judge whose errors differ by group, and small labelled samples."""

import numpy as np
import pytest

from mijabench.analysis.budget_correction import corrected_limits, rogan_gladen_box, staged_function
from mijabench.analysis.rates import parent_index
from mijabench.run.budget import Design, TableOracle, run_plan

# four groups per (model, language) block, each with its own judge: (true rate, sensitivity, specificity)
GROUPS = [(0.10, 0.95, 0.90), (0.35, 0.85, 0.97), (0.60, 0.90, 0.80), (0.90, 0.97, 0.88)]


def _simulate(seed: int, blocks: int, size: int, labels_per_vote: int, target: float,
              per_model: bool = False):
    """One budgeted audit of ``blocks`` x 4 cells (a block is a model): human truth, the judge's votes, the
    staged plan on the votes, and a labelled sample of the drawn responses: ``labels_per_vote`` per vote and
    group pooled over the blocks (a simple random sample per vote), or with ``per_model`` per vote, group
    and block, as `annotate sample` draws them, the models' rates then differing by up to 16 points so the
    labels' weights differ (Kish). Returns the corrected and raw intervals and the truth."""
    rng = np.random.default_rng(seed)
    g = len(GROUPS)
    cells = blocks * g
    shift = np.linspace(-0.08, 0.08, blocks) if per_model else np.zeros(blocks)
    truth, votes, human = np.zeros(cells), [], []
    for c in range(cells):
        rate, sens, spec = GROUPS[c % g]
        rate = float(np.clip(rate + shift[c // g], 0.01, 0.99))
        k = int(round(rate * size)) + int(rng.integers(-3, 4))  # blocks differ a little
        y = rng.permutation(np.r_[np.ones(k, np.int64), np.zeros(size - k, np.int64)])  # drawing order
        v = np.where(y == 1, rng.random(size) < sens, rng.random(size) >= spec).astype(np.int64)
        truth[c] = k / size
        votes.append(v)
        human.append(y)
    design = Design(cell_stratum=np.arange(cells), cell_block=np.repeat(np.arange(blocks), g),
                    population=np.full(cells, size), units=np.full(cells, size),
                    calls_per_unit=np.ones(cells, np.int64))
    res = run_plan(design, TableOracle(votes), target=target, budget=None)
    # labels, weighted as analysis.budget_correction weighs them: judged / labelled in their stratum
    sw, sw2, swy, q_lg = np.zeros((g, 2)), np.zeros((g, 2)), np.zeros((g, 2)), np.zeros(g)
    for j in range(g):
        members = list(range(j, cells, g))
        strata = [[c] for c in members] if per_model else [members]
        drawn_v = np.concatenate([votes[c][:res.n[c]] for c in members])
        q_lg[j] = drawn_v.mean()
        for stratum in strata:
            v = np.concatenate([votes[c][:res.n[c]] for c in stratum])
            y = np.concatenate([human[c][:res.n[c]] for c in stratum])
            for col, vote in ((0, 1), (1, 0)):
                pool = np.flatnonzero(v == vote)
                if not len(pool):
                    continue
                pick = rng.choice(pool, size=min(labels_per_vote, len(pool)), replace=False)
                w = len(pool) / len(pick)
                sw[j, col] += w * len(pick)
                sw2[j, col] += w * w * len(pick)
                swy[j, col] += w * y[pick].sum()
    label_n = sw ** 2 / np.maximum(sw2, 1e-12)
    label_k = label_n * swy / np.maximum(sw, 1e-12)
    staged = staged_function(res.stage_n, res.stage_s, res.population, res.looks, res.weight)
    keys = {"language": np.zeros(cells, np.int64), "model": np.repeat(np.arange(blocks), g)}
    parent, starts = parent_index(keys, ["language", "model"])
    at = np.tile(np.arange(g), blocks)
    low, high, youden, dev_low, dev_high = corrected_limits(staged, label_k, label_n, q_lg, at, parent,
                                                            starts)
    true_dev = truth - np.repeat(truth.reshape(blocks, g).mean(axis=1), g)
    return dict(truth=truth, true_dev=true_dev, low=low, high=high, youden=youden, dev_low=dev_low,
                dev_high=dev_high, raw_low=res.low, raw_high=res.high, raw_dev_low=res.dev_low,
                raw_dev_high=res.dev_high, n=res.n, size=size)


def _coverage(runs: list[dict]) -> dict[str, float]:
    """Shares of the defined intervals that hold the truth, and the share left undefined (judge near
    chance at the deviations' Bonferroni level: the report says so instead of printing an interval)."""
    def share(lo, hi, x):
        low, high, truth = (np.concatenate([r[k] for r in runs]) for k in (lo, hi, x))
        ok = np.isfinite(low)
        return float(np.mean((low[ok] <= truth[ok] + 1e-12) & (truth[ok] <= high[ok] + 1e-12)))
    return {"rate": share("low", "high", "truth"), "deviation": share("dev_low", "dev_high", "true_dev"),
            "raw_rate": share("raw_low", "raw_high", "truth"),
            "raw_deviation": share("raw_dev_low", "raw_dev_high", "true_dev"),
            "undefined_deviation": float(np.mean(np.concatenate([np.isnan(r["dev_low"]) for r in runs])))}


@pytest.mark.parametrize("labels_per_vote,per_model", [(30, False), (8, True)], ids=["srs-30", "per-model-8"])
def test_corrected_intervals_cover_the_true_rates_and_the_raw_ones_do_not(labels_per_vote, per_model):
    # 3 audits of 10 blocks x 4 groups = 120 cells per setting, each with a fresh labelled sample. 30 labels
    # per vote and group is about the least for which these judges' rate boxes stay above chance; 8 per
    # vote, group and model is the sampler's design with 80 per vote and group, weighted
    runs = [_simulate(seed, blocks=10, size=300, labels_per_vote=labels_per_vote, target=0.12,
                      per_model=per_model) for seed in range(3)]
    assert all(np.all(r["youden"] > 0) for r in runs)  # the judges are good enough for these labels
    cov = _coverage(runs)
    assert cov["rate"] >= 0.95 and cov["deviation"] >= 0.95, cov
    assert cov["undefined_deviation"] < (0.5 if labels_per_vote < 50 and not per_model else 0.01), cov
    # the uncorrected staged interval covers the vote's rate, not the truth: it misses many cells here
    assert cov["raw_rate"] < 0.8 and cov["raw_deviation"] < 0.8, cov
    # and the audit did stop early: fewer prompts drawn than the full design
    assert np.mean([r["n"].sum() / (r["size"] * len(r["n"])) for r in runs]) < 0.95


def test_more_labels_give_narrower_corrected_intervals():
    few = _simulate(1, blocks=4, size=300, labels_per_vote=15, target=0.12)
    many = _simulate(1, blocks=4, size=300, labels_per_vote=200, target=0.12)
    assert np.mean(many["high"] - many["low"]) < np.mean(few["high"] - few["low"])


def test_box_extremes_and_a_chance_level_judge():
    one = np.array([0.3])
    low, high, ok = rogan_gladen_box((one, one), (np.array([0.8]), np.array([0.9])),
                                     (np.array([0.85]), np.array([0.95])))
    # the corners bound a dense grid of the box
    se, sp = np.meshgrid(np.linspace(0.8, 0.9, 21), np.linspace(0.85, 0.95, 21))
    grid = (0.3 + sp - 1) / (se + sp - 1)
    assert ok[0] and low[0] <= grid.min() + 1e-12 and high[0] >= grid.max() - 1e-12
    assert low[0] == pytest.approx(grid.min()) and high[0] == pytest.approx(grid.max())
    # a box reaching sens + spec - 1 = 0 has no interval
    low, high, ok = rogan_gladen_box((one, one), (np.array([0.4]), np.array([0.9])),
                                     (np.array([0.5]), np.array([0.9])))
    assert not ok[0] and np.isnan(low[0]) and np.isnan(high[0])
