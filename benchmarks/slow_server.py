"""The runner against a server that generates one request at a time (no batching), at the default
concurrency of 64: does it queue requests into their time-outs?

Target: no time-outs, one attempt per request, about one or two requests in flight once settled, and a
stored latency close to the server's service time rather than the time spent waiting in its queue.

    PYTHONPATH=src .venv/bin/python benchmarks/slow_server.py [--requests 60] [--latency 0.25] [--timeout 5]

With the old fixed 64 in flight, 60 requests at 0.25 s each queue for up to 15 s, three times the time-out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mijabench.backends.registry import parse_model
from mijabench.records import BenchmarkItem
from mijabench.run.engine import RetryPolicy
from mijabench.run.generate import run_items
from mijabench.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from stub_server import StubServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--latency", type=float, default=0.25, help="service time of one request")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=None, help="ceiling (default: the backend's 64)")
    args = parser.parse_args()
    items = [BenchmarkItem(language="en", group="women", seed_text=f"seed {i}", scenario_category="history",
                           scenario_text="a market", strategy="persona_assignment", prompt=f"slow {i}")
             for i in range(args.requests)]
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp)) as store, \
            StubServer(models=["m"], latency_s=args.latency, serial=True, record=False) as stub:
        start = time.perf_counter()
        policy = RetryPolicy(timeout_s=args.timeout)
        (stats,) = run_items(store, items, [parse_model(f"openai:m@{stub.url}")], progress=False,
                             concurrency=args.concurrency, policy=policy).values()
        seconds = time.perf_counter() - start
        latencies = [r[0] for r in store.query("SELECT latency_s FROM responses WHERE error IS NULL "
                                               "ORDER BY rowid")]
    ideal = args.requests * args.latency
    print(f"serial server, {args.latency:g} s per request, time-out {args.timeout:g} s: "
          f"{args.requests} requests in {seconds:.1f}s (one at a time back to back: {ideal:.1f}s)")
    attempts, timeouts = getattr(stats, "attempts", "?"), getattr(stats, "timeouts", "?")  # older runners
    print(f"answered {stats.done}, failed {stats.failed}, attempts {attempts}, time-outs {timeouts}, "
          f"requests the server saw abandoned {stub.abandoned}, limit at the end {stats.concurrency}")
    if latencies:
        settled = latencies[len(latencies) // 2:]
        print(f"stored latency_s: median {statistics.median(latencies):.2f}s overall, "
              f"{statistics.median(settled):.2f}s over the second half, max {max(latencies):.2f}s")
    ok = timeouts == 0 and stats.failed == 0 and attempts == args.requests
    print("OK" if ok else "BELOW TARGET")


if __name__ == "__main__":
    main()
