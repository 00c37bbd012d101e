"""MiJaBench in Inspect AI: the task, its entry point, its scorers, and Inspect logs into `mijabench import`.

The equivalence test sends the same items to the same deterministic models (two scripted backends, called
by `mijabench run` and `judge` directly and by Inspect through its ``mockllm`` provider) and asserts that
the report's tables are identical. Everything is offline; Inspect writes its logs under tmp_path only.
Evals are few (two) because each costs Inspect's start-up; the rest builds tasks without running them.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("inspect_ai")

from cli_inproc import invoke  # noqa: E402
from mijabench.backends.base import GenerationRequest  # noqa: E402
from mijabench.backends.registry import create_backend, parse_model  # noqa: E402
from mijabench.records import BenchmarkItem  # noqa: E402
from mijabench.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("women", "black", "jewish", "muslim")
STRATEGIES = ("persona_assignment", "chain_of_thought")
# The models both sides use: a target that refuses some prompts, answers one with an empty reply and one
# with text the judge cannot classify; a judge that calls refusals safe, the rest harmful, and answers the
# unclassifiable reply with no verdict at all (unparsed: never counted safe).
TARGET = {"model": "scripted:target", "name": "scripted/target",
          "options": {"refuse_on": ["prompt 1.", "prompt 6.", "prompt 12."],
                      "replies": {"prompt 5.": "Well, hmm.", "prompt 9.": ""}}}
JUDGE = {"model": "scripted:judge", "name": "scripted/judge",
         "options": {"reply": '{"reasoning": "it complied", "class": "dangerous"}',
                     "replies": {"can't help": '{"reasoning": "it refused", "class": "safe"}',
                                 "Well, hmm.": "I cannot decide on this one."}}}


def items() -> list[BenchmarkItem]:
    """16 items, English and Portuguese, four groups, two strategies; mild placeholder text."""
    return [BenchmarkItem(language=("en", "pt")[i % 2], group=GROUPS[i % 4], seed_text=f"seed {i}",
                          scenario_category="history", scenario_text="a market", strategy=STRATEGIES[i // 8],
                          prompt=f"prompt {i}.") for i in range(16)]


@pytest.fixture(autouse=True)
def _inspect_logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECT_LOG_DIR", str(tmp_path / "inspect-logs"))


def _model_file(folder: Path, spec: dict) -> Path:
    path = folder / f"{spec['model'].split(':')[1]}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _mock(spec_file: Path, name: str):
    """Inspect's mockllm, as ``name``, answering through the backend `mijabench run` uses for
    ``spec_file``."""
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    backend = create_backend(parse_model(str(spec_file)))

    async def answer(messages, tools, tool_choice, config):
        request = GenerationRequest(key=str(id(messages)),
                                    messages=[{"role": m.role, "content": m.text} for m in messages])
        reply = await backend.generate(request)
        output = ModelOutput.from_content("mockllm", reply.text)
        output.usage = ModelUsage(input_tokens=reply.prompt_tokens, output_tokens=reply.completion_tokens,
                                  total_tokens=reply.prompt_tokens + reply.completion_tokens)
        return output

    return get_model(name, custom_outputs=answer)


def _cells(text: str) -> list[list[object]]:
    """A CSV table's cells, numbers compared to 1e-9: a design effect summed over clusters in another order
    (the two models' responses are stored in another order) differs in the last digit."""
    def cell(value: str) -> object:
        try:
            return pytest.approx(float(value), rel=1e-9, abs=1e-12, nan_ok=True)
        except ValueError:
            return value
    return [[cell(v) for v in row] for row in csv.reader(io.StringIO(text))]


# A Monte Carlo p-value: its draws come from one stream shared by the models of a report, so two models with
# the same data get different draws. Every other column is a function of the data (and of the model's name).
MONTE_CARLO = {"p_all_equal"}


def _rows_of(table: str, model: str) -> list[list[object]]:
    """The rows of ``model`` in a per-model table, without the model column and Monte Carlo columns."""
    header, *rows = _cells(table)
    keep = [i for i, name in enumerate(header) if name != "model" and name not in MONTE_CARLO]
    at = header.index("model")
    return [[row[i] for i in keep] for row in rows if row[at] == model]


def test_the_same_items_through_mijabench_and_inspect_give_identical_tables(tmp_path, capsys, monkeypatch):
    """`mijabench run` + `judge` and `inspect eval` + `mijabench import` into one workspace: every per-model
    table of the report holds the same rows for both, `compare` finds no difference, `align export` takes
    both."""
    import inspect_ai

    from mijabench.integrations.inspect.task import mijabench

    ws, logs = tmp_path / "ws", tmp_path / "logs"
    target, judge = _model_file(tmp_path, TARGET), _model_file(tmp_path, JUDGE)
    with Store(ws) as store:
        store.put_items(items(), bench="b")
    # mijabench's own runner and judges
    code, _, err = invoke(capsys, monkeypatch, "run", "--bench", "b", "--model", str(target), "-w", str(ws))
    assert code == 0, err
    code, _, err = invoke(capsys, monkeypatch, "judge", "--model", str(judge), "--rules", "-w", str(ws))
    assert code == 0, err
    # the same benchmark from the same workspace in Inspect, with the same backends behind mockllm; the LLM
    # judge is bound to a model role
    [log] = inspect_ai.eval(mijabench(benchmark="b", workspace=str(ws), judges="rules,judge"),
                            model=_mock(target, "mockllm/target"),
                            model_roles={"judge": _mock(judge, "mockllm/judge")}, log_dir=str(logs),
                            display="none")
    assert log.status == "success" and len(log.samples) == 16
    by_prompt = {s.input: s for s in log.samples}
    unclear = by_prompt["prompt 5."].scores["llm_judges"]
    assert unclear.answer == "unparsed" and unclear.value != 1.0  # unscored, never safe
    assert by_prompt["prompt 1."].scores["llm_judges"].value == 1.0  # a refusal
    assert by_prompt["prompt 2."].scores["rule_judge"].value == 0.0  # compliance
    llm = next(s for s in log.results.scores if s.name == "llm_judges")
    assert llm.unscored_samples == 1 and llm.metrics["defense_rate"].value == pytest.approx(3 / 15)
    metadata = by_prompt["prompt 3."].metadata
    assert {k: metadata[k] for k in ("group", "language", "strategy", "scenario_category", "pair_id")} == \
        {"group": "muslim", "language": "pt", "strategy": "persona_assignment",
         "scenario_category": "history", "pair_id": ""}

    code, out, err = invoke(capsys, monkeypatch, "import", str(logs), "-w", str(ws))
    assert code == 0, err
    assert "could not be parsed" in err  # the unclassifiable reply's verdict, stored as unparsed
    with Store(ws) as store:
        verdicts = store.query("SELECT r.model, r.item_id, v.judge, v.label, v.fingerprint FROM verdicts v "
                               "JOIN responses r ON r.id = v.response_id ORDER BY 2, 3")
        def labels(model: str) -> list[tuple[str, bool, str]]:  # (item, rule judge?, label)
            return sorted((i, j.startswith("rules:"), label) for m, i, j, label, _ in verdicts if m == model)
        assert len(labels("scripted/target")) == 32 and labels("scripted/target") == labels("mockllm/target")
        # the rule judge is one judge on both sides; the LLM judge reached through Inspect is another
        prints = {(m, j): f for m, _, j, _, f in verdicts}
        assert prints["scripted/target", "rules:refusal-v1"] == prints["mockllm/target", "rules:refusal-v1"]
        [model] = [m for m in store.models() if m["name"] == "mockllm/target"]
        [record] = model["meta"]["inspect_logs"]
        assert record["log"] == str(Path(log.location)) and record["model"] == "mockllm/target"
        assert record["generate_config"] == {"max_tokens": 2048, "temperature": 0.0, "seed": 0}
        assert store.query("SELECT DISTINCT settings FROM responses WHERE model = 'mockllm/target'") == \
            [('{"max_tokens": 2048, "seed": 0, "system_prompt": null, "temperature": 0.0, "thinking": false, '
              '"top_p": null}',)]
        assert store.query("SELECT model, COUNT(*) FROM responses WHERE blank = 1 GROUP BY 1 ORDER BY 1") == \
            [("mockllm/target", 1), ("scripted/target", 1)]
        before = store.counts()

    voters = ["--judge", "rules:refusal-v1", "--judge", "scripted/judge", "--judge", "mockllm/judge"]
    code, _, err = invoke(capsys, monkeypatch, "report", "-w", str(ws), *voters, "--out", str(tmp_path / "r"),
                          "--resamples", "40")
    assert code == 0, err
    tables = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "r" / "tables").glob("*.csv")}
    per_model = [name for name, text in tables.items() if "model" in text.splitlines()[0].split(",")]
    assert {"by_model.csv", "by_model_language.csv", "by_model_strategy.csv", "deviations.csv"} <= \
        set(per_model)
    for name in per_model:
        assert _rows_of(tables[name], "scripted/target") == _rows_of(tables[name], "mockllm/target"), name
    assert all(_rows_of(tables[name], "mockllm/target") for name in ("by_model.csv", "deviations.csv"))
    code, out, err = invoke(capsys, monkeypatch, "compare", "-w", str(ws), "--a", "scripted/target", "--b",
                            "mockllm/target", *voters, "--threshold", "0.01", "--resamples", "40")
    assert code == 0, out + err
    code, _, err = invoke(capsys, monkeypatch, "align", "export", "-w", str(ws), "--out", str(tmp_path / "c"))
    assert code == 0, err
    import pyarrow.parquet as pq
    exported = pq.read_table(tmp_path / "c" / "corpus.parquet").to_pylist()
    assert sorted(r["model"] for r in exported).count("mockllm/target") == 16

    code, out, _ = invoke(capsys, monkeypatch, "import", str(logs), "-w", str(ws))
    assert code == 0 and "nothing new" in out
    with Store(ws) as store:
        assert store.counts() == before


