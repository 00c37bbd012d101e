"""User and server text is printed as it is: a bracket in a model name, a file name or a server's error body
is a character, not Rich markup (which crashed on ``[/bold]`` or swallowed ``[red]``)."""

from __future__ import annotations

from cli_inproc import build_workspace, invoke
from mijabench.store import Store
from stub_server import Faults, StubServer

NAME = "evil[/bold]name[red]"


def test_store_info_prints_names_literally(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    with Store(ws) as store:
        store.put_model(NAME, "scripted:x")
    code, out, err = invoke(capsys, monkeypatch, "store", "info", "-w", str(ws))
    assert code == 0, out + err
    assert f"model {NAME}: scripted:x" in out


def test_run_with_bracketed_model_name_and_bench_file(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    exported = tmp_path / "export"
    assert invoke(capsys, monkeypatch, "store", "export", "-w", str(ws), "--table", "items", "--format",
                  "jsonl", "--out", str(exported / "a[/b].jsonl"))[0] == 0
    model = tmp_path / "m.yaml"
    model.write_text(f"model: scripted:x\nname: '{NAME}'\n")
    code, out, err = invoke(capsys, monkeypatch, "run", "-b", str(exported / "a[/b].jsonl"), "-m", str(model),
                            "-w", str(ws), "--progress", "plain")
    assert code == 0, out + err
    assert NAME in out + err
    with Store(ws) as store:
        # the slash makes "a[" a folder: the benchmark is named after the file, "b]"
        assert store.benches()["b]"] == 12 and len(store.responses(NAME)) == 12


def test_a_server_error_body_with_markup_is_printed_whole(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    body = "[/bold] bad [red]field[/red] \\[x]"
    with StubServer(models=["m"], faults=Faults(always="status:400", error_body=body)) as stub:
        code, out, err = invoke(capsys, monkeypatch, "run", "-b", "b", "-m", f"openai:m@{stub.url}", "-w",
                                str(ws), "--progress", "none", "--max-attempts", "1")
    assert code == 1, out + err  # every item failed, stored as errors to retry
    assert body in out and "Traceback" not in out + err


def test_the_error_printer_keeps_brackets(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    model = tmp_path / "m.yaml"
    model.write_text(f"model: scripted:x\nname: '{NAME}'\n")
    code, out, err = invoke(capsys, monkeypatch, "run", "-b", "b", "-m", str(model), "-m", str(model),
                            "-w", str(ws))
    assert code == 2 and out == "", out + err
    assert err == f"error: the same model name is given twice ({NAME}, {NAME}); give each a distinct name\n"
