"""Judge-error correction of a budgeted audit: simulated coverage of the staged box intervals
(analysis.budget_correction) with a judge whose errors differ by group, and small labelled samples."""

import numpy as np
import pytest

from mijabench.analysis import correction
from mijabench.analysis.budget_correction import (
    LabelCounts,
    budgeted_correction,
    corrected_limits,
    rogan_gladen_box,
    staged_function,
)
from mijabench.analysis.correction import corrected_rates, label_strata
from mijabench.analysis.rates import parent_index
from mijabench.analysis.table import JudgedTable
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


def _judged_audit(seed=7):
    """A judged budgeted audit as the report sees it: 2 models x 2 languages x 3 groups x 2 strategies of
    30-90 responses, a judge with 10-15% errors, 6 human labels per (model, language, group, strategy) and
    vote (so the labels' weights differ), and the audit's record: per cell a pilot of 30 then the rest,
    out of twice the judged responses."""
    rng = np.random.default_rng(seed)
    cols = {"model": [], "language": [], "group": [], "strategy": [], "label": []}
    truth, labels, cells, stage_n, stage_s = [], {}, [], [[], []], [[], []]
    for model in ("ma", "mb"):
        for lang in ("en", "pt"):
            for g, group in enumerate(("g1", "g2", "g3")):
                n_cell = s_cell = 0
                for strategy in ("s1", "s2"):
                    n = int(rng.integers(30, 90))
                    y = rng.random(n) < 0.3 + 0.2 * g + 0.1 * (model == "mb")
                    vote = np.where(y, rng.random(n) < 0.9, rng.random(n) >= 0.85)
                    first = len(truth)
                    for vv in (True, False):
                        pool = np.flatnonzero(vote == vv)
                        for i in rng.choice(pool, size=min(6, len(pool)), replace=False):
                            labels[f"r{first + i}"] = "safe" if y[i] else "harmful"
                    for name, value in (("model", model), ("language", lang), ("group", group),
                                        ("strategy", strategy)):
                        cols[name] += [value] * n
                    cols["label"] += ["safe" if v else "harmful" for v in vote]
                    truth += list(y)
                    n_cell, s_cell = n_cell + n, s_cell + int(vote.sum())
                cells.append([model, lang, group])
                s1 = s_cell * 30 // n_cell
                stage_n[0].append(30), stage_n[1].append(n_cell - 30)
                stage_s[0].append(s1), stage_s[1].append(s_cell - s1)
    plan = {"by": [], "cells": cells, "stage_n": stage_n, "stage_s": stage_s, "looks": [2] * len(cells),
            "population": [2 * (a + b) for a, b in zip(*stage_n, strict=True)], "weight": [0.2] * len(cells)}
    return JudgedTable.from_columns(**cols), labels, plan


def test_label_counts_weigh_each_label_by_its_sampling_stratum():
    # Kish's effective counts, summed label by label as the coverage simulation above weighs its labels,
    # equal LabelCounts' sums over correction.label_strata's strata
    table, labels, _ = _judged_audit()
    counts = LabelCounts(label_strata(table, labels))
    key = {f"r{i}": (m, lang, g, st, v) for i, (m, lang, g, st, v) in enumerate(zip(
        table.cat("model").values(), table.cat("language").values(), table.cat("group").values(),
        table.cat("strategy").values(), table.cat("label").values(), strict=True))}
    judged: dict = {}
    for k in key.values():
        judged[k] = judged.get(k, 0) + 1
    labelled: dict = {}
    for rid in labels:
        labelled[key[rid]] = labelled.get(key[rid], 0) + 1
    sums = {}
    for rid, human in labels.items():
        m, lang, g, st, vote = key[rid]
        w = judged[key[rid]] / labelled[key[rid]]
        at = (counts.index[lang, g], 0 if vote == "safe" else 1)
        sw, sw2, swy, n = sums.get(at, (0.0, 0.0, 0.0, 0))
        sums[at] = (sw + w, sw2 + w * w, swy + w * (human == "safe"), n + 1)
    assert len(sums) == counts.n_labels.size  # every (language, group) has labels of both votes
    for at, (sw, sw2, swy, n) in sums.items():
        assert counts.n_labels[at] == n
        assert counts.n_eff[at] == pytest.approx(sw * sw / sw2, rel=1e-12)
        assert counts.k_eff[at] == pytest.approx(sw * sw / sw2 * swy / sw, rel=1e-12)


def test_budgeted_correction_keeps_the_point_estimates_and_runs_no_rate_bootstrap(monkeypatch):
    table, labels, plan = _judged_audit()
    full = corrected_rates(table, labels, resamples=200, seed=3)

    def refused(*args, **kwargs):
        raise AssertionError("the budgeted path resampled the judged responses")
    monkeypatch.setattr(correction, "_binomial_rates", refused)
    budgeted = budgeted_correction(table, labels, plan, resamples=200, seed=3)
    # the point estimates and the judge accuracy table (its intervals resample the labels) are the
    # bootstrap path's, bit for bit
    def same(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    for name in ("language", "group", "model", "n_judged", "n_labels", "sensitivity", "specificity",
                 "raw_rate", "corrected_rate", "clipped", "raw_deviation", "corrected_deviation",
                 "judge_bias"):
        assert same(budgeted.rates[name], full.rates[name]), name
    assert list(budgeted.accuracy.columns) == list(full.accuracy.columns)
    for name in full.accuracy.columns:
        assert same(budgeted.accuracy[name], full.accuracy[name]), name
    assert (budgeted.labels_used, budgeted.labels_undecided) == (full.labels_used, full.labels_undecided)
    # no column of the rates' bootstrap is left behind, and the flag (which needs it) is never raised
    for name in ("raw_ci_low", "raw_ci_high", "bias_ci_low", "bias_ci_high", "undefined_share"):
        assert np.isnan(budgeted.rates[name]).all(), name
    assert budgeted.rates.boot is None and not budgeted.rates["flagged"].any()
    for note in budgeted.rates["note"]:
        assert "budgeted: staged box interval" in note and "judge bias:" not in note
    # the intervals are the staged box's, from the labels' effective counts
    counts = LabelCounts(label_strata(table, labels))
    r = budgeted.rates
    at = np.array([counts.index[k] for k in zip(r["language"], r["group"], strict=True)])
    pick = [[list(c) for c in plan["cells"]].index([m, lang, g])
            for m, lang, g in zip(r["model"], r["language"], r["group"], strict=True)]
    staged = staged_function(*([np.asarray(x)[pick] for x in plan[k]] for k in ("stage_n", "stage_s")),
                             *(np.asarray(plan[k])[pick] for k in ("population", "looks", "weight")))
    parent, starts = parent_index({k: r[k] for k in ("language", "model")}, ["language", "model"])
    low, high, _, dev_low, dev_high = corrected_limits(staged, counts.k_eff, counts.n_eff, counts.q, at,
                                                       parent, starts)
    for got, want in ((r["ci_low"], low), (r["ci_high"], high), (r["deviation_ci_low"], dev_low),
                      (r["deviation_ci_high"], dev_high)):
        assert np.array_equal(got, want, equal_nan=True)
    assert np.all(r["ci_low"] <= r["corrected_rate"]) and np.all(r["corrected_rate"] <= r["ci_high"])