def _foreign_log(folder: Path) -> Path:
    """A log of another task: metadata under other names, a scorer of its own that says safe/unsafe."""
    import inspect_ai
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.scorer import Score, scorer
    from inspect_ai.solver import generate

    @scorer(metrics=[])
    def refusal_classifier():
        async def score(state, target):
            return Score(value="safe" if "sorry" in state.output.completion.lower() else "unsafe")
        return score

    def reply(messages, tools, tool_choice, config):
        output = ModelOutput.from_content("mockllm", "Sorry, no." if "0" in messages[-1].text else "Sure.")
        output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return output

    samples = [Sample(input=f"request {i}", metadata={"target_group": g, "lang": "en", "attack": "chaining"})
               for i, g in enumerate(("women", "black", "women", "jewish"))]
    task = Task(dataset=MemoryDataset(samples), solver=generate(), scorer=refusal_classifier())
    [log] = inspect_ai.eval(task, model=get_model("mockllm/other", custom_outputs=reply), log_dir=str(folder),
                            log_format="json", display="none")
    return Path(log.location)


def test_a_log_of_another_task_names_what_is_missing_then_maps_with_columns(tmp_path, capsys, monkeypatch):
    log = _foreign_log(tmp_path / "logs")
    assert log.suffix == ".json"
    ws = tmp_path / "ws"
    code, out, err = invoke(capsys, monkeypatch, "import", str(log), "-w", str(ws))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(log) in err and "no column for the group, strategy, language" in err and "--columns" in err
    assert not ws.exists()  # checked before the first write: not even a workspace
    code, out, err = invoke(capsys, monkeypatch, "import", str(log), "-w", str(ws),
                            "-c", "group=target_group", "-c", "language=lang", "-c", "strategy=attack",
                            "-c", "judge:classifier=score.refusal_classifier")
    assert code == 0, err
    with Store(ws) as store:
        rows = store.query("SELECT i.group_id, i.prompt, v.judge, v.label FROM verdicts v JOIN responses r "
                           "ON r.id = v.response_id JOIN items i ON i.id = r.item_id ORDER BY i.prompt")
    assert rows == [("women", "request 0", "classifier", "safe"),
                    ("black", "request 1", "classifier", "harmful"),
                    ("women", "request 2", "classifier", "harmful"),
                    ("jewish", "request 3", "classifier", "harmful")]
    code, _, err = invoke(capsys, monkeypatch, "report", "-w", str(ws), "--out", str(tmp_path / "r"),
                          "--resamples", "20")
    assert code == 0, err
    assert "mockllm/other" in (tmp_path / "r" / "tables" / "by_model.csv").read_text(encoding="utf-8")

    # the same log, edited: a sample that failed is a failed response; several epochs are refused
    data = json.loads(log.read_text(encoding="utf-8"))
    data["samples"][1]["error"] = {"message": "rate limited", "traceback": "", "traceback_ansi": ""}
    failed = tmp_path / "failed" / log.name
    failed.parent.mkdir()
    failed.write_text(json.dumps(data), encoding="utf-8")
    mapping = ["-c", "group=target_group", "-c", "language=lang", "-c", "strategy=attack",
               "-c", "judge:classifier=score.refusal_classifier"]
    code, _, err = invoke(capsys, monkeypatch, "import", str(failed), "-w", str(tmp_path / "ws2"), *mapping)
    assert code == 0, err
    with Store(tmp_path / "ws2") as store:
        errors = store.query("SELECT error FROM responses WHERE error IS NOT NULL")
        judged = store.query("SELECT COUNT(*) FROM verdicts")
    assert errors == [("inspect: rate limited",)] and judged == [(3,)]

    # a mapped score is read as a corpus's judge column: a judge's JSON (a mapping) is parsed, a blank one
    # is no verdict
    scored = json.loads(log.read_text(encoding="utf-8"))
    scores = [s["scores"]["refusal_classifier"] for s in scored["samples"]]
    scores[0]["value"] = {"reasoning": "it complied", "class": "dangerous"}
    scores[2]["value"] = "  "
    mixed = tmp_path / "mixed" / log.name
    mixed.parent.mkdir()
    mixed.write_text(json.dumps(scored), encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, "import", str(mixed), "-w", str(tmp_path / "ws4"), *mapping)
    assert code == 0, err
    with Store(tmp_path / "ws4") as store:
        rows = store.query("SELECT i.prompt, v.label, v.reasoning FROM verdicts v JOIN responses r "
                           "ON r.id = v.response_id JOIN items i ON i.id = r.item_id ORDER BY i.prompt")
    assert rows == [("request 0", "harmful", "it complied"), ("request 1", "harmful", ""),
                    ("request 3", "harmful", "")]
    data["eval"]["config"]["epochs"] = 3
    failed.write_text(json.dumps(data), encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, "import", str(failed), "-w", str(tmp_path / "ws3"), *mapping)
    assert code == 2 and "3 epochs" in err and str(failed) in err


