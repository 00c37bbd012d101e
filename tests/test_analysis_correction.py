"""Rates corrected for judge error: hand-computed estimates, pooling, weights, undefined and clipped cases,
bad labels, the simulation of a judge that fakes a deviation, and the report and CLI wiring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cli_inproc import invoke
from mijabench.analysis import load_judged
from mijabench.analysis.correction import FEW_LABELS, PRIOR_LABELS, corrected_rates, rogan_gladen
from mijabench.analysis.table import JudgedTable
from mijabench.errors import InputError
from mijabench.judge import load_human_labels
from mijabench.report import write_report
from mijabench.store import Store
from test_analysis import put_rows

# -- simulation -------------------------------------------------------------------------------------------
TRUE_RATE = 0.6
# Judge A is 95% accurate on "women" with symmetric errors. On "black" it is 75% accurate and its errors are
# mostly false harmful (20 of the 25 points): it misses implicit refusals, the rule judge's known weakness.
# sens = 1 - 0.20/0.6, spec = 1 - 0.05/0.4, so the vote's safe share is 0.45 instead of 0.6.
JUDGE = {"women": (0.95, 0.95), "black": (1 - 0.20 / TRUE_RATE, 1 - 0.05 / (1 - TRUE_RATE))}


def simulate(rng, n=2000, labels_per_group=150, per_vote=None):
    """One audit: n judged responses per group, all with true defense rate TRUE_RATE, and human labels on a
    simple random sample per group (or ``per_vote`` labels of each vote, as `annotate sample` draws)."""
    groups = list(JUDGE)
    truth = rng.random((len(groups), n)) < TRUE_RATE
    sens = np.array([JUDGE[g][0] for g in groups])[:, None]
    spec = np.array([JUDGE[g][1] for g in groups])[:, None]
    u = rng.random(truth.shape)
    vote_safe = np.where(truth, u < sens, u >= spec)
    table = JudgedTable.from_columns(model=["m"] * truth.size, language=["en"] * truth.size,
                                     group=np.repeat(groups, n).tolist(),
                                     label=np.where(vote_safe.ravel(), "safe", "harmful").tolist())
    picked = []
    for g in range(len(groups)):
        if per_vote is None:
            picked.append(g * n + rng.choice(n, labels_per_group, replace=False))
        else:
            for vote in (True, False):
                pool = np.flatnonzero(vote_safe[g] == vote)
                picked.append(g * n + rng.choice(pool, per_vote, replace=False))
    flat = truth.ravel()
    labels = {f"r{i}": "safe" if flat[i] else "harmful" for i in np.concatenate(picked)}
    return table, labels


def covers(low, high, value=0.0):
    return (low <= value) & (value <= high)


def test_judge_that_fakes_a_deviation_is_corrected():
    rng = np.random.default_rng(2024)
    runs = 200
    raw_dev, corr_dev, raw_cover, corr_cover, flagged = [], [], [], [], []
    for run in range(runs):
        table, labels = simulate(rng)
        r = corrected_rates(table, labels, resamples=500, seed=run).rates
        b = list(r["group"]).index("black")
        raw_dev.append(r["raw_deviation"][b])
        corr_dev.append(r["corrected_deviation"][b])
        raw_cover.append(covers(r["raw_ci_low"][b], r["raw_ci_high"][b]))
        corr_cover.append(covers(r["deviation_ci_low"][b], r["deviation_ci_high"][b]))
        flagged.append(r["flagged"][b])
    # the judge fakes a deviation of at least 5 points, and the raw interval almost never covers the truth
    assert np.mean(raw_dev) <= -0.05
    assert np.mean(raw_cover) <= 0.05
    # the corrected deviation is centred on the truth, and its interval covers it in at least 93% of runs
    assert abs(np.mean(corr_dev)) <= 0.01
    assert np.mean(corr_cover) >= 0.93
    assert np.mean(flagged) >= 0.5


def test_weights_undo_a_sample_drawn_per_vote():
    """`annotate sample` draws K labels per vote; unweighted, sens/spec of "black" would be off by several
    points and its corrected rate by about 6."""
    rng = np.random.default_rng(7)
    rates = []
    for run in range(60):
        table, labels = simulate(rng, per_vote=75)
        rates.append(corrected_rates(table, labels, resamples=1, seed=run).rates["corrected_rate"])
    assert np.abs(np.mean(rates, axis=0) - TRUE_RATE).max() <= 0.015


# -- hand-computed figures ---------------------------------------------------------------------------------
def hand_table():
    """en/women: 6 vote safe, 4 vote harmful; en/black: 5 and 5 (no labels); pt/women: 3 and 1."""
    rows = [("en", "women", "safe")] * 6 + [("en", "women", "harmful")] * 4 + \
        [("en", "black", "safe")] * 5 + [("en", "black", "harmful")] * 5 + \
        [("pt", "women", "safe")] * 3 + [("pt", "women", "harmful")]
    lang, group, label = zip(*rows, strict=True)
    return JudgedTable.from_columns(model=["m"] * len(rows), language=list(lang), group=list(group),
                                    label=list(label))


# en/women, every response labelled: vote safe r0-r5 (human: 5 safe, r5 harmful), vote harmful r6-r9
# (human: r6 safe, 3 harmful). pt/women: r20 vote safe, human safe; r23 vote harmful, human harmful.
HAND_LABELS = {**{f"r{i}": "safe" for i in range(5)}, "r5": "harmful", "r6": "safe",
               **{f"r{i}": "harmful" for i in (7, 8, 9)}, "r20": "safe", "r23": "harmful"}


def test_hand_computed_sensitivity_specificity_and_rates():
    c = corrected_rates(hand_table(), HAND_LABELS, resamples=200)
    acc = {(r["language"], r["group"]): r for r in c.accuracy.rows()}
    # English: every response labelled, so each label weighs 1: 6 safe labels (5 called safe), 4 harmful
    # (3 called harmful). Portuguese: the one labelled vote-safe response stands for the 3 vote-safe ones.
    # Overall: safe (5 + 3) / (6 + 3), harmful 4 / 5. The language is pulled towards overall, the cell
    # towards the language.
    overall_sens, overall_spec = 8 / 9, 4 / 5
    en_sens = (6 * 5 / 6 + PRIOR_LABELS * overall_sens) / (6 + PRIOR_LABELS)
    en_spec = (4 * 3 / 4 + PRIOR_LABELS * overall_spec) / (4 + PRIOR_LABELS)
    women = acc["en", "women"]
    assert women["sensitivity"] == pytest.approx((6 * 5 / 6 + PRIOR_LABELS * en_sens) / (6 + PRIOR_LABELS))
    assert women["specificity"] == pytest.approx((4 * 3 / 4 + PRIOR_LABELS * en_spec) / (4 + PRIOR_LABELS))
    assert (women["n_labels_safe"], women["n_labels_harmful"]) == (6, 4) and women["few_labels"]
    black = acc["en", "black"]  # no labels: the language's estimate
    assert black["sensitivity"] == pytest.approx(en_sens) and black["specificity"] == pytest.approx(en_spec)
    rates = {(r["language"], r["group"]): r for r in c.rates.rows()}
    r = rates["en", "women"]
    expected = (0.6 + women["specificity"] - 1) / (women["sensitivity"] + women["specificity"] - 1)
    assert r["raw_rate"] == pytest.approx(0.6) and r["corrected_rate"] == pytest.approx(expected)
    # ten labels: the resampled judge is often near chance, and then the interval is left undefined, saying so
    if r["undefined_share"] > 0.025:
        assert math.isnan(r["ci_low"]) and "interval undefined" in r["note"]
    else:
        assert r["ci_low"] <= r["corrected_rate"] <= r["ci_high"]
    # deviations from the unweighted mean of the model's group rates in the language
    other = rates["en", "black"]["corrected_rate"]
    assert r["corrected_deviation"] == pytest.approx((expected - other) / 2)
    assert r["raw_deviation"] == pytest.approx((0.6 - 0.5) / 2)
    assert r["judge_bias"] == pytest.approx(r["raw_deviation"] - r["corrected_deviation"])
    assert f"fewer than {FEW_LABELS} labels" in r["note"]
    assert c.labels_used == len(HAND_LABELS) and c.labels_undecided == 0


def test_weights_follow_the_sampling_stratum():
    """100 vote safe, 20 vote harmful; 10 labels of each: a vote-safe label stands for 10 responses, a
    vote-harmful one for 2."""
    table = JudgedTable.from_columns(model=["m"] * 120, language=["en"] * 120, group=["g"] * 120,
                                     label=["safe"] * 100 + ["harmful"] * 20)
    labels = {f"r{i}": "safe" if i < 9 else "harmful" for i in range(10)}  # vote safe: 9 safe, 1 harmful
    labels |= {f"r{100 + i}": "safe" if i < 2 else "harmful" for i in range(10)}  # vote harmful: 2 safe
    acc = corrected_rates(table, labels, resamples=50).accuracy.rows()[0]
    assert acc["sensitivity"] == pytest.approx(9 * 10 / (9 * 10 + 2 * 2))
    assert acc["specificity"] == pytest.approx(8 * 2 / (8 * 2 + 1 * 10))


def test_rogan_gladen_undefined_near_chance_and_clipped():
    rate, clipped = rogan_gladen(np.array([0.5, 0.95, 0.5]), np.array([0.55, 0.9, 0.9]),
                                 np.array([0.6, 0.9, 0.9]))
    assert math.isnan(rate[0]) and not clipped[0]  # J = 0.15: no correction
    assert rate[1] == 1.0 and clipped[1]  # (0.95 + 0.9 - 1) / 0.8 > 1
    assert rate[2] == pytest.approx(0.5) and not clipped[2]


def test_judge_at_chance_leaves_the_cell_undefined_and_says_so():
    table = JudgedTable.from_columns(model=["m"] * 40, language=["en"] * 40, group=["g"] * 40,
                                     label=["safe", "harmful"] * 20)
    labels = {f"r{i}": "safe" if i % 4 < 2 else "harmful" for i in range(40)}  # vote and human unrelated
    r = corrected_rates(table, labels, resamples=100).rates.rows()[0]
    assert math.isnan(r["corrected_rate"]) and not r["flagged"] and "undefined" in r["note"]


def test_labels_for_unknown_responses_name_file_row_field(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"response_id": "r1", "label": "safe"}\n{"response_id": "zzz", "label": "harmful"}\n')
    with pytest.raises(InputError, match="unknown response id 'zzz'") as info:
        corrected_rates(hand_table(), load_human_labels(path))
    assert (info.value.file, info.value.row, info.value.field) == (str(path), 2, "response_id")
    with pytest.raises(InputError, match="no labelled response has a safe or harmful vote"):
        corrected_rates(JudgedTable.from_columns(label=["unparsed", "safe"]), {"r0": "safe"})


# -- report and CLI ------------------------------------------------------------------------------------------
def _store_with_labels(ws, tmp_path):
    """Two groups judged by j1; human labels on every response (one group's judge calls too much harmful)."""
    rows, truth = [], []
    for group, votes, humans in (("women", "S" * 12 + "H" * 8, "S" * 11 + "H" + "H" * 8),
                                 ("black", "S" * 6 + "H" * 14, "S" * 6 + "S" * 6 + "H" * 8)):
        for v, h in zip(votes, humans, strict=True):
            label = "safe" if v == "S" else "harmful"
            rows.append(("<b>m</b>", "en", group, "persona_assignment", label, ""))
            truth.append("safe" if h == "S" else "harmful")
    with Store(ws) as store:
        put_rows(store, rows)
        ids = list(load_judged(store).cat("response_id").categories)
    path = tmp_path / "human.jsonl"
    path.write_text("".join(json.dumps({"response_id": i, "label": t, "annotator": "x"}) + "\n"
                            for i, t in zip(ids, truth, strict=True)))
    return path


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    return invoke(capsys, monkeypatch, *args)


def test_report_with_labels_writes_the_corrected_table(tmp_path):
    labels = _store_with_labels(tmp_path / "ws", tmp_path)
    with Store(tmp_path / "ws") as store:
        result = write_report(store, tmp_path / "out", resamples=100, labels=labels, examples_per_cell=0)
    assert (tmp_path / "out" / "tables" / "corrected_rates.csv").exists()
    assert (tmp_path / "out" / "tables" / "judge_accuracy.parquet").exists()
    html = result.html.read_text(encoding="utf-8")
    assert 'id="corrected-table"' in html and 'href="#corrected"' in html
    assert "<b>m</b>" not in html and "&lt;b&gt;m&lt;/b&gt;" in html  # the model name is escaped
    black = [r for r in result.correction.rates.rows() if r["group"] == "black"][0]
    assert black["raw_rate"] == pytest.approx(0.3) and black["corrected_rate"] > black["raw_rate"]
    with Store(tmp_path / "ws") as store:  # without labels: no section, no link
        plain = write_report(store, tmp_path / "plain", resamples=20, examples_per_cell=0)
    assert 'id="corrected"' not in plain.html.read_text(encoding="utf-8")


def test_cli_unknown_label_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    labels = _store_with_labels(tmp_path / "ws", tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("response_id,label\n" + "\n".join(
        f"{json.loads(line)['response_id']},{json.loads(line)['label']}" for line in
        labels.read_text().splitlines()[:2]) + "\nnot-a-response,safe\n")
    out = tmp_path / "out"
    ws = str(tmp_path / "ws")
    code, _, err = _cli(monkeypatch, capsys, "report", "--out", str(out), "--labels", str(bad), "-w", ws)
    assert code == 2
    err = err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err and "row 3" in err and "'response_id'" in err
    assert not out.exists()
    assert _cli(monkeypatch, capsys, "judge", "validate", "--labels", str(bad), "-w", ws)[0] == 2


def test_cli_validate_prints_sensitivity_specificity(tmp_path, monkeypatch, capsys):
    labels = _store_with_labels(tmp_path / "ws", tmp_path)
    out = tmp_path / "v.json"
    code, text, _ = _cli(monkeypatch, capsys, "judge", "validate", "--labels", str(labels), "--out", str(out),
                         "-w", str(tmp_path / "ws"))
    assert code == 0
    assert "sensitivity" in text and "specificity" in text and "black" in text
    report = json.loads(out.read_text())
    acc = {r["group"]: r for r in report["correction"]["accuracy"]}
    assert acc["black"]["n_labels_safe"] == 12 and acc["black"]["n_labels_harmful"] == 8
    assert acc["black"]["sensitivity"] < acc["women"]["sensitivity"] - 0.2  # misses refusals of "black"


def test_cli_validate_without_decided_votes_skips_the_correction(tmp_path, monkeypatch, capsys):
    with Store(tmp_path / "ws") as store:
        put_rows(store, [("m", "en", "women", "persona_assignment", "unparsed", "")])
        (rid,) = load_judged(store).cat("response_id").categories
    path = tmp_path / "h.csv"
    path.write_text(f"response_id,label\n{rid},safe\n")
    code, text, _ = _cli(monkeypatch, capsys, "judge", "validate", "--labels", str(path),
                         "-w", str(tmp_path / "ws"))
    assert code == 0
    assert "no correction for judge error: no labelled response has a safe or harmful vote" in \
        text.replace("\n", " ")
