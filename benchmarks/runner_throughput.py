"""Runner throughput against a stub OpenAI-compatible server with a fixed latency (default 50 ms), compared
with a bare asyncio + aiohttp client sending the same requests at the same concurrency.

Target: the runner (adaptive limiter, retries, progress, batched store writes) reaches at least 90% of the
bare client's requests per second, and every response is stored.

    .venv/bin/python benchmarks/runner_throughput.py [--requests 6400] [--concurrency 64] [--latency 0.05]

The stub runs in its own process so the server and the client do not share one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from mijabench.backends.registry import parse_model
from mijabench.records import BenchmarkItem
from mijabench.run.engine import RetryPolicy
from mijabench.run.generate import build_messages, run_items
from mijabench.store import Store

MODEL = "stub-model"


def make_items(n: int, round_no: int) -> list[BenchmarkItem]:
    return [BenchmarkItem(language="en", group="women", seed_text=f"seed {i}", scenario_category="history",
                          scenario_text="a market square", strategy="persona_assignment",
                          prompt=f"round {round_no} prompt {i}: write a short story set in a market square")
            for i in range(n)]


async def bare_client(url: str, items: list[BenchmarkItem], concurrency: int) -> tuple[float, float, int]:
    """The baseline: one session, ``concurrency`` workers, the same JSON bodies, answers parsed and kept."""
    config = parse_model(f"openai:{MODEL}@{url}")
    answers: list[str] = []
    queue = iter(items)
    start, cpu = time.perf_counter(), time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     headers={"Content-Type": "application/json"}) as session:
        async def worker() -> None:
            for item in queue:
                body = json.dumps({"model": MODEL, "messages": build_messages(item, config.settings),
                                   "max_tokens": 2048, "temperature": 0.0, "top_p": 1.0, "seed": 0,
                                   "chat_template_kwargs": {"enable_thinking": False}}).encode()
                async with session.post(url + "/chat/completions", data=body) as response:
                    data = json.loads(await response.read())
                    answers.append(data["choices"][0]["message"]["content"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, time.process_time() - cpu, len(answers)


def runner(url: str, items: list[BenchmarkItem], concurrency: int, workdir: Path) -> tuple[float, float, int]:
    """The runner end to end: check, resume set, requests, retries, batched writes, final flush."""
    with Store(workdir) as store:
        store.put_items(items, bench="speed")
        start, cpu = time.perf_counter(), time.process_time()
        stats = run_items(store, items, [parse_model(f"openai:{MODEL}@{url}")], concurrency=concurrency,
                          policy=RetryPolicy(), progress=False)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        (model_stats,) = stats.values()
        stored = store.query("SELECT COUNT(*) FROM responses WHERE error IS NULL")[0][0]
        assert model_stats.done == len(items) and model_stats.failed == 0, model_stats
    print(f"  runner: in-flight limit at the end {model_stats.concurrency}")
    return elapsed, cpu, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("stub_server.py")),
                               "--latency", str(args.latency), "--model", MODEL],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        ideal = args.concurrency / args.latency
        print(f"stub at {url}: latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, "
              f"{args.requests:,} requests per round (ideal {ideal:,.0f} req/s)")
        asyncio.run(bare_client(url, make_items(200, -1), args.concurrency))  # warm up both processes
        bare_rates, runner_rates, bare_cpu, runner_cpu = [], [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for round_no in range(args.rounds):
                items = make_items(args.requests, round_no)
                seconds, cpu, answered = asyncio.run(bare_client(url, items, args.concurrency))
                assert answered == args.requests
                bare_rates.append(args.requests / seconds)
                bare_cpu.append(cpu * 1000 / args.requests)
                seconds, cpu, stored = runner(url, items, args.concurrency, Path(tmp) / f"ws{round_no}")
                runner_cpu.append(cpu * 1000 / args.requests)
                if stored != args.requests:
                    raise SystemExit(f"FAIL: {stored} responses stored for {args.requests} requests")
                runner_rates.append(args.requests / seconds)
                print(f"round {round_no + 1}: bare client {bare_rates[-1]:,.0f} req/s, runner "
                      f"{runner_rates[-1]:,.0f} req/s ({runner_rates[-1] / bare_rates[-1]:.1%}), "
                      f"{stored:,} responses stored; client CPU per request {bare_cpu[-1]:.2f} ms bare, "
                      f"{runner_cpu[-1]:.2f} ms runner")
        bare, run = statistics.median(bare_rates), statistics.median(runner_rates)
        verdict = "OK" if run >= 0.9 * bare else "BELOW TARGET"
        print(f"median: bare client {bare:,.0f} req/s, runner {run:,.0f} req/s, ratio {run / bare:.1%} "
              f"(target >= 90%): {verdict}; every response stored")
        print(f"client CPU per request (median): bare {statistics.median(bare_cpu):.2f} ms, runner "
              f"{statistics.median(runner_cpu):.2f} ms; the bare client's rate is bound by "
              f"{'the latency' if statistics.median(bare_rates) > 0.9 * ideal else 'CPU'}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
