"""The Python API: docs/python-api.md runs as written (every python block, in order, offline), and
``import mijabench`` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mijabench
from mijabench.api import RULE_JUDGE
from mijabench.judge import RULES_JUDGE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


def doc_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_documented_notebook_runs(tmp_path, monkeypatch, capsys):
    blocks = doc_blocks()
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIJABENCH_WORKSPACE", raising=False)
    namespace: dict = {"__name__": "notebook"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name}, block {number}", "exec"), namespace)  # the doc's own asserts run
    printed = capsys.readouterr().out
    # what the doc shows, checked from outside the blocks too
    assert "65 prompts from 65 seeds" in printed
    assert "FAIL black (en): defense rate dropped" in printed and "FAIL women (en)" in printed
    assert "unknown model scheme 'nosuchscheme'" in printed
    assert namespace["gate"].exit_code == 0 and namespace["reverse"].exit_code == 1
    assert (tmp_path / "notebook-report" / "report.html").is_file()
    assert (tmp_path / "notebook-workspace" / "mijabench.sqlite").is_file()
    with namespace["copy"].store() as copied, namespace["ws"].store() as original:
        assert sorted(r.id for r in copied.responses()) == sorted(r.id for r in original.responses())
    # the bad model string wrote nothing: still the two models of the notebook
    with namespace["ws"].store() as store:
        assert sorted(m["name"] for m in store.models()) == ["cautious", "scripted:complier"]


def test_the_api_names_and_a_light_import():
    assert set(mijabench.__all__) == set(mijabench._API) | {"__version__"}
    for name in mijabench._API:
        assert getattr(mijabench, name) is not None
    code = ("import sys, mijabench; heavy = [m for m in ('numpy', 'pyarrow', 'aiohttp', 'yaml', 'typer', "
            "'mijabench.store', 'mijabench.run') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_bad_input_is_one_error_and_no_workspace(tmp_path):
    ws = mijabench.Workspace(tmp_path / "ws")
    with pytest.raises(mijabench.InputError, match="nope.jsonl: no such file"):
        ws.build("b", seeds=tmp_path / "nope.jsonl")
    with pytest.raises(mijabench.MijaError, match="scenarios must be 'builtin' or 'store'"):
        ws.build("b", scenarios="elsewhere")
    with pytest.raises(mijabench.MijaError, match="needs a name"):
        ws.build(" ")
    with pytest.raises(mijabench.MijaError, match="no workspace at"):
        ws.run("b", "scripted:x")
    with pytest.raises(mijabench.MijaError, match="has no items"):
        ws.run("b", "scripted:x", items=[])
    assert not (tmp_path / "ws" / "mijabench.sqlite").exists()  # nothing was created by a failed call
    assert RULE_JUDGE == RULES_JUDGE  # the API's default judge is the rule judge


def test_settings_override_a_model_config_as_they_override_a_model_string():
    from mijabench.api import _model
    from mijabench.backends.registry import parse_model

    config = parse_model("scripted:x")
    given = {"temperature": 0.5, "max_tokens": None}
    assert _model(config, given) == _model("scripted:x", given) == parse_model("scripted:x", temperature=0.5)
    assert _model(config, given).settings.temperature == 0.5
    assert _model(config, {"max_tokens": None}) is config  # nothing given: the config as it was
