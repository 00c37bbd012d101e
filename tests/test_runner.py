"""The generation runner, its writer and the adaptive limiter, driven by scripted backends."""

from __future__ import annotations

import asyncio
import io
import random
import sqlite3
import time

import pytest
from rich.console import Console

from mijabench.backends.base import Backend, BackendError, Generation, GenerationRequest
from mijabench.backends.registry import ModelConfig
from mijabench.backends.scripted import ScriptedBackend
from mijabench.errors import MijaError
from mijabench.records import BenchmarkItem, SamplingSettings, response_id
from mijabench.run.engine import RetryPolicy, execute
from mijabench.run.generate import build_messages, pending_items, run_items
from mijabench.run.limiter import AdaptiveLimiter
from mijabench.run.progress import StageProgress

FAST = RetryPolicy(max_attempts=3, timeout_s=2.0, backoff_base_s=0.001, backoff_max_s=0.01)


def make_items(n: int, tag: str = "") -> list[BenchmarkItem]:
    return [BenchmarkItem(language="en", group="women", seed_text=f"seed {i}", scenario_category="history",
                          scenario_text="a market", strategy="persona_assignment", prompt=f"prompt {tag}{i}")
            for i in range(n)]


def scripted(name: str, **kw) -> tuple[ModelConfig, ScriptedBackend]:
    return ModelConfig(spec=f"scripted:{name}", name=name), ScriptedBackend(name=name, **kw)


def test_every_item_to_every_model_once_and_resume_makes_no_calls(store):
    items = make_items(30)
    (ca, a), (cb, b) = scripted("a", echo=True), scripted("b", reply="no")
    stats = run_items(store, items, [ca, cb], policy=FAST, progress=False, bench="demo",
                      backends={"a": a, "b": b})
    assert stats["a"].done == stats["b"].done == 30 and a.calls == b.calls == 30
    assert store.benches() == {"demo": 30}
    responses = store.responses()
    assert len(responses) == 60 and all(r.ok for r in responses)
    by_id = {r.id: r for r in responses}
    for item in items:  # ids are the (item, model, settings) key, and each answer is its item's
        assert by_id[response_id(item.id, "a", SamplingSettings())].text == item.prompt
        assert by_id[response_id(item.id, "b", SamplingSettings())].text == "no"
    assert {m["name"] for m in store.models()} == {"a", "b"}
    assert [r["kind"] for r in store.runs()] == ["generate"]

    (ca, a2), (cb, b2) = scripted("a", echo=True), scripted("b", reply="no")
    again = run_items(store, items + items[:5], [ca, cb], policy=FAST, progress=False,
                      backends={"a": a2, "b": b2})
    assert a2.calls == b2.calls == 0 and again["a"].skipped == 30 and again["a"].done == 0
    assert len(store.responses()) == 60


def test_pending_items_use_the_records_response_ids(store):
    items = make_items(3)
    settings = SamplingSettings(max_tokens=9, system_prompt="s")
    assert [rid for _, rid in pending_items(store, items, "m", settings)] == [
        response_id(i.id, "m", settings) for i in items]


def test_other_settings_are_other_responses(store):
    items = make_items(4)
    config, backend = scripted("a")
    run_items(store, items, [config], policy=FAST, progress=False, backends={"a": backend})
    hot = ModelConfig(spec="scripted:a", name="a", settings=SamplingSettings(temperature=0.7))
    _, backend2 = scripted("a")
    run_items(store, items, [hot], policy=FAST, progress=False, backends={"a": backend2})
    assert backend2.calls == 4 and len(store.responses()) == 8


def test_errors_are_stored_as_errors_and_retried_next_run(store):
    items = make_items(6)
    config, broken = scripted("a", fail_first=99)
    stats = run_items(store, items, [config], policy=FAST, progress=False, backends={"a": broken})
    assert stats["a"].failed == 6 and stats["a"].errors == {"server_error": 6}
    assert "injected server_error" in stats["a"].error_examples["server_error"]
    rows = store.responses()
    assert len(rows) == 6 and not any(r.ok for r in rows)
    assert all(r.error.startswith("server_error:") and r.text is None and r.attempts == 3 for r in rows)
    assert store.answered_response_ids("a", SamplingSettings()) == set()

    _, healthy = scripted("a")
    stats = run_items(store, items, [config], policy=FAST, progress=False, backends={"a": healthy})
    assert healthy.calls == 6 and stats["a"].done == 6
    rows = store.responses()
    assert len(rows) == 6 and all(r.ok for r in rows) and all(r.attempts == 4 for r in rows)


class WrongModel(Backend):
    name = "wrong"

    def __init__(self):
        self.calls = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        raise BackendError("model 'x' does not exist", retryable=False, kind="model_not_found")


