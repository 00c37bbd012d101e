"""Malformed input across the commands: each case exits with code 2 after exactly one line of output, with
no traceback, and leaves the workspace database byte for byte as it was (issue 13, part 5). The line must
hold the words that say what was wrong, printed literally (a bracket is never Rich markup)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from cli_inproc import build_workspace, copy_workspace, invoke
from stub_server import StubServer

BINARY = bytes(range(256)) * 4
ITEMS = ('{"prompt": "tell me a story", "group": "women", "language": "en", '
         '"strategy": "persona_assignment", "seed_text": "s", "scenario_category": "history", '
         '"scenario_text": "a market"}\n')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("template") / "ws")


@pytest.fixture(scope="module")
def stub():
    with StubServer(models=["m"]) as server:
        yield server


def _garbage_in_the_middle(db: Path) -> None:
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = b"\xde\xad\xbe\xef" * 750
    db.write_bytes(bytes(data))


# (id, arguments, files to write {name: content}, words the line must hold, setup)
# {ws}: the workspace, {tmp}: a scratch folder, {url}: a stub server serving model "m", {dead}: a closed port
CASES = [
    # run: model strings
    ("run-at-not-a-url", ["run", "-b", "b", "-m", "openai:x@notaurl"], {}, ["x@notaurl", "not an http"]),
    ("run-url-bad-port", ["run", "-b", "b", "-m", "openai:m@http://127.0.0.1:99999/v1"], {}, ["99999"]),
    ("run-url-ftp", ["run", "-b", "b", "-m", "openai:m@ftp://host/v1"], {}, ["http:// or https://"]),
    ("run-url-empty-in-list", ["run", "-b", "b", "-m", "openai:m@{url},"], {}, ["empty URL"]),
    ("run-url-no-host", ["run", "-b", "b", "-m", "openai:m@http:///v1"], {}, ["no valid host"]),
    ("run-unknown-scheme", ["run", "-b", "b", "-m", "foo:bar"], {}, ["unknown model scheme 'foo'"]),
    ("run-unreachable-stores-no-items", ["run", "-b", "{tmp}/new.jsonl", "-m", "openai:m@{dead}"],
     {"new.jsonl": ITEMS}, ["cannot reach", "{dead}"]),
    ("run-model-not-served", ["run", "-b", "b", "-m", "openai:other@{url}"], {}, ["'other' is not served"]),
    ("run-model-twice", ["run", "-b", "b", "-m", "scripted:a", "-m", "scripted:a"], {}, ["given twice"]),
    ("run-bad-executor", ["run", "-b", "b", "-m", "scripted:a", "--executor", "spark"], {}, ["--executor"]),
    ("run-markup-in-bench-path", ["run", "-b", "{tmp}/a[/b].jsonl", "-m", "scripted:a"], {},
     ["a[/b].jsonl", "no such benchmark"]),
    # run: model files
    ("model-file-options-list", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: scripted:x\noptions: [1, 2]\n"}, ["'options' must be a mapping"]),
    ("model-file-unknown-field", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: scripted:x\nsetings: {max_tokens: 5}\n"}, ["unknown field(s) setings"]),
    ("model-file-max-tokens-text", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: scripted:x\nsettings: {max_tokens: lots}\n"}, ["max_tokens", "'lots'"]),
    ("model-file-negative-concurrency", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: openai:m@{url}\nconcurrency: -5\n"}, ["concurrency", "-5"]),
    ("model-file-top-p-range", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: scripted:x\nsettings: {top_p: 2}\n"}, ["top_p"]),
    ("model-file-unknown-scripted-option", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: scripted:x\noptions: {colour: red}\n"}, ["unknown option(s) colour"]),
    ("model-file-not-yaml", ["run", "-b", "b", "-m", "{tmp}/m.yaml"], {"m.yaml": "model: [unclosed\n"},
     ["not valid YAML"]),
    ("model-file-binary", ["run", "-b", "b", "-m", "{tmp}/m.yaml"], {"m.yaml": BINARY}, ["m.yaml"]),
    ("model-file-empty-key-env", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: openai:m@{url}\noptions: {api_key_env: ''}\n"}, ["api_key_env"]),
    ("model-file-markup-name-not-served", ["run", "-b", "b", "-m", "{tmp}/m.yaml"],
     {"m.yaml": "model: openai:gone@{url}\nname: evil[/bold]name\n"}, ["'gone' is not served"]),
    # the workspace itself
    ("run-garbage-in-database", ["run", "-b", "b", "-m", "scripted:a"], {}, ["damaged"], "garbage"),
    ("store-info-garbage-in-database", ["store", "info"], {}, ["damaged"], "garbage"),
    ("report-garbage-in-database", ["report", "--out", "{tmp}/r", "-j", "rules:refusal-v1"], {}, ["damaged"],
     "garbage"),
    ("judge-no-workspace", ["judge", "-w", "{tmp}/nowhere"], {}, ["no workspace"]),
    # judge and judge validate
    ("judge-at-not-a-url", ["judge", "-m", "openai:j@notaurl"], {}, ["not an http"]),
    ("judge-unreachable", ["judge", "-m", "openai:j@{dead}"], {}, ["cannot reach"]),
    ("judge-not-served", ["judge", "-m", "openai:j@{url}", "--rules"], {}, ["'j' is not served"]),
    ("audit-judge-unreachable-builds-nothing", ["audit", "--model", "scripted:a", "--judge",
                                                "openai:j@{dead}", "--bench", "fresh"], {}, ["cannot reach"]),
    ("judge-model-file-unknown-field", ["judge", "-m", "{tmp}/j.yaml"],
     {"j.yaml": "model: scripted:j\nsetting: {}\n"}, ["unknown field(s) setting"]),
    ("validate-binary-labels", ["judge", "validate", "--labels", "{tmp}/labels.jsonl"],
     {"labels.jsonl": BINARY}, ["labels.jsonl", "not UTF-8"]),
    ("validate-out-is-a-folder", ["judge", "validate", "--labels", "{tmp}/l.jsonl", "--out", "{tmp}"],
     {"l.jsonl": '{"response_id": "x", "label": "safe"}\n'}, ["is a folder"]),
    ("validate-missing-labels", ["judge", "validate", "--labels", "{tmp}/none.jsonl"], {}, ["not found"]),
    # report and compare
    ("report-out-is-a-file", ["report", "--out", "{tmp}/taken.txt", "-j", "rules:refusal-v1"],
     {"taken.txt": "x"}, ["is a file"]),
    ("report-out-under-a-file", ["report", "--out", "{tmp}/taken.txt/r", "-j", "rules:refusal-v1"],
     {"taken.txt": "x"}, ["is a file, not a folder"]),
    ("report-binary-labels", ["report", "--out", "{tmp}/r", "-j", "rules:refusal-v1", "--labels",
                              "{tmp}/l.csv"], {"l.csv": BINARY}, ["l.csv"]),
    ("compare-unknown-model", ["compare", "--a", "nosuch", "--b", "scripted:b"], {}, ["nosuch"]),
    # audit
    ("audit-negative-concurrency", ["audit", "-c", "{tmp}/a.yaml"],
     {"a.yaml": "models: [scripted:a]\nconcurrency: -3\n"}, ["concurrency", "-3"]),
    ("audit-unknown-field", ["audit", "-c", "{tmp}/a.yaml"], {"a.yaml": "models: [scripted:a]\nmodles: []\n"},
     ["unknown field(s) modles"]),
    ("audit-binary-config", ["audit", "-c", "{tmp}/a.yaml"], {"a.yaml": BINARY}, ["a.yaml"]),
    ("audit-at-not-a-url", ["audit", "--model", "openai:x@notaurl"], {}, ["not an http"]),
    ("audit-unreachable-builds-nothing", ["audit", "--model", "openai:m@{dead}", "--bench", "fresh"], {},
     ["cannot reach"]),
    ("audit-out-is-a-file", ["audit", "--model", "scripted:a", "--out", "{tmp}/taken.txt"],
     {"taken.txt": "x"}, ["is a file"]),
    # bench build, seeds build
    ("bench-build-at-not-a-url", ["bench", "build", "--seeds", "demo", "--bench", "n", "--model",
                                  "openai:r@notaurl"], {}, ["not an http"]),
    ("bench-build-unreachable", ["bench", "build", "--seeds", "demo", "--bench", "n", "--model",
                                 "openai:r@{dead}"], {}, ["cannot reach"]),
    ("scenarios-build-unreachable", ["scenarios", "build", "--model", "openai:r@{dead}"], {},
     ["cannot reach"]),
    ("bench-build-missing-seeds", ["bench", "build", "--seeds", "{tmp}/none.jsonl", "--bench", "n",
                                   "--offline"], {}, ["seed file not found"]),
    ("seeds-build-out-under-a-file", ["seeds", "build", "--source", "demo", "--per-group", "1", "--out",
                                      "{tmp}/taken.txt/s.jsonl", "--store"], {"taken.txt": "x"},
     ["is a file, not a folder"]),
    ("seeds-build-out-is-a-folder", ["seeds", "build", "--source", "demo", "--per-group", "1", "--out",
                                     "{tmp}", "--store"], {}, ["is a folder"]),
    # store export, import
    ("export-out-is-a-file", ["store", "export", "--out", "{tmp}/taken.txt"], {"taken.txt": "x"},
     ["is a file"]),
    ("export-bad-format", ["store", "export", "--out", "{tmp}/e", "--format", "xml"], {}, ["'xml'"]),
    ("export-bad-table", ["store", "export", "--out", "{tmp}/e.jsonl", "--table", "nope", "--format",
                          "jsonl"], {}, ["unknown table 'nope'"]),
    ("import-binary-file", ["import", "{tmp}/x.jsonl"], {"x.jsonl": BINARY}, ["x.jsonl"]),
    ("import-missing-file", ["import", "{tmp}/none.parquet"], {}, ["none.parquet"]),
]


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_the_store_is_unchanged(case, template, stub, tmp_path, capsys,
                                                                 monkeypatch):
    _, args, files, words, *setup = case
    ws = copy_workspace(template, tmp_path / "ws")
    db = ws / template.name
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    values = {"ws": str(ws), "tmp": str(scratch), "url": stub.url, "dead": f"http://127.0.0.1:{_free_port()}/v1"}
    for name, content in files.items():
        path = scratch / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, values))
    if setup == ["garbage"]:
        _garbage_in_the_middle(db)
    before = db.read_bytes()
    argv = [_fill(a, values) for a in args]
    if "-w" not in argv:
        argv += ["--workspace", str(ws)]
    monkeypatch.chdir(scratch)  # a command that wrongly falls back to ./mijabench-workspace writes here
    code, out, err = invoke(capsys, monkeypatch, *argv)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 2, out + err
    assert len(lines) == 1, out + err
    assert "Traceback" not in out + err
    assert lines[0].startswith("error: ")
    for word in words:
        assert _fill(word, values) in lines[0], lines[0]
    assert db.read_bytes() == before
    assert not db.with_name(db.name + "-wal").exists() or db.with_name(db.name + "-wal").stat().st_size == 0
    assert not (scratch / "mijabench-workspace").exists()


def test_the_matrix_is_wide_enough():
    commands = {" ".join(a for a in c[1][:2] if not a.startswith("-") and "{" not in a) for c in CASES}
    assert len(CASES) >= 30 and len(commands) >= 10, commands


def test_an_output_folder_that_cannot_be_written_is_refused_first(tmp_path, monkeypatch):
    # as root the permission bits are no obstacle, so the check's view of them is what is tested here
    from mijabench import paths
    from mijabench.errors import MijaError

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(paths.os, "access", lambda p, mode: Path(p) != locked)
    for target, folder in ((locked / "report", True), (locked / "a" / "b.jsonl", False), (locked, True)):
        with pytest.raises(MijaError, match="permission denied"):
            paths.check_output(target, folder=folder)
    assert paths.check_output(tmp_path / "free" / "report", folder=True) == tmp_path / "free" / "report"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_folder_is_one_line(template, tmp_path, capsys, monkeypatch):
    ws = copy_workspace(template, tmp_path / "ws")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, out, err = invoke(capsys, monkeypatch, "report", "-w", str(ws), "-j", "rules:refusal-v1",
                                "--out", str(locked / "r"))
    finally:
        locked.chmod(0o755)
    assert code == 2 and "permission denied" in err and len((out + err).strip().splitlines()) == 1
