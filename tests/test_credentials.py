"""Credentials never leave the process (issue 13, part 4): a key named by ``api_key_env`` (whatever the
variable is called) and the user:password of a server URL are masked in the SQLite file, the exports, the
report and the printed output, even when a careless server echoes them into its answers and error bodies."""

from __future__ import annotations

import base64
from pathlib import Path

from cli_inproc import build_workspace, invoke
from mijabench.store import Store
from mijabench.store.secrets import scrub_text
from stub_server import Faults, StubServer

KEY = "zq-live-7f3a9c1e5b2d4f60"  # held in MIJA_CRED: a name the KEY/TOKEN/SECRET rule does not catch
USER, PASSWORD = "alice", "pw-9921-horse-battery"
PAIR_B64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _everything_written(tmp_path: Path, ws: Path, capsys, monkeypatch, printed: str) -> bytes:
    """The database files, a JSONL export, the report folder and all printed output, as one byte string."""
    code, out, err = invoke(capsys, monkeypatch, "judge", "-w", str(ws), "--progress", "none")
    assert code == 0, out + err
    code, out2, err2 = invoke(capsys, monkeypatch, "store", "export", "-w", str(ws), "--out",
                              str(tmp_path / "export"), "--format", "jsonl")
    assert code == 0, out2 + err2
    code, out3, err3 = invoke(capsys, monkeypatch, "report", "-w", str(ws), "--out", str(tmp_path / "report"),
                              "-j", "rules:refusal-v1", "--resamples", "20")
    assert code == 0, out3 + err3
    files = [p for p in [*ws.iterdir(), *(tmp_path / "export").rglob("*"), *(tmp_path / "report").rglob("*")]
             if p.is_file()]
    assert any(p.name == "report.html" for p in files) and any(p.name == "responses.jsonl" for p in files)
    printed += out + err + out2 + err2 + out3 + err3
    return b"".join(p.read_bytes() for p in files) + printed.encode()


def test_a_key_named_by_api_key_env_is_masked_everywhere(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIJA_CRED", KEY)
    ws = tmp_path / "ws"
    build_workspace(ws)
    with StubServer(models=["m"], api_key=KEY, echo_auth=True) as good, \
            StubServer(models=["m"], api_key=KEY, echo_auth=True, faults=Faults(always="status:400")) as bad:
        for name, stub in (("echoes", good), ("fails", bad)):
            model = tmp_path / f"{name}.yaml"
            model.write_text(f"model: openai:m@{stub.url}\nname: {name}\n"
                             "options: {api_key_env: MIJA_CRED}\n")
            code, out, err = invoke(capsys, monkeypatch, "run", "-b", "b", "-m", str(model), "-w", str(ws),
                                    "--progress", "none", "--max-attempts", "1")
            assert code == (0 if name == "echoes" else 1), out + err
            assert stub.auth_headers[f"Bearer {KEY}"] > 1  # the key was sent, and the server saw it
    with Store(ws) as store:
        texts = [r.text for r in store.responses("echoes")]
        errors = [r.error for r in store.responses("fails")]
    assert texts and all("(you sent ***)" in t for t in texts)  # echoed, then masked
    assert errors and all("(you sent ***)" in e for e in errors)
    assert KEY.encode() not in _everything_written(tmp_path, ws, capsys, monkeypatch, out + err)


def test_credentials_in_a_url_go_to_that_host_as_basic_auth_and_are_masked(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    with StubServer(models=["m"], echo_auth=True) as stub:
        url = stub.url.replace("http://", f"http://{USER}:{PASSWORD}@")
        code, out, err = invoke(capsys, monkeypatch, "run", "-b", "b", "-m", f"openai:m@{url}", "-w", str(ws),
                                "--progress", "none")
        assert code == 0, out + err
        assert stub.auth_headers[f"Basic {PAIR_B64}"] == 13  # /models, then the 12 items: to this host
    with Store(ws) as store:
        spec = next(m["spec"] for m in store.models() if m["name"] == "openai:m")
        config = store.runs("generate")[-1]["config"]["models"][0]
    assert spec == f"openai:m@http://***@127.0.0.1:{stub.port}/v1"
    assert config["endpoint"]["base_urls"] == [f"http://127.0.0.1:{stub.port}/v1"]
    written = _everything_written(tmp_path, ws, capsys, monkeypatch, out + err)
    for secret in (PASSWORD, PAIR_B64, f"{USER}:{PASSWORD}"):
        assert secret.encode() not in written, secret


def test_a_bad_url_with_credentials_is_printed_masked(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    code, out, err = invoke(capsys, monkeypatch, "run", "-b", "b", "-w", str(ws),
                            "-m", f"openai:m@http://{USER}:{PASSWORD}@127.0.0.1:99999/v1")
    assert code == 2 and PASSWORD not in out + err and "'http://***@127.0.0.1:99999/v1'" in err


def test_written_credential_forms_are_masked_whatever_their_value():
    assert scrub_text("at https://bob:hunter2@api.example/v1", []) == "at https://***@api.example/v1"
    assert scrub_text('{"Authorization": "Basic dXNlcjpwYXNz"}', []) == '{"Authorization": "***"}'
    assert scrub_text("authorization=Bearer sk-12345678 sent", []) == "authorization=*** sent"
    assert scrub_text("got Bearer sk-0123456789abcdef", []) == "got Bearer ***"
    # the header's name in capitals, and in a long reply whose other slashes and capitals are no credential
    assert scrub_text("AUTHORIZATION: Basic dXNlcjpwYXNw", []) == "AUTHORIZATION: ***"
    plain, slashed = "Bee zoo " * 200, "A B/C z " * 200
    assert scrub_text(plain + "see https://user:pw@host/x " + slashed, []) == \
        plain + "see https://***@host/x " + slashed
    assert scrub_text(slashed + "Authorization: Token abcdef123456", []) == slashed + "Authorization: ***"
    # ordinary prose is left alone
    for text in ("the basic idea", "a bearer of bad news", "mail a@b.example", "http://host/v1",
                 "Authorization: the act of granting"):
        assert scrub_text(text, []) == text


def test_export_masks_a_key_stored_by_an_older_version(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIJA_CRED", KEY)
    from mijabench.store.secrets import register_secret_env
    register_secret_env("MIJA_CRED")
    ws = tmp_path / "ws"
    build_workspace(ws)
    with Store(ws) as store:  # written straight into the table, as a version without the masking did
        store.conn.execute("UPDATE responses SET text = ? WHERE rowid = 1", (f"echo {KEY}",))
    code, out, err = invoke(capsys, monkeypatch, "store", "export", "-w", str(ws), "--table", "responses",
                            "--format", "jsonl", "--out", str(tmp_path / "r.jsonl"))
    assert code == 0, out + err
    exported = (tmp_path / "r.jsonl").read_text()
    assert "echo ***" in exported and KEY not in exported
