"""Backends and judges from other packages: the example plugin (examples/plugin) installed into a temporary
folder, found through its entry points in a fresh interpreter, used by the CLI; a plugin that claims a
built-in scheme is refused with one line and never loaded."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli_inproc import make_items
from mijabench.errors import MijaError
from mijabench.judge.identity import plugin_judge_identity
from mijabench.judge.plugins import PluginJudge
from mijabench.records import HARMFUL, SAFE, UNPARSED
from mijabench.store import Store

ROOT = Path(__file__).resolve().parents[1]
DECLINE = "I won't write that. Could we talk about something else?"  # the example backend's reply


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin, pip-installed (no dependencies, no build isolation) into a folder of its own,
    from a copy so the build leaves nothing in the repository."""
    tmp = tmp_path_factory.mktemp("plugin")
    shutil.copytree(ROOT / "examples" / "plugin", tmp / "source")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(tmp / "site"), str(tmp / "source")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return tmp / "site"


def _fake_plugin(folder: Path, module: str, version: str, entry_points: str, source: str) -> Path:
    """An installed-looking package in ``folder`` (a dist-info with its entry points, and one module): a
    plugin for the tests that need one misbehaving, without pip."""
    info = folder / f"{module}-{version}.dist-info"
    info.mkdir(parents=True)
    name = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    (folder / f"{module}.py").write_text(source)
    return folder


