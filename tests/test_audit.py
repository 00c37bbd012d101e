"""The audit chain: presets and config layers, a full run on scripted models, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mijabench.audit import make_config, preset, run_audit, stratified_sample
from mijabench.errors import MijaError
from mijabench.sources import demo_seeds
from mijabench.store import Store

MIJABENCH = [sys.executable, "-m", "mijabench.cli.main"]


def test_presets_load_and_layers_merge():
    demo = make_config(preset("demo"))
    assert demo.demo and demo.rewriter == "template" and demo.judges == ["rules:refusal-v1"]
    names = [c.name for c in demo.model_configs()]
    assert names == ["smollm2-135m", "smollm2-135m+safety-prompt"]
    settings = [c.settings for c in demo.model_configs()]
    assert settings[0].system_prompt is None and "stereotypes" in settings[1].system_prompt
    merged = make_config(preset("demo"), {"models": ["scripted:x"], "settings": {"max_tokens": 7},
                                          "report": {"resamples": 50}})
    assert [c.settings.max_tokens for c in merged.model_configs()] == [7]
    assert merged.report["resamples"] == 50 and merged.report["examples_per_cell"] == 2
    assert make_config(preset("paper")).prompts_from == "AKCIT/mijabench"
    assert len(make_config(preset("paper")).judges) == 3


def test_bad_configs_are_one_line_errors():
    with pytest.raises(MijaError, match="unknown field"):
        make_config({"modles": []})
    with pytest.raises(MijaError, match="no target model"):
        make_config(preset("quick")).model_configs()
    with pytest.raises(MijaError, match="unknown preset"):
        preset("nope")
    with pytest.raises(MijaError, match="unknown setting"):
        make_config({"models": ["scripted:a"], "settings": {"temprature": 1}}).model_configs()


def test_stratified_sample_is_balanced_and_seeded(tmp_path):
    with Store(tmp_path / "ws") as store:
        from mijabench.bench import build_benchmark, builtin_scenarios
        build_benchmark(store, demo_seeds(), builtin_scenarios(), "template", bench="b", counterfactual=True)
        items = store.items("b")
    sample = stratified_sample(items, 2, seed=1)
    cells = {}
    for item in sample:
        cells[(item.language, item.group, item.strategy)] = cells.get((item.language, item.group,
                                                                        item.strategy), 0) + 1
    assert cells and max(cells.values()) <= 2
    assert [i.id for i in sample] == [i.id for i in stratified_sample(items, 2, seed=1)]
    assert [i.id for i in sample] != [i.id for i in stratified_sample(items, 2, seed=2)]


def _scripted_config(**extra):
    return make_config(preset("demo"), {
        "demo": False,
        "models": [{"model": "scripted:complier", "name": "complier",
                    "options": {"reply": "Sure, here it is."}},
                   {"model": "scripted:refuser", "name": "refuser",
                    "options": {"refuse_on": ["women", "mulheres", "elderly", "idosos"]}}],
        "report": {"resamples": 100}, **extra})


def test_audit_runs_the_chain_and_resumes_with_no_work(tmp_path):
    with Store(tmp_path / "ws") as store:
        first = run_audit(store, _scripted_config(), out=tmp_path / "report", progress=False)
        assert first.items == len(store.items("demo")) > 100
        assert first.generated == 2 * first.items and first.judged == 2 * first.items
        assert first.report_html.is_file()
        html = first.report_html.read_text(encoding="utf-8")
        assert 'id="heatmap-en"' in html and 'id="heatmap-pt"' in html
        # The refusing model refuses exactly the prompts that name its chosen groups, so the analysis must
        # show a perfect defense rate only where the prompt mentions them.
        labels = dict(store.query(
            "SELECT r.model || ':' || i.group_id, AVG(v.label = 'safe') FROM verdicts v "
            "JOIN responses r ON r.id = v.response_id JOIN items i ON i.id = r.item_id "
            "WHERE r.model = 'complier' GROUP BY 1"))
        assert set(labels.values()) == {0.0}
        counts = store.counts()
        second = run_audit(store, _scripted_config(), out=tmp_path / "report", progress=False)
        assert second.generated == 0 and second.judged == 0
        assert store.counts()["responses"] == counts["responses"] == 2 * first.items
        assert store.counts()["verdicts"] == counts["verdicts"]


def test_audit_cli_demo_flags_and_exit_codes(tmp_path):
    env = {**os.environ, "MIJABENCH_WORKSPACE": str(tmp_path / "ws")}
    bad = subprocess.run([*MIJABENCH, "audit", "--model", "nosuch:model"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown model scheme" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "ws" / "mijabench.sqlite").exists() or \
        Store(tmp_path / "ws").counts()["responses"] == 0


def test_killed_audit_resumes_to_exactly_one_response_per_item(tmp_path):
    """SIGKILL in the middle of the generate stage; the same command then finishes with no duplicates."""
    model_file = tmp_path / "slow.yaml"
    model_file.write_text(yaml.safe_dump({"model": "scripted:slow", "name": "slow",
                                          "options": {"latency_s": 0.05}, "concurrency": 4}))
    env = {**os.environ, "MIJABENCH_WORKSPACE": str(tmp_path / "ws")}
    command = [*MIJABENCH, "audit", "--model", str(model_file), "--out", str(tmp_path / "report")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "ws" / "mijabench.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if db.exists():
            try:
                with Store(tmp_path / "ws") as store:
                    if store.counts()["responses"] >= 20:
                        break
            except Exception:  # the database may be mid-creation
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(tmp_path / "ws") as store:
        partial = store.counts()["responses"]
        items = len(store.items("demo"))
    assert 0 < partial < items
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Store(tmp_path / "ws") as store:
        rows = store.query("SELECT item_id, COUNT(*) FROM responses GROUP BY item_id")
        assert len(rows) == items and {n for _, n in rows} == {1}
        assert store.counts()["verdicts"] == items
    assert Path(tmp_path / "report" / "report.html").is_file()


def test_quick_preset_offline_and_with_a_local_benchmark_file(tmp_path):
    env = {**os.environ, "MIJABENCH_WORKSPACE": str(tmp_path / "ws"), "HF_HUB_OFFLINE": "1"}
    offline = subprocess.run([*MIJABENCH, "audit", "--preset", "quick", "--model", "scripted:x"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert "AKCIT/mijabench" in offline.stderr and "--prompts-from FILE" in offline.stderr
    # A benchmark exported from another workspace stands in for the hub copy.
    with Store(tmp_path / "other") as other:
        from mijabench.bench import build_benchmark, builtin_scenarios
        build_benchmark(other, demo_seeds(), builtin_scenarios(), "template", bench="b", counterfactual=True)
        from mijabench.store import export_table
        bench_file = export_table(other, "items", tmp_path / "items.jsonl", "jsonl")
        total = len(other.items("b"))
    local = subprocess.run([*MIJABENCH, "audit", "--preset", "quick", "--model", "scripted:x",
                            "--prompts-from", str(bench_file), "--sample-per-cell", "1",
                            "--out", str(tmp_path / "report")], env=env, capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr
    with Store(tmp_path / "ws") as store:
        assert len(store.items("mijabench")) == total
        sampled = store.items("mijabench-sample1")
        cells = {(i.language, i.group, i.strategy) for i in store.items("mijabench")}
        assert len(sampled) == len(cells) < total
        assert store.counts()["responses"] == len(sampled)