def _write(path: Path, rows: list[BenchmarkItem]) -> Path:
    path.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in rows), encoding="utf-8")
    return path


def test_task_parameters_select_language_groups_strategies_and_a_sample_per_cell(tmp_path):
    from inspect_ai._util.registry import registry_info

    from mijabench.integrations.inspect.task import mijabench

    bench = _write(tmp_path / "bench.jsonl", items() * 1)
    every = mijabench(benchmark=str(bench))
    assert len(every.dataset) == 16
    assert [registry_info(s).name for s in every.scorer] == ["mijabench/rule_judge"]  # the default judge
    chosen = mijabench(benchmark=str(bench), language="Português", groups="women,black",
                       strategies=["persona_assign"], judges="rules,openai/gpt-4o")
    metadata = [s.metadata for s in chosen.dataset]
    assert metadata and all(m["language"] == "pt" and m["group"] in ("women", "black")
                            and m["strategy"] == "persona_assignment" for m in metadata)
    assert {s.id for s in chosen.dataset} == {
        i.id for i in items() if i.language == "pt" and i.group in ("women", "black")
        and i.strategy == STRATEGIES[0]}
    assert [registry_info(s).name for s in chosen.scorer] == ["mijabench/rule_judge", "mijabench/llm_judges"]
    sampled = mijabench(benchmark=str(bench), per_cell=1, seed=3)
    cells = [(s.metadata["language"], s.metadata["group"], s.metadata["strategy"]) for s in sampled.dataset]
    assert len(cells) == len(set(cells)) == 8
    assert [s.id for s in mijabench(benchmark=str(bench), per_cell=1, seed=3).dataset] == \
        [s.id for s in sampled.dataset]
    assert sampled.config.temperature == 0.0 and sampled.config.max_tokens == 2048
    with pytest.raises(Exception, match="unknown group 'martians'"):
        mijabench(benchmark=str(bench), groups="martians")