def test_a_model_that_cannot_work_stops_early_and_others_finish(store):
    items = make_items(200)
    wrong = WrongModel()
    config_ok, ok = scripted("ok")
    stats = run_items(store, items, [ModelConfig(spec="scripted:wrong", name="wrong"), config_ok],
                      concurrency=4, policy=FAST, progress=False, backends={"wrong": wrong, "ok": ok})
    assert "does not exist" in stats["wrong"].aborted
    assert wrong.calls < 20  # stopped after the first answers, not 200 calls
    assert stats["ok"].done == 200 and stats["ok"].aborted is None


class Crashing(Backend):
    name = "crash"

    async def generate(self, request: GenerationRequest) -> Generation:
        if request.messages[-1]["content"].endswith("3"):
            raise KeyError("bug")
        return Generation(text="fine")


def test_a_backend_bug_is_recorded_and_the_run_goes_on(store):
    stats = run_items(store, make_items(10), [ModelConfig(spec="scripted:crash", name="crash")], policy=FAST,
                      progress=False, backends={"crash": Crashing()})
    assert stats["crash"].done == 9 and stats["crash"].errors == {"internal": 1}


def test_messages_carry_the_system_prompt_when_set():
    item = make_items(1)[0]
    assert build_messages(item, SamplingSettings()) == [{"role": "user", "content": item.prompt}]
    assert build_messages(item, SamplingSettings(system_prompt="S"))[0] == {"role": "system", "content": "S"}


def test_duplicate_model_names_are_refused(store):
    config, backend = scripted("a")
    with pytest.raises(MijaError, match="twice"):
        run_items(store, make_items(1), [config, config], progress=False, backends={"a": backend})


class WaitsForTheStore(Backend):
    """Answers every prompt at once except the last, which waits until a separate connection sees the other
    answers in the database: responses must be stored while the run is still going."""

    name = "patient"

    def __init__(self, db_path, n: int):
        self.db_path, self.n, self.seen = db_path, n, 0

    async def generate(self, request: GenerationRequest) -> Generation:
        if request.messages[-1]["content"].endswith(str(self.n - 1)):
            deadline = time.monotonic() + 5
            with sqlite3.connect(self.db_path) as conn:
                while time.monotonic() < deadline:
                    self.seen = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                    if self.seen >= self.n - 1:
                        break
                    await asyncio.sleep(0.02)
        return Generation(text="ok")


def test_responses_are_stored_as_they_arrive_not_at_the_end(store):
    backend = WaitsForTheStore(store.path, 20)
    run_items(store, make_items(20), [ModelConfig(spec="scripted:patient", name="patient")], policy=FAST,
              progress=False, backends={"patient": backend})
    assert backend.seen == 19


def test_progress_bar_reports_done_failed_and_throughput(store):
    console = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=200)
    config, backend = scripted("a", fail_rate=0.5)
    display = StageProgress("generate", console=console, enabled=True)
    stats = run_items(store, make_items(10), [config], policy=RetryPolicy(max_attempts=1), progress=display,
                      backends={"a": backend})["a"]
    out = console.file.getvalue()
    assert 0 < stats.failed < 10
    assert "generate a" in out and "10/10" in out and "/s" in out
    assert f"ok {stats.done}  failed {stats.failed}  retrying 0" in out


def test_plain_progress_prints_steady_lines_when_output_is_not_a_terminal(store):
    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    config, backend = scripted("a", fail_rate=0.3, latency_s=0.02)
    display = StageProgress("generate", console=console, interval_s=0.05)  # auto: not a terminal, so plain
    assert display.mode == "plain"
    stats = run_items(store, make_items(40), [config], policy=FAST, progress=display, concurrency=4,
                      backends={"a": backend})["a"]
    lines = console.file.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("generate a: ") for line in lines)
    assert "/s, failed 0, retries " in lines[0] and "ETA " in lines[0]
    assert lines[-1].startswith("generate a: 40/40 (100%)") and lines[-1].endswith("ETA done")
    assert f"retries {stats.retries}" in lines[-1] and stats.retries > 0
    assert sum(line.startswith("generate a: 40/40") for line in lines) == 1  # a finished bar is shown once


def test_progress_none_prints_nothing_and_unknown_modes_are_refused(store):
    console = Console(file=io.StringIO(), force_terminal=True)
    config, backend = scripted("a")
    run_items(store, make_items(5), [config], policy=FAST, backends={"a": backend},
              progress=StageProgress("generate", console=console, mode="none"))
    assert console.file.getvalue() == ""
    with pytest.raises(ValueError, match="auto, rich, plain, none"):
        StageProgress("generate", mode="fancy")


# -- the adaptive limiter ---------------------------------------------------------------------------------

def test_a_429_cuts_the_limit_by_the_share_of_429s_once_per_round():
    limiter = AdaptiveLimiter(64, initial=64)
    for _ in range(19):
        limiter.succeeded()
    started = time.monotonic()
    limiter.overloaded(started)  # 1 of 20 answers was a 429: the limit loses 5%, not half
    assert limiter.limit == 60 and limiter.decreases == 1
    for _ in range(10):  # the rest of the burst: calls sent before the cut
        limiter.overloaded(started)
    assert limiter.limit == 60 and limiter.decreases == 1
    for _ in range(3):  # a server refusing most calls is backed off by up to half per round
        limiter.overloaded(time.monotonic())
    assert limiter.limit <= 60 // 8 + 1 and limiter.decreases == 4


