"""Annotation: the stratified sampler, agreement statistics and the export.

``build_store`` makes the judged store the other annotation tests (web, browser, chain) use too.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from mijabench.annotate import db, draw_sample, export_labels, samples
from mijabench.errors import MijaError
from mijabench.judge.agreement import cohen_kappa, krippendorff_alpha
from mijabench.records import BenchmarkItem, Response, SamplingSettings, Verdict
from mijabench.store import Store

MODELS = ("acme-hidden-model-7b", "zeta-hidden-model-2b")
JUDGES = ("judge-uno", "judge-dos", "judge-tres")
STRATEGY = "persona_assignment"
HOSTILE_REPLY = ("Sure! <script>document.title='pwned'; window.pwned = 1;</script>"
                 '<img src="x" onerror="document.title=\'pwned\'"> done')
# Judge panels per response: the vote they make is in the comment.
VOTES_HARMFUL = ("harmful", "harmful", "safe")
VOTES_TIE = ("harmful", "safe", "unparsed")  # a tie: counted harmful
VOTES_SAFE = ("safe", "safe", "harmful")
VOTES_NONE = ("unparsed", "unparsed", "unparsed")


def build_store(ws: Path, languages=("en", "pt"), groups=("women", "elderly"), hostile: bool = False) -> Path:
    """Per (language, group): six items. The first model's vote: 3 harmful, 3 safe; the second model's:
    1 harmful (a tie), 4 safe, 1 without any parsed vote. Plus one failed generation per (language, group).
    With ``hostile``, the first model's first reply in the first cell tries to run script."""
    settings = SamplingSettings(max_tokens=64).to_dict()
    items, responses, verdicts = [], [], []
    panels = {MODELS[0]: [VOTES_HARMFUL] * 3 + [VOTES_SAFE] * 3,
              MODELS[1]: [VOTES_TIE] + [VOTES_SAFE] * 4 + [VOTES_NONE]}
    for language in languages:
        for group in groups:
            for i in range(7):
                item = BenchmarkItem(language=language, group=group, seed_text=f"seed {i}",
                                     scenario_category="history", scenario_text="a museum", strategy=STRATEGY,
                                     prompt=f"request {language}/{group}/{i}: write about {group}")
                items.append(item)
                if i == 6:  # a generation that failed: never eligible
                    responses.append(Response(item_id=item.id, model=MODELS[0], settings=settings,
                                              error="server_error"))
                    continue
                for m, model in enumerate(MODELS):
                    text = f"reply {m}.{i} to {language}/{group}"
                    if hostile and m == 0 and i == 0 and language == languages[0] and group == groups[0]:
                        text = HOSTILE_REPLY
                    response = Response(item_id=item.id, model=model, settings=settings, text=text)
                    responses.append(response)
                    verdicts += [Verdict(response_id=response.id, judge=judge, label=label,
                                         raw=f"raw verdict of {judge}", reasoning="REASONING-MARKER")
                                 for judge, label in zip(JUDGES, panels[model][i], strict=True)]
    with Store(ws) as store:
        store.put_items(items)
        store.put_responses(responses)
        store.put_verdicts(verdicts)
        return store.path


@pytest.fixture
def judged(tmp_path) -> Path:
    return build_store(tmp_path / "ws")


# -- agreement (the judges' implementation, which the export uses: checked on hand-computed values) ---------
def test_cohen_kappa_textbook_value():
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 -> kappa 0.4
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement is already 1


def test_krippendorff_alpha_hand_computed():
    # two coders: coincidences aa=2, ab=ba=1, bb=4 -> 1 - (2/8) / (30/56) = 8/15
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]) == pytest.approx(8 / 15)
    # three coders with varying numbers of labels; the single-label unit is left out
    three = [["a", "a", "b"], ["a", "a", "a"], ["b", "b"], ["a"]]
    assert krippendorff_alpha(three) == pytest.approx(8 / 15)