def test_the_entry_point_registers_mijabench_slash_mijabench(tmp_path, monkeypatch):
    """What `inspect eval mijabench/mijabench` does: find the package's `inspect_ai` entry point, load it,
    look the task up. The entry point is read from pyproject.toml into a stand-in distribution, since the
    installed one may predate it."""
    import tomllib

    from inspect_ai._eval.loader import load_tasks
    from inspect_ai._util import entrypoints, registry

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["inspect_ai"]
    assert declared == {"mijabench": "mijabench.integrations.inspect._registry"}
    dist = tmp_path / "site" / "mijabench_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mijabench-probe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[inspect_ai]\nmijabench = " + declared["mijabench"] + "\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in ("mijabench.integrations.inspect._registry", "mijabench.integrations.inspect.task"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    key = registry.registry_key("task", "mijabench/mijabench")
    monkeypatch.delitem(registry._registry, key, raising=False)
    entrypoints.clear_entry_points_state()
    importlib.invalidate_caches()
    bench = _write(tmp_path / "bench.jsonl", items())
    [task] = load_tasks(["mijabench/mijabench"], {"benchmark": str(bench), "language": "en"})
    assert task.name == "mijabench/mijabench" and len(task.dataset) == 8


def test_a_json_file_that_is_not_an_inspect_log_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "results.json"
    bad.write_text('{"accuracy": 0.9}', encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, "import", str(bad), "-w", str(tmp_path / "ws"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(bad) in err and "not a readable Inspect log" in err
    assert not (tmp_path / "ws").exists()


def test_without_inspect_installed_a_log_import_says_which_extra_to_install(tmp_path, capsys, monkeypatch):
    log = tmp_path / "run.eval"
    log.write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "inspect_ai", None)  # `import inspect_ai` now fails as if absent
    monkeypatch.setitem(sys.modules, "inspect_ai.log", None)
    monkeypatch.delitem(sys.modules, "mijabench.integrations.inspect.logs", raising=False)
    monkeypatch.delattr(importlib.import_module("mijabench.integrations.inspect"), "logs", raising=False)
    code, _, err = invoke(capsys, monkeypatch, "import", str(log), "-w", str(tmp_path / "ws"))
    assert code == 2 and "pip install 'mijabench[inspect]'" in err


def test_only_the_integration_imports_inspect_ai_and_what_the_core_loads_of_it_does_not():
    """The core installs without inspect-ai: no module outside integrations/inspect imports it, and the
    modules of the integration that the core loads (its package and the log-file check) do not either."""
    import ast

    package = ROOT / "src" / "mijabench"
    integration = package / "integrations" / "inspect"
    loaded_by_core = {integration / "__init__.py", integration / "logfiles.py", integration / "items.py",
                      package / "integrations" / "__init__.py"}
    importers = set()
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "inspect_ai" not in text:  # parse only the candidates: parsing every module is slow
            continue
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "inspect_ai" or n.startswith("inspect_ai.") for n in names):
                importers.add(path)
    assert importers and all(integration in p.parents for p in importers)
    assert not importers & loaded_by_core


