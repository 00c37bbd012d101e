"""The runner against a misbehaving OpenAI-compatible server (the stub on 127.0.0.1): injected faults,
kill -9 and restart, fail-fast exits, errors retried by the next run, and no API key in the store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mijabench.backends.registry import parse_model
from mijabench.records import BenchmarkItem
from mijabench.run.engine import RetryPolicy
from mijabench.run.generate import run_items
from mijabench.store import Store
from stub_server import Faults, StubServer, reply_for

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_items(n: int) -> list[BenchmarkItem]:
    return [BenchmarkItem(language="en", group="women", seed_text=f"seed {i}", scenario_category="history",
                          scenario_text="a market", strategy="persona_assignment", prompt=f"fault prompt {i}")
            for i in range(n)]


def assert_one_good_answer_per_item(store: Store, items: list[BenchmarkItem]) -> None:
    rows = store.query("SELECT item_id, COUNT(*), MAX(text), MAX(error) FROM responses GROUP BY item_id")
    prompts = {i.id: i.prompt for i in items}
    assert len(rows) == len(items) and set(prompts) == {r[0] for r in rows}
    for item_id, count, text, error in rows:
        assert count == 1 and error is None and text == reply_for(prompts[item_id])


def mijabench(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "mijabench.cli.main", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_a_run_through_every_kind_of_fault_answers_every_item_once(store):
    faults = Faults(server_error=0.10, rate_limit=0.05, hang=0.02, malformed=0.02, drop=0.01, max_failures=2)
    items = make_items(300)
    with StubServer(models=["m"], faults=faults) as stub:
        policy = RetryPolicy(max_attempts=5, timeout_s=1.0, backoff_base_s=0.01, backoff_max_s=0.1)
        stats = run_items(store, items, [parse_model(f"openai:m@{stub.url}")], policy=policy, progress=False,
                          bench="faults")
        sent = dict(stub.faults_sent)
    assert set(sent) == {"server_error", "rate_limit", "hang", "malformed", "drop"}  # all of them happened
    (model_stats,) = stats.values()
    # every fault cost one retry (a slow machine may add a timeout or two of its own)
    assert model_stats.done == 300 and model_stats.failed == 0 and model_stats.retries >= sum(sent.values())
    assert_one_good_answer_per_item(store, items)


def test_kill_9_mid_run_and_restart_gives_exactly_one_response_per_item(tmp_path):
    items = make_items(400)
    with Store(tmp_path / "ws") as store:
        store.put_items(items, bench="kill")
    db = tmp_path / "ws" / "mijabench.sqlite"
    with StubServer(models=["m"], latency_s=0.02) as stub:
        args = ("run", "--bench", "kill", "--model", f"openai:m@{stub.url}", "--concurrency", "4",
                "--workspace", str(tmp_path / "ws"))
        proc = mijabench(*args)
        stored = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            if stored >= 100:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        with sqlite3.connect(db) as conn:
            kept = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        assert 100 <= kept < 400  # killed part-way, and what was stored survived the kill
        time.sleep(0.2)  # let the server settle the calls that were in flight at the kill
        answered_before = sum(stub.answered.values())

        code, out, err = finish(mijabench(*args))
        assert code == 0, err
        # the restart sent exactly the items that were not stored (answers lost in the kill are redone)
        assert sum(stub.answered.values()) - answered_before == 400 - kept
    with Store(tmp_path / "ws") as store:
        assert_one_good_answer_per_item(store, items)


def test_unreachable_server_or_wrong_model_ends_fast_with_one_line_and_code_2(tmp_path):
    item_file = tmp_path / "mini.jsonl"
    item_file.write_text('{"text": "s", "group": "women", "language": "en", "scenario_category": "history", '
                         '"scenario": "x", "jb_strategy": "persona_assignment", "jb_prompt": "p"}\n')
    with StubServer(models=["served-model"]) as stub:
        cases = {f"openai:served-model@http://127.0.0.1:{_closed_port()}/v1": "cannot reach",
                 f"openai:misspelled@{stub.url}": "model 'misspelled' is not served"}
        for spec, message in cases.items():
            code, out, err = finish(mijabench("run", "--bench", str(item_file), "--model", spec,
                                              "--workspace", str(tmp_path / "ws")), timeout=30)
            assert code == 2, err
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
        assert not stub.answered  # nothing was sent to the server


def test_failures_exit_1_and_are_retried_by_the_next_run(tmp_path):
    items = make_items(5)
    with Store(tmp_path / "ws") as store:
        store.put_items(items, bench="retry")
    with StubServer(models=["m"], faults=Faults(always="server_error")) as stub:
        args = ("run", "--bench", "retry", "--model", f"openai:m@{stub.url}", "--max-attempts", "2",
                "--workspace", str(tmp_path / "ws"))
        code, out, err = finish(mijabench(*args))
        assert code == 1 and "5 item(s) failed" in err and "server_error" in out
        with Store(tmp_path / "ws") as store:
            rows = store.responses()
            assert len(rows) == 5 and all(r.error and "HTTP 500" in r.error for r in rows)
        stub.faults.always = None
        code, out, err = finish(mijabench(*args))
        assert code == 0, err
    with Store(tmp_path / "ws") as store:
        assert_one_good_answer_per_item(store, items)
        assert {r.attempts for r in store.responses()} == {3}


def test_the_api_key_never_reaches_the_store(tmp_path, monkeypatch):
    key = "sk-mijabench-test-7f3a9c1e5b"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    items = make_items(8)
    # the server even echoes the key in its error bodies; the run stores those errors, then the answers
    faults = Faults(always="status:400", error_body=f"(you sent Bearer {key})")
    with StubServer(models=["m"], faults=faults, api_key=key) as stub:
        config = parse_model(f"openai:m@{stub.url}")
        with Store(tmp_path / "ws") as store:
            stats = run_items(store, items, [config], policy=RetryPolicy(max_attempts=1), progress=False,
                              bench="k")
            assert stats[config.name].failed == 8
            assert all("***" in r.error for r in store.responses())
            stub.faults.always = None
            run_items(store, items, [config], progress=False)
            assert_one_good_answer_per_item(store, items)
            files = [p for p in (tmp_path / "ws").iterdir() if p.name.startswith("mijabench.sqlite")]
            assert any(p.name.endswith("-wal") for p in files)  # read while the WAL still holds the writes
            assert all(key.encode() not in p.read_bytes() for p in files)
        assert stub.auth_headers[f"Bearer {key}"] >= 16  # it was sent, in the header only
    for p in (tmp_path / "ws").iterdir():
        assert key.encode() not in p.read_bytes()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_stray_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