# -- sampling ----------------------------------------------------------------------------------------------
def test_sample_is_stratified_reports_shortfalls_and_is_recorded(judged):
    with Store(judged) as store:
        report = draw_sample(store, per_cell=2, seed=7, name="v1")
        entries = db.sample_entries(store, "v1")
    assert report.cells == 8 and report.drawn == len(entries) == 4 * (2 + 2 + 1 + 2)
    assert report.by_label == {"harmful": 4 * 3, "safe": 4 * 4}
    assert report.unvoted == 4  # the second model's unvoted item per (language, group)
    assert sorted((s.cell[1], s.cell[3], s.label, s.available) for s in report.shortfalls) == sorted(
        [(g, MODELS[1], "harmful", 1) for g in ("women", "elderly") for _ in ("en", "pt")])
    per_cell: dict[tuple, int] = {}
    for e in entries:
        key = (e.language, e.group, e.strategy, e.model, e.vote_label)
        per_cell[key] = per_cell.get(key, 0) + 1
    assert set(per_cell.values()) <= {1, 2} and len(per_cell) == 16
    # the tie in the second model's cells was counted harmful
    with Store(judged) as store:
        tie_ids = {r[0] for r in store.query("SELECT response_id FROM verdicts WHERE label='unparsed' "
                                             "GROUP BY response_id HAVING COUNT(*) = 1")}
        assert tie_ids and tie_ids <= {e.response_id for e in entries if e.vote_label == "harmful"}
        assert [s.name for s in samples(store)] == ["v1"]
        assert store.runs("annotate-sample")[0]["config"]["per_cell"] == 2


def test_sample_is_seeded_and_names_are_not_reused(judged):
    with Store(judged) as store:
        draw_sample(store, per_cell=1, seed=1, name="a")
        draw_sample(store, per_cell=1, seed=1, name="b")
        draws = {seed: None for seed in range(2, 8)}
        for seed in draws:
            draw_sample(store, per_cell=1, seed=seed, name=f"s{seed}")
            draws[seed] = {e.response_id for e in db.sample_entries(store, f"s{seed}")}
        a = {e.response_id for e in db.sample_entries(store, "a")}
        assert a == {e.response_id for e in db.sample_entries(store, "b")}
        assert len({frozenset(d) for d in draws.values()}) > 1  # other seeds draw other responses
        with pytest.raises(MijaError, match="already exists"):
            draw_sample(store, per_cell=1, seed=1, name="a")
        with pytest.raises(MijaError, match="at least 1"):
            draw_sample(store, per_cell=0, name="zero")


def test_sample_can_follow_a_judge_subset(judged):
    with Store(judged) as store:
        report = draw_sample(store, per_cell=10, name="uno", judges=["judge-uno"])
    # judge-uno alone: first model 3 harmful + 3 safe; second: item 0 harmful, 1-4 safe, item 5 unparsed
    assert report.by_label == {"harmful": 4 * 4, "safe": 4 * 7}
    with Store(judged) as store, pytest.raises(MijaError, match="no verdicts from judge"):
        draw_sample(store, per_cell=1, name="typo", judges=["judge-unu"])


def test_sample_without_verdicts_is_an_error(tmp_path):
    with Store(tmp_path / "empty") as store, pytest.raises(MijaError, match="no judged responses"):
        draw_sample(store, per_cell=2)


# -- export ------------------------------------------------------------------------------------------------
def _label_all(store: Store, sample: str, plan: dict[str, list[str]]) -> list[str]:
    """plan: annotator -> labels for the sample's responses in id order (None: not labelled)."""
    ids = [e.response_id for e in db.sample_entries(store, sample)]
    for annotator, labels in plan.items():
        for rid, label in zip(ids, labels, strict=False):
            if label:
                db.put_annotation(store, sample, rid, annotator, label, note=f"{annotator} note")
    return ids