def test_the_limit_recovers_within_rounds_once_429s_stop():
    limiter = AdaptiveLimiter(64, initial=64, quiet_s=0.0)
    for _ in range(6):
        limiter.overloaded(time.monotonic())
    assert limiter.limit == 1
    for _ in range(70):  # no 429 for quiet_s: one more slot per answer, so about log2(64) rounds
        limiter.succeeded()
    assert limiter.limit == 64  # and never above the ceiling


def test_while_429s_keep_coming_the_limit_grows_back_only_part_way():
    limiter = AdaptiveLimiter(64, initial=64)
    limiter.overloaded(time.monotonic())
    low = limiter.limit
    for _ in range(low):  # one round of answers closes half the gap to the ceiling, no more
        limiter.succeeded()
    assert low < limiter.limit < 64


def test_a_retry_after_delays_only_the_request_that_got_it():
    class OneRateLimited(Backend):
        name = "one-429"

        def __init__(self):
            self.calls: list[tuple[str, float]] = []

        async def generate(self, request: GenerationRequest) -> Generation:
            self.calls.append((request.key, time.monotonic()))
            if request.key == "0" and len([k for k, _ in self.calls if k == "0"]) == 1:
                raise BackendError("slow down", retryable=True, kind="rate_limited", status=429,
                                   retry_after=1.0)
            await asyncio.sleep(0.01)
            return Generation(text="ok")

    backend = OneRateLimited()
    requests = [GenerationRequest(key=str(i), messages=[{"role": "user", "content": "x"}]) for i in range(40)]
    stats = asyncio.run(execute(requests, backend, lambda outcome: None, concurrency=2, policy=FAST,
                                adaptive=True))
    assert stats.done == 40 and stats.retries == 1 and stats.attempts == 41
    start = backend.calls[0][1]
    others = [t - start for key, t in backend.calls if key != "0"]
    retry = [t - start for key, t in backend.calls if key == "0"][1]
    assert retry >= 0.95  # the request that got Retry-After waited it out ...
    # ... while the other 39 went on at the full limit of 2 (0.2 s at 10 ms each; wide margin for a loaded
    # machine), all done before it
    assert max(others) < min(retry, 0.9)


def test_queueing_fit_finds_a_serial_server_and_leaves_a_batching_one_alone():
    serial = AdaptiveLimiter(64)
    batching = AdaptiveLimiter(64)
    for _ in range(8):
        for n in range(1, 9):  # in flight when sent: 1..8
            started = time.monotonic() - 0.1 * n  # a serial server: the n-th in line waits n service times
            serial.succeeded(started, n)
            batching.succeeded(time.monotonic() - (1.0 + 0.001 * n), n)  # a batching server barely slows
    assert serial.limit <= 2
    assert batching.limit == 64


def test_a_weak_line_through_the_latencies_never_cuts_the_limit():
    noisy = AdaptiveLimiter(64)
    draw = random.Random(1)
    for i in range(64):  # latency rises with the load, but answer lengths vary far more than that
        n = 1 + i % 16
        noisy.succeeded(time.monotonic() - 0.05 * n * draw.lognormvariate(0, 2.0), n)
    assert noisy.limit == 64


def test_time_outs_halve_the_limit_once_per_round_and_are_counted():
    limiter = AdaptiveLimiter(64, initial=64)
    started = time.monotonic()
    for _ in range(5):
        limiter.timed_out(started)
    assert limiter.limit == 32 and limiter.timeouts == 5


class Overloaded(Backend):
    """Answers 429 whenever more than ``capacity`` calls are in flight, and records the peak."""

    name = "overloaded"

    def __init__(self, capacity: int):
        self.capacity, self.in_flight, self.peak, self.rejected = capacity, 0, 0, 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.in_flight += 1
        try:
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight > self.capacity:
                self.rejected += 1
                raise BackendError("too many", retryable=True, kind="rate_limited", status=429)
            await asyncio.sleep(0.005)
            return Generation(text="ok")
        finally:
            self.in_flight -= 1


def test_execute_adapts_to_a_server_that_answers_429():
    backend = Overloaded(capacity=4)
    requests = [GenerationRequest(key=str(i), messages=[{"role": "user", "content": "x"}])
                for i in range(300)]
    policy = RetryPolicy(max_attempts=50, backoff_base_s=0.001, backoff_max_s=0.01)
    results = []
    stats = asyncio.run(execute(requests, backend, results.append, concurrency=32, policy=policy,
                                adaptive=True))
    assert stats.done == 300 and stats.failed == 0 and len(results) == 300
    assert stats.concurrency < 32  # it backed off
    # a fixed limit of 32 has about 9,700 calls refused here (and items failing); the limiter keeps it to
    # about one 429 per two answers: it regrows towards the ceiling between 429s, so that a few random 429s
    # do not hold a healthy server back
    assert backend.rejected < 300
