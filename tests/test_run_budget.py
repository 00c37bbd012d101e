"""`mijabench run --target-ci/--budget`: the budgeted audit's stopping rule outside `audit`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_inproc import invoke, labels_from_votes
from mijabench.store import Store

PER_CELL = 200


@pytest.fixture
def bench(tmp_path):
    """Two groups; the refuser refuses prompts with "REFUSE" in them: 10% of one's, 50% of the other's."""
    rng = np.random.default_rng(1)
    rows = []
    for group, share in (("asian", 0.1), ("black", 0.5)):
        for i in range(PER_CELL):
            word = "REFUSE" if rng.random() < share else "answer"
            rows.append({"language": "en", "group": group, "seed_text": f"s{i}", "scenario_text": "t",
                         "scenario_category": "history", "strategy": "persona_assignment",
                         "prompt": f"{group} {i}: please {word} this"})
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model = tmp_path / "refuser.yaml"
    model.write_text("model: scripted:refuser\nname: refuser\noptions:\n  refuse_on: [REFUSE]\n",
                     encoding="utf-8")
    return path, model


def test_run_stops_each_cell_at_its_target_and_resumes_with_no_new_call(bench, tmp_path, capsys, monkeypatch):
    path, model = bench
    ws = tmp_path / "ws"
    args = ["run", "--bench", str(path), "--model", str(model), "--target-ci", "25", "--progress", "none",
            "--workspace", str(ws)]
    code, out, err = invoke(capsys, monkeypatch, *args)
    assert code == 0, err
    assert "saved" in out and "stopped by the budget" in out
    with Store(ws) as store:
        first = store.counts()
    assert 0 < first["responses"] < 2 * PER_CELL and first["verdicts"] == first["responses"]
    code, out, _ = invoke(capsys, monkeypatch, *args)
    with Store(ws) as store:
        assert code == 0 and store.counts()["responses"] == first["responses"]
        assert store.counts()["verdicts"] == first["verdicts"]
    # `report --labels` finds the budgeted audit (its staged box intervals: test_audit_budget.py); labels
    # saying the judge is no better than chance: one line, exit 2, no report written
    labels = tmp_path / "labels.jsonl"
    with Store(ws) as store:
        labels_from_votes(store, labels, flip=10_000)
    report = ["report", "--out", str(tmp_path / "r"), "--labels", str(labels), "--resamples", "50",
              "--workspace", str(ws)]
    code, _, err = invoke(capsys, monkeypatch, *report)
    assert code == 2 and "no better than chance" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r" / "report.html").exists()


@pytest.mark.parametrize("flags,message", [(["--target-ci", "0"], "target_ci must be above 0"),
                                           (["--target-ci", "-1"], "target_ci must be above 0"),
                                           (["--budget", "1"], "less than one call per cell (2 cells)")])
def test_bad_target_or_budget_is_one_line_exit_2_and_stores_nothing(bench, tmp_path, capsys, monkeypatch,
                                                                     flags, message):
    path, model = bench
    ws = tmp_path / "ws"
    code, _, err = invoke(capsys, monkeypatch, "run", "--bench", str(path), "--model", str(model), *flags,
                          "--progress", "none", "--workspace", str(ws))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    if (ws / "mijabench.sqlite").exists():
        with Store(ws) as store:
            assert store.counts()["items"] == 0 and store.counts()["responses"] == 0


def test_a_fatal_model_error_stops_the_looks(bench, tmp_path, capsys, monkeypatch):
    """A bad key stops a budgeted run at the look where it happens, as it stops a full run: the looks do not
    go on with every answer undecided and exit 0."""
    path, _ = bench
    model = tmp_path / "locked.yaml"
    model.write_text("model: scripted:locked\nname: locked\noptions:\n  fail_first: 1000\n  fail_kind: auth\n"
                     "  retryable: false\n", encoding="utf-8")
    code, out, err = invoke(capsys, monkeypatch, "run", "--bench", str(path), "--model", str(model),
                            "--target-ci", "25", "--progress", "none", "--workspace", str(tmp_path / "ws"))
    assert code == 2 and "model locked stopped" in err and "saved" not in out, out + err