def _python(code: str, *paths: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*paths, ROOT / "src")))}
    env.pop("MIJABENCH_WORKSPACE", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_example_plugin_backend_and_judge_through_the_cli(plugin_site, tmp_path):
    items = make_items(6)
    with Store(tmp_path / "ws") as store:
        store.put_items(items, bench="b")
    done = _python("""
        from mijabench.cli.main import cli
        cli(["run", "-b", "b", "-m", "polite:p1", "-w", "ws", "--progress", "none"], standalone_mode=False)
        cli(["judge", "-m", "keywords:won't,cannot", "-m", "keywords:sorry", "--rules", "-w", "ws",
             "--progress", "none"], standalone_mode=False)
    """, plugin_site, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ignoring plugin" not in done.stderr
    with Store(tmp_path / "ws") as store:
        responses = store.responses("polite:p1")
        assert len(responses) == 6 and {r.text for r in responses} == {DECLINE}
        by_judge = {}
        for v in store.verdicts():
            by_judge.setdefault(v.judge, []).append(v)
        assert {v.label for v in by_judge["keywords:won't,cannot"]} == {SAFE}
        assert {v.label for v in by_judge["keywords:sorry"]} == {HARMFUL}  # the reply says no "sorry"
        assert len(by_judge["keywords:sorry"]) == 6 and "rules:refusal-v1" in by_judge
        run = store.runs("judge")[-1]
        identity = {j["name"]: j["identity"] for j in run["config"]["judges"]}
        assert identity["keywords:sorry"] == {"kind": "plugin", "name": "keywords:sorry", "version": "1",
                                              "package": "mijabench-example-plugin 0.1.0"}


def test_a_plugin_cannot_take_over_a_builtin_scheme(plugin_site, tmp_path):
    """An installed package registers openai (backend), rules and polite (judges): all three are refused,
    each with one line, its module never imported; the built-ins and the example plugin still work."""
    evil = _fake_plugin(tmp_path / "evil", "evil_plugin", "0.2",
                        "[mijabench.backends]\nopenai = evil_plugin:factory\n\n"
                        "[mijabench.judges]\nrules = evil_plugin:factory\npolite = evil_plugin:factory\n",
                        "raise SystemExit('the evil plugin was imported')\n")
    done = _python("""
        from mijabench.backends.registry import create_backend, known_schemes, parse_model
        from mijabench.judge.runner import resolve_judges
        backend = create_backend(parse_model("openai:m@http://127.0.0.1:9/v1"))
        print(type(backend).__name__, sorted(known_schemes()))
        print([j.name for j in resolve_judges(["rules:refusal-v1", "keywords:no"])])
        create_backend(parse_model("openai:m2@http://127.0.0.1:9/v1"))  # refused once, not per call
    """, evil, plugin_site, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("OpenAIBackend") and "'polite'" in out[0]
    assert out[1] == "['rules:refusal-v1', 'keywords:no']"
    refused = done.stderr.strip().splitlines()
    assert len(refused) == 3, done.stderr
    assert all(line.startswith("mijabench: ignoring plugin") and "evil-plugin 0.2" in line
               for line in refused)
    assert any("'openai' is a built-in model scheme" in line for line in refused)
    assert any("'rules' is a built-in model or judge scheme" in line for line in refused)
    assert any("'polite' is also a backend plugin's scheme" in line for line in refused)


class _Answers:
    version = "1"

    def __init__(self, answer):
        self.answer = answer

    def judge(self, response, *, prompt, language):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_plugin_judges_odd_answer_is_never_safe():
    def judge(answer) -> PluginJudge:
        return PluginJudge("x:y", _Answers(answer), plugin_judge_identity("x:y", "1", "pkg 1"))

    assert judge(("safe", "fine")).decide("r", "p", "en") == (SAFE, "fine")
    label, reasoning = judge(("Safe", "")).decide("r", "p", "en")  # not the exact label: not counted safe
    assert label == UNPARSED and "'Safe'" in reasoning
    assert judge(None).decide("r", "p", "en")[0] == UNPARSED
    with pytest.raises(MijaError, match=r"judge x:y failed: ValueError: boom"):
        judge(ValueError("boom")).decide("r", "p", "en")
    # the version and the package are part of what produced a verdict
    versions = (("1", "pkg 1"), ("2", "pkg 1"), ("1", "pkg 2"))
    fingerprints = {plugin_judge_identity("x:y", v, p).fingerprint for v, p in versions}
    assert len(fingerprints) == 3


def test_a_plugin_backend_and_judge_in_an_audit(plugin_site, tmp_path):
    """`mijabench audit` takes a plugin's model and judge like built-in ones: the judge votes, the report
    names it, and a second audit resumes with no new call."""
    done = _python("""
        from mijabench.cli.main import cli
        for _ in range(2):
            cli(["audit", "--model", "polite:p1", "--judge", "keywords:won't", "--voter", "keywords:won't",
                 "-w", "ws", "--out", "report", "--progress", "none"], standalone_mode=False)
    """, plugin_site, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with Store(tmp_path / "ws") as store:
        responses = store.responses("polite:p1")
        verdicts = [v for v in store.verdicts() if v.judge == "keywords:won't"]
        assert len(responses) > 100 and {r.text for r in responses} == {DECLINE}
        assert len(verdicts) == len(responses) and {v.label for v in verdicts} == {SAFE}
        assert len(responses) == len(store.items("demo"))  # the second audit asked for nothing again
    assert html.escape("keywords:won't") in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


def test_a_plugin_that_fails_to_load_is_one_line(tmp_path):
    """A plugin whose factory raises, as a backend and as a judge: a MijaError naming the model or judge and
    the package, not the plugin's traceback."""
    broken = _fake_plugin(tmp_path / "broken", "broken_plugin", "0.1",
                          "[mijabench.backends]\ncrash = broken_plugin:factory\n\n"
                          "[mijabench.judges]\nwobbly = broken_plugin:factory\n",
                          "def factory(arg):\n    raise RuntimeError('no config here')\n")
    done = _python("""
        from mijabench.backends.registry import create_backend, parse_model
        from mijabench.errors import MijaError
        from mijabench.judge.plugins import load_plugin_judge
        for build in (lambda: create_backend(parse_model("crash:m")), lambda: load_plugin_judge("wobbly:x")):
            try:
                build()
            except MijaError as exc:
                print(exc)
    """, broken, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "model crash:m: the plugin (broken-plugin 0.1) failed to load: RuntimeError: no config here",
        "judge wobbly:x: the plugin (broken-plugin 0.1) failed to load: RuntimeError: no config here"]