def test_inspect_eval_on_the_command_line_against_a_server_then_import(tmp_path, capsys, monkeypatch):
    """The command a user types, `inspect eval mijabench/mijabench --model openai-api/...`, against a real
    OpenAI-compatible server (the stub, over HTTP), then the log into `mijabench import`: every reply is the
    server's answer to its item's prompt, and each sample kept its group and its rule-judge verdict."""
    import os
    import subprocess

    from stub_server import StubServer, reply_for

    bench = _write(tmp_path / "bench.jsonl", items())
    inspect_cli = Path(sys.executable).with_name("inspect")
    logs = tmp_path / "logs"
    with StubServer() as server:
        env = {**os.environ, "STUB_BASE_URL": server.url, "STUB_API_KEY": "k", "INSPECT_LOG_DIR": str(logs)}
        done = subprocess.run([str(inspect_cli), "eval", "mijabench/mijabench", "--model",
                               "openai-api/stub/stub-model", "-T", f"benchmark={bench}", "-T", "language=pt",
                               "--display", "none"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ws = tmp_path / "ws"
    code, out, err = invoke(capsys, monkeypatch, "import", str(logs), "--workspace", str(ws))
    assert code == 0, out + err
    with Store(ws, create=False) as store:
        [bench_name] = list(store.benches())
        stored = {i.id: i for i in store.items(bench_name)}
        responses = list(store.responses())
        judged = {v.response_id: v.label for v in store.verdicts()}
    expected = {i.id: i for i in items() if i.language == "pt"}
    assert set(stored) == set(expected) and len(responses) == 8
    for r in responses:
        assert r.text == reply_for(expected[r.item_id].prompt)
        assert stored[r.item_id].group == expected[r.item_id].group
        assert judged[r.id] in ("safe", "harmful")
