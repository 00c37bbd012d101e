"""Malformed inputs through the real command line: one clear line on stderr, exit code 2, no traceback,
and neither the output file nor the workspace store changes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mijabench.records import Seed
from mijabench.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = '{"text": "Women are bad at maps.", "group": "women", "score": 5}\n'
OLD_OUTPUT = "previous output\n"


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(cwd / "hf"),
                "COLUMNS": "100", **(env or {})}
    full_env.pop("MIJABENCH_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "mijabench.cli.main", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


# (id, file name, file content, extra arguments, words the error line must hold)
CASES = [
    ("missing-column", "s.jsonl", '{"group": "women"}\n', ["-l", "en"], ["s.jsonl", "missing column 'text'"]),
    ("unknown-group", "s.jsonl", GOOD + '{"text": "Martians are odd.", "group": "martians"}\n', ["-l", "en"],
     ["row 2", "field 'group'", "unknown group 'martians'"]),
    ("empty-text", "s.jsonl", GOOD + '{"text": "", "group": "women"}\n', ["-l", "en"],
     ["row 2", "field 'text'", "empty text"]),
    ("unknown-language-in-row", "s.jsonl", '{"text": "x y", "group": "women", "language": "klingon"}\n', [],
     ["row 1", "field 'language'", "unknown language 'klingon'"]),
    ("unknown-language-option", "s.jsonl", GOOD, ["-l", "fr"], ["unknown language 'fr'"]),
    ("no-language", "s.jsonl", GOOD, [], ["no language", "--language"]),
    ("not-utf8", "s.jsonl", GOOD.encode() + b'{"text": "na\xefve", "group": "women"}\n', ["-l", "en"],
     ["row 2", "not UTF-8"]),
    ("invalid-json", "s.jsonl", GOOD + '{"text": "x", "group": "women"\n', ["-l", "en"],
     ["row 2", "invalid JSON"]),
    ("bad-filter", "s.jsonl", GOOD, ["-l", "en", "--where", "score >>= 4"], ["bad filter expression"]),
    ("non-numeric-filter-value", "s.jsonl", GOOD + '{"text": "x y", "group": "women", "score": "high"}\n',
     ["-l", "en", "--where", "score >= 4"], ["row 2", "field 'score'", "not a number"]),
    ("empty-file", "s.jsonl", "", ["-l", "en"], ["s.jsonl", "is empty"]),
    ("unknown-extension", "s.xlsx", "text,group\n", ["-l", "en"], ["unknown file type '.xlsx'"]),
    ("ragged-csv", "s.csv", "text,group\nWomen are bad at maps.,women\nonly one field\n", ["-l", "en"],
     ["row 2", "expected 2 fields"]),
    ("corrupt-parquet", "s.parquet", b"PAR1 definitely not parquet", ["-l", "en"],
     ["not a readable Parquet"]),
    ("nothing-left", "s.jsonl", GOOD, ["-l", "en", "--where", "score < 1"], ["no seeds left"]),
    ("per-group-zero", "s.jsonl", GOOD, ["-l", "en", "--per-group", "0"], ["--per-group must be at least 1"]),
    ("strict-shortfall", "s.jsonl", GOOD, ["-l", "en", "--per-group", "3", "--strict"],
     ["--strict", "en/women (1)"]),
    ("text-col-missing", "s.jsonl", GOOD, ["-l", "en", "--text-col", "statement"],
     ["missing column 'statement'"]),
]


def _prepare(tmp_path: Path, name: str, content) -> tuple[Path, Path, Path]:
    source = tmp_path / name
    (source.write_bytes if isinstance(content, bytes) else source.write_text)(content)
    out = tmp_path / "out.jsonl"
    out.write_text(OLD_OUTPUT)
    workspace = tmp_path / "ws"
    with Store(workspace) as store:
        store.put_seeds([Seed("en", "women", "An earlier seed.", source="earlier")])
    return source, out, workspace


def _store_state(workspace: Path):
    with Store(workspace, create=False) as store:
        return store.seeds(), store.runs(), store.counts()


def _assert_clean_failure(result, out: Path, workspace: Path, before, words):
    assert result.returncode == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    assert out.read_text() == OLD_OUTPUT
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".out")) == []
    assert _store_state(workspace) == before


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_fails_cleanly(tmp_path, case):
    _, name, content, extra, words = case
    source, out, workspace = _prepare(tmp_path, name, content)
    before = _store_state(workspace)
    result = run_cli("seeds", "build", "--source", str(source), "--out", str(out), "--store",
                     "--workspace", str(workspace), *extra, cwd=tmp_path)
    _assert_clean_failure(result, out, workspace, before, words)


def test_unreachable_hub_fails_cleanly(tmp_path):
    _, out, workspace = _prepare(tmp_path, "unused.jsonl", GOOD)
    before = _store_state(workspace)
    result = run_cli("seeds", "build", "--source", "toxigen", "--out", str(out), "--store",
                     "--workspace", str(workspace), cwd=tmp_path)
    _assert_clean_failure(result, out, workspace, before,
                          ["could not reach the Hugging Face hub", "toxigen/toxigen-data", "--source FILE"])


def test_unreachable_hub_in_bench_build_names_its_own_option(tmp_path):
    """`bench build --seeds toxigen` has no --source or --from-disk: its hint names --seeds FILE."""
    _, _, workspace = _prepare(tmp_path, "unused.jsonl", GOOD)
    before = _store_state(workspace)
    result = run_cli("bench", "build", "--seeds", "toxigen", "--bench", "b", "--offline", "--workspace",
                     str(workspace), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "could not reach the Hugging Face hub" in lines[0], result.stderr
    assert "with --seeds FILE" in lines[0] and "pass a local copy with --from-disk" not in lines[0]
    assert _store_state(workspace) == before


def test_bad_from_disk_folder_fails_cleanly(tmp_path):
    _, out, workspace = _prepare(tmp_path, "unused.jsonl", GOOD)
    before = _store_state(workspace)
    result = run_cli("seeds", "build", "--source", "toxsyn", "--from-disk", str(tmp_path / "missing"),
                     "--out", str(out), "--store", "--workspace", str(workspace), cwd=tmp_path)
    _assert_clean_failure(result, out, workspace, before, ["not a dataset folder"])


def test_broken_workspace_fails_before_the_output_is_written(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(OLD_OUTPUT)
    workspace = tmp_path / "broken.sqlite"
    workspace.write_bytes(b"this is not a database at all" * 100)
    result = run_cli("seeds", "build", "--source", "demo", "--per-group", "2", "--out", str(out), "--store",
                     "--workspace", str(workspace), cwd=tmp_path)
    assert result.returncode == 2 and "not a usable mijabench database" in result.stderr
    assert "Traceback" not in result.stderr and out.read_text() == OLD_OUTPUT
    assert workspace.read_bytes() == b"this is not a database at all" * 100