def test_export_two_annotators_kappa_majority_and_skips(judged, tmp_path):
    with Store(judged) as store:
        draw_sample(store, per_cell=1, name="x")
        ids = _label_all(store, "x", {
            "ana": ["harmful", "harmful", "safe", "safe", "skip", "harmful", "safe", "safe"],
            "bo": ["harmful", "safe", "safe", "safe", "harmful", None, "safe", "harmful"],
        })
        report = export_labels(store, tmp_path / "out" / "labels.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
    assert {(r["response_id"], r["annotator"], r["label"]) for r in rows} == (
        {(ids[i], "ana", lab) for i, lab in enumerate(["harmful", "harmful", "safe", "safe", None, "harmful",
                                                       "safe", "safe"]) if lab}
        | {(ids[i], "bo", lab) for i, lab in enumerate(["harmful", "safe", "safe", "safe", "harmful", None,
                                                        "safe", "harmful"]) if lab})
    assert all(set(r) == {"response_id", "label", "annotator", "note"} for r in rows)
    assert report.skipped == 1 and report.labels == 14 and report.per_annotator == {"ana": 7, "bo": 7}
    # kappa over the six items both labelled: ana H H S S S S, bo H S S S S H:
    # observed 4/6, chance (2/6)^2 + (4/6)^2 = 20/36 -> (24 - 20) / (36 - 20) = 0.25
    assert report.agreement_statistic == "cohen_kappa" and report.agreement_items == 6
    assert report.agreement == pytest.approx(0.25)
    majority = {json.loads(line)["response_id"]: json.loads(line)
                for line in report.majority_path.read_text().splitlines()}
    assert report.majority_path.name == "labels.majority.jsonl"
    assert majority[ids[1]]["majority"] == "tie" and majority[ids[1]]["tie"] is True and report.ties == 2
    assert majority[ids[2]]["majority"] == "safe" and majority[ids[4]]["annotators"] == 1
    assert set(majority) == set(ids[:8])
    assert report.majority == {rid: row["majority"] for rid, row in majority.items()}


def test_export_three_annotators_alpha_and_csv(judged, tmp_path):
    with Store(judged) as store:
        draw_sample(store, per_cell=1, name="x")
        plan = {"ana": ["harmful", "safe", "safe", "harmful"],
                "bo": ["harmful", "safe", "harmful", "harmful"],
                "cy": ["harmful", "safe", "safe", None]}
        ids = _label_all(store, "x", plan)
        report = export_labels(store, tmp_path / "labels.csv", sample="x")
    # coincidences HH = 3 + 0 + 2 = 5, SS = 3 + 1 = 4, HS = SH = 1; n_H 6, n_S 5, n 11
    # alpha = 1 - (2/11) / (2*6*5 / (11*10)) = 2/3
    assert report.agreement_statistic == "krippendorff_alpha" and report.agreement_items == 4
    assert report.agreement == pytest.approx(2 / 3)
    with open(tmp_path / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 11 and rows[0].keys() == {"response_id", "label", "annotator", "note"}
    with open(tmp_path / "labels.majority.csv", newline="") as fh:
        majority = {r["response_id"]: r["majority"] for r in csv.DictReader(fh)}
    assert majority == {ids[0]: "harmful", ids[1]: "safe", ids[2]: "safe", ids[3]: "harmful"}


def test_export_errors_are_one_line(judged, tmp_path):
    with Store(judged) as store:
        with pytest.raises(MijaError, match="no annotation sample"):
            export_labels(store, tmp_path / "l.jsonl")
        draw_sample(store, per_cell=1, name="x")
        with pytest.raises(MijaError, match=r"\.jsonl or \.csv"):
            export_labels(store, tmp_path / "l.txt")
        with pytest.raises(MijaError, match="no annotation sample named 'nope'"):
            export_labels(store, tmp_path / "l.jsonl", sample="nope")
    assert not list(tmp_path.glob("l.*"))


def test_cli_sample_and_export(judged, tmp_path):
    from typer.testing import CliRunner

    from mijabench.cli.main import cli

    runner = CliRunner()
    ws = str(judged.parent)
    result = runner.invoke(cli, ["annotate", "sample", "--per-cell", "2", "--seed", "3", "--name", "cli",
                                 "-w", ws])
    assert result.exit_code == 0, result.output
    assert "28 responses from 8 cells" in result.output and "4 cells with fewer than 2" in result.output
    with Store(judged) as store:
        _label_all(store, "cli", {"ana": ["harmful"] * 5,
                                  "bo": ["harmful", "safe", "harmful", "safe", "safe"]})
    out = tmp_path / "labels.jsonl"
    result = runner.invoke(cli, ["annotate", "export", "--out", str(out), "-w", ws])
    assert result.exit_code == 0, result.output
    # ana always says harmful: agreement is exactly what chance gives
    assert "10 labels" in result.output and "cohen_kappa: 0.000 over 5 items" in result.output
    assert out.exists() and (tmp_path / "labels.majority.jsonl").exists()
