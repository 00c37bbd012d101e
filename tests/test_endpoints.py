"""Real-endpoint behaviour against the stub on 127.0.0.1: a server that works on one request at a time,
requests given up on (their connection must close), and servers strict about unknown fields."""

from __future__ import annotations

import asyncio
import statistics
import time

from cli_inproc import make_items
from mijabench.backends.base import GenerationRequest
from mijabench.backends.openai_compat import OpenAIBackend
from mijabench.backends.registry import parse_model
from mijabench.run.engine import RetryPolicy, execute
from mijabench.run.generate import run_items
from stub_server import Faults, StubServer


def slow_items(n: int):
    return make_items(n, groups=("women",), prompt="slow prompt")


def test_a_serial_server_is_not_queued_into_time_outs(store):
    # 40 requests at 80 ms each, one at a time: 64 in flight would wait up to 3.2 s, past the 1 s time-out
    with StubServer(models=["m"], latency_s=0.08, serial=True) as stub:
        stats = run_items(store, slow_items(40), [parse_model(f"openai:m@{stub.url}")], progress=False,
                          policy=RetryPolicy(timeout_s=1.0, max_attempts=3))["openai:m"]
    assert stats.done == 40 and stats.failed == 0
    assert stats.timeouts == 0 and stats.attempts == 40 and stub.abandoned == 0
    assert stats.concurrency <= 4  # it settled near one in flight (the server's own parallelism)
    latencies = [row[0] for row in store.query("SELECT latency_s FROM responses ORDER BY rowid")]
    # once settled, a stored latency is the answer's own time with little queueing in it
    assert statistics.median(latencies[-20:]) < 0.3


def test_a_request_given_up_on_closes_its_connection():
    async def go(stub: StubServer):
        backend = OpenAIBackend("m", [stub.url])
        request = GenerationRequest(key="k", messages=[{"role": "user", "content": "hang"}])
        stats = await execute([request], backend, lambda outcome: None, concurrency=1,
                              policy=RetryPolicy(timeout_s=0.3, max_attempts=2, backoff_base_s=0.01))
        deadline = time.monotonic() + 3
        while stub.abandoned < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await backend.aclose()
        return stats

    with StubServer(models=["m"], faults=Faults(always="hang")) as stub:
        stats = asyncio.run(go(stub))
        assert stats.failed == 1 and stats.errors == {"timeout": 1}
        assert stats.attempts == 2 and stats.timeouts == 2 and stats.retries == 1
        assert stub.abandoned == 2  # the server saw both hang-ups and stopped working on them


def test_run_cli_prints_plain_progress_and_per_endpoint_figures(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mijabench.store import Store

    src = str(Path(__file__).resolve().parents[1] / "src")
    with Store(tmp_path / "ws") as store:
        store.put_items(slow_items(12), bench="b")
    with StubServer(models=["m"], latency_s=0.01, faults=Faults(server_error=0.3, max_failures=1)) as a, \
            StubServer(models=["m"], latency_s=0.01) as b:
        done = subprocess.run([sys.executable, "-m", "mijabench.cli.main", "run", "--bench", "b",
                               "--model", f"openai:m@{a.url},{b.url}", "--progress", "plain",
                               "-w", str(tmp_path / "ws")], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": src, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "generate openai:m: 12/12 (100%)" in done.stderr and "ETA done" in done.stderr
    assert "endpoints" in done.stdout and a.url in done.stdout and b.url in done.stdout
    with Store(tmp_path / "ws") as store:
        (summary,) = [e["detail"] for e in store.events(stage="generate") if e["kind"] == "summary"]
        (endpoints,) = [e["detail"] for e in store.events(stage="generate") if e["kind"] == "endpoints"]
    assert summary["replicas"] == endpoints["replicas"]
    replicas = summary["replicas"]
    assert set(replicas) == {a.url, b.url}
    assert sum(r["requests"] for r in replicas.values()) == summary["attempts"] == 12 + summary["retries"]
    assert replicas[b.url]["failures"] == 0 and replicas[a.url]["failures"] == summary["retries"]
    assert all(r["median_latency_s"] >= 0.01 for r in replicas.values())
    assert endpoints["listed_models"] and endpoints["answered_by"] == {"m": 12}  # the coordinator's fields
