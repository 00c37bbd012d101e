"""A budgeted audit end to end on scripted models: fewer calls, the report's section, resume, bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from cli_inproc import labels_from_votes
from mijabench.audit import make_config, preset, run_audit
from mijabench.errors import InputError, MijaError
from mijabench.records import BenchmarkItem
from mijabench.store import Store

MIJABENCH = [sys.executable, "-m", "mijabench.cli.main"]
PER_CELL = 240


def _items() -> list[BenchmarkItem]:
    """Two groups of one language; the refuser refuses prompts with 'REFUSE' in them: 10% of group a's,
    50% of group b's."""
    rng = np.random.default_rng(0)
    out = []
    for group, share in (("a", 0.1), ("b", 0.5)):
        for i in range(PER_CELL):
            word = "REFUSE" if rng.random() < share else "answer"
            out.append(BenchmarkItem(language="en", group=group, seed_text=f"s{i}", scenario_category="x",
                                     scenario_text="t", strategy="persona_assignment",
                                     prompt=f"{group} {i}: please {word} this"))
    return out


def _config(**extra):
    return make_config(preset("demo"), {
        "demo": False, "bench": "syn", "prompts_from": "preloaded",
        "models": [{"model": "scripted:refuser", "name": "refuser", "options": {"refuse_on": ["REFUSE"]}}],
        "report": {"resamples": 50}, **extra})


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as s:
        s.put_items(_items(), bench="syn")
        yield s


def test_target_saves_calls_reports_and_resumes_with_no_new_call(store, tmp_path):
    first = run_audit(store, _config(target_ci=25.0), out=tmp_path / "report", progress=False)
    plan = first.budget.result
    responses = store.counts()["responses"]
    assert responses == plan.calls < 2 * PER_CELL
    assert np.all(plan.high - plan.low <= 0.25 + 1e-9)
    assert set(plan.status) <= {"target", "exhausted"}
    rows = {r["group"]: r for r in first.budget.rows()}
    assert rows["a"]["n"] < rows["b"]["n"]  # a cell near 10% needs fewer prompts than one near 50%
    html = first.report_html.read_text(encoding="utf-8")
    assert 'id="budget"' in html and "saved" in html and f"{plan.calls:,} of the full design" in html
    verdicts, runs = store.counts()["verdicts"], store.counts()["runs"]
    again = run_audit(store, _config(target_ci=25.0), out=tmp_path / "report", progress=False)
    assert store.counts()["responses"] == responses and store.counts()["verdicts"] == verdicts
    assert store.counts()["runs"] == runs  # the replay sends nothing: no generate or judge run recorded
    assert np.array_equal(again.budget.result.n, plan.n)
    # another seed draws other prompts
    other = run_audit(store, _config(target_ci=25.0, budget_seed=7), out=tmp_path / "r2", progress=False)
    assert store.counts()["responses"] > responses and other.budget.seed == 7


def test_budget_caps_calls_and_marks_the_cells_it_stopped(store, tmp_path):
    result = run_audit(store, _config(target_ci=5.0, budget=120), out=tmp_path / "report", progress=False)
    assert store.counts()["responses"] <= 120
    assert "budget" in set(result.budget.result.status)
    html = result.report_html.read_text(encoding="utf-8")
    assert "stopped by the budget before reaching the target" in html


def test_budget_under_one_call_per_cell_is_refused_before_any_call(store, tmp_path):
    with pytest.raises(InputError, match="one call per cell"):
        run_audit(store, _config(budget=1), out=tmp_path / "report", progress=False)
    assert store.counts()["responses"] == 0
    with pytest.raises(InputError, match="budget_by: unknown field 'colour'"):
        run_audit(store, _config(target_ci=5.0, budget_by=["colour"]), out=tmp_path / "r", progress=False)


@pytest.mark.parametrize("flags,message", [(["--target-ci", "0"], "target_ci must be above 0"),
                                           (["--target-ci", "-2"], "target_ci must be above 0")])
def test_cli_bad_target_is_one_line_exit_2(tmp_path, flags, message):
    env = {**os.environ, "MIJABENCH_WORKSPACE": str(tmp_path / "ws")}
    bad = subprocess.run([*MIJABENCH, "audit", "--preset", "budget", "--model", "scripted:x", *flags],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ws" / "mijabench.sqlite").exists()


def test_a_budget_stopped_audit_resumes_into_a_larger_one_without_redoing_calls(store, tmp_path):
    small = run_audit(store, _config(target_ci=20.0, budget=100), out=tmp_path / "r1", progress=False)
    assert store.counts()["responses"] == small.budget.result.calls <= 100
    bigger = run_audit(store, _config(target_ci=20.0), out=tmp_path / "r2", progress=False)
    # the same seed gives the same order, so the first run's prompts are a prefix of the second's
    assert store.counts()["responses"] == bigger.budget.result.calls
    assert np.all(bigger.budget.result.n >= small.budget.result.n)


def test_counterfactual_twins_are_drawn_as_families(tmp_path):
    items = []
    for i in range(150):
        word = "REFUSE" if i % 3 == 0 else "answer"
        for group in ("a", "b"):
            items.append(BenchmarkItem(language="en", group=group, seed_text=f"s{i}", scenario_category="x",
                                       scenario_text="t", strategy="persona_assignment",
                                       prompt=f"{group} {i}: please {word} this", pair_id=f"p{i}"))
    with Store(tmp_path / "ws") as store:
        store.put_items(items, bench="syn")
        result = run_audit(store, _config(target_ci=30.0, counterfactual=True), out=tmp_path / "r",
                           progress=False)
        drawn = store.query("SELECT i.pair_id, COUNT(*) FROM responses r JOIN items i ON i.id = r.item_id "
                            "GROUP BY i.pair_id")
    assert 0 < len(drawn) < 150 and {n for _, n in drawn} == {2}  # both twins of every drawn family
    assert result.budget.result.n[0] == result.budget.result.n[1]


def test_cli_budget_under_one_call_per_cell_stores_nothing(tmp_path):
    import json
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({
        "language": "en", "group": g, "seed_text": f"s{i}", "scenario_category": "history",
        "scenario_text": "t", "strategy": "persona_assignment", "prompt": f"{g} {i}"}) + "\n"
        for g in ("asian", "black") for i in range(5)), encoding="utf-8")
    env = {**os.environ, "MIJABENCH_WORKSPACE": str(tmp_path / "ws")}
    bad = subprocess.run([*MIJABENCH, "audit", "--preset", "budget", "--prompts-from", str(bench), "--model",
                          "scripted:x", "--budget", "1", "--progress", "none"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "less than one call per cell (2 cells)" in bad.stderr
    assert "Traceback" not in bad.stderr
    with Store(tmp_path / "ws") as store:
        assert store.counts()["items"] == 0 and store.counts()["responses"] == 0


def test_several_models_and_finer_cells(store, tmp_path):
    models = [{"model": "scripted:refuser", "name": "refuser", "options": {"refuse_on": ["REFUSE"]}},
              {"model": "scripted:complier", "name": "complier", "options": {"reply": "Sure, here it is."}}]
    result = run_audit(store, _config(models=models, target_ci=25.0, budget_by=["strategy"]),
                       out=tmp_path / "r", progress=False)
    rows = result.budget.rows()
    assert {r["model"] for r in rows} == {"refuser", "complier"} and len(rows) == 4
    assert all("strategy" in r for r in rows)
    complier = [r for r in rows if r["model"] == "complier"]
    assert all(r["rate"] == 0 and r["n"] < PER_CELL for r in complier)  # never refuses: cheap to pin down
    assert store.counts()["responses"] == result.budget.result.calls


def test_an_llm_judge_judges_each_look(store, tmp_path):
    from mijabench.backends.registry import model_from_dict
    judge = model_from_dict({"model": "scripted:judge", "name": "judge", "options": {
        "reply": '{"verdict": "safe"}', "replies": {"Sure, here": '{"verdict": "harmful"}'}}})
    models = [{"model": "scripted:refuser", "name": "refuser",
               "options": {"refuse_on": ["REFUSE"], "reply": "Sure, here it is."}}]
    result = run_audit(store, _config(models=models, judges=[judge], target_ci=25.0), out=tmp_path / "r",
                       progress=False)
    assert result.judges == ["judge"] and result.voters == ["judge"]
    assert store.counts()["verdicts"] == store.counts()["responses"] == result.budget.result.calls
    rows = {r["group"]: r for r in result.budget.rows()}
    assert rows["a"]["rate"] < rows["b"]["rate"]  # 10% against 50% refusals, as the judge sees them


def test_judge_error_correction_of_a_budgeted_audit(store, tmp_path):
    first = run_audit(store, _config(target_ci=25.0), out=tmp_path / "report", progress=False)
    labels = tmp_path / "labels.jsonl"
    labels_from_votes(store, labels)
    calls = store.counts()["responses"]
    # the audit accepts report.labels, its replay sends nothing new, and its report (like `report --labels`
    # on the workspace) gives the staged box intervals, not the bootstrap's
    again = run_audit(store, _config(target_ci=25.0, report={"resamples": 50, "labels": str(labels)}),
                      out=tmp_path / "r2", progress=False)
    assert store.counts()["responses"] == calls
    rates = {r["group"]: r for r in again.report.correction.rates.rows()}
    staged = {r["group"]: r for r in first.budget.rows()}
    for g in ("a", "b"):
        r = rates[g]
        assert "budgeted: staged box interval" in r["note"]
        assert r["ci_low"] <= r["corrected_rate"] <= r["ci_high"]
        # wider than the vote's own staged interval: the judge's accuracy is uncertain too
        assert r["ci_high"] - r["ci_low"] > staged[g]["high"] - staged[g]["low"]
        assert r["deviation_ci_low"] <= r["corrected_deviation"] <= r["deviation_ci_high"]
    html = again.report_html.read_text(encoding="utf-8")
    assert "stay valid under the stopping rule" in html


def test_budgeted_correction_refuses_a_stale_record_and_a_chance_level_judge(store, tmp_path):
    from mijabench.audit.budgeted import record_path
    from mijabench.report import write_report
    run_audit(store, _config(target_ci=25.0), out=tmp_path / "report", progress=False)
    labels = tmp_path / "labels.jsonl"
    # every other label flipped: the labels say the judge is no better than chance
    labels_from_votes(store, labels, flip=10_000)
    with pytest.raises(InputError, match="no better than chance"):
        write_report(store, tmp_path / "r2", labels=labels, resamples=50)
    assert not (tmp_path / "r2" / "report.html").exists()
    labels_from_votes(store, labels)
    record = record_path(store)
    import json
    data = json.loads(record.read_text(encoding="utf-8"))
    data["stage_s"][0][0] += 1  # the store no longer matches the record
    record.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match="rerun the budgeted audit"):
        write_report(store, tmp_path / "r2", labels=labels, resamples=50)
    data["complete"] = False  # an audit interrupted before its end
    record.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match="stopped before its end"):
        write_report(store, tmp_path / "r2", labels=labels, resamples=50)


@pytest.mark.parametrize("ray,match", [({"workers": 0}, "ray.workers"),
                                       ({"nodes": 2}, "unknown field 'nodes'"),
                                       ("auto", "ray must be a mapping"), ({"engine": "x"}, "ray.engine")],
                         ids=["workers", "unknown", "not-a-mapping", "engine"])
def test_a_bad_ray_field_is_one_line_before_any_work(ray, match):
    with pytest.raises(MijaError, match=match):
        _config(target_ci=25.0, ray=ray)
