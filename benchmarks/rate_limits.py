"""The runner against a server that answers a share of first attempts with HTTP 429 (Retry-After: 1),
next to the same run against the same server without 429s.

Target: with 5% 429s at concurrency 64 and 20 ms latency, at least 50% of the throughput without 429s.

    PYTHONPATH=src .venv/bin/python benchmarks/rate_limits.py [--requests 2000] [--share 0.05]

Each stub runs in its own process so the server and the client do not share one core.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mijabench.backends.registry import parse_model
from mijabench.records import BenchmarkItem
from mijabench.run.engine import RetryPolicy
from mijabench.run.generate import run_items
from mijabench.store import Store
from runner_throughput import make_items  # the same prompts as the throughput benchmark

MODEL = "stub-model"


def serve(latency: float, share: float, retry_after: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("stub_server.py")),
                               "--latency", str(latency), "--model", MODEL, "--rate-limit", str(share),
                               "--retry-after", retry_after], stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().strip()


def one_run(url: str, items: list[BenchmarkItem], concurrency: int, workdir: Path):
    with Store(workdir) as store:
        start = time.perf_counter()
        stats = run_items(store, items, [parse_model(f"openai:{MODEL}@{url}")], concurrency=concurrency,
                          policy=RetryPolicy(max_attempts=10), progress=False, bench="rate")
        (model_stats,) = stats.values()
        return time.perf_counter() - start, model_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--share", type=float, default=0.05, help="share of first attempts answered 429")
    parser.add_argument("--retry-after", default="1")
    args = parser.parse_args()

    clean, clean_url = serve(args.latency, 0.0, args.retry_after)
    limited, limited_url = serve(args.latency, args.share, args.retry_after)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            one_run(clean_url, make_items(200, -1), args.concurrency, Path(tmp) / "warm")
            n, c = args.requests, args.concurrency
            base_s, base = one_run(clean_url, make_items(n, 1), c, Path(tmp) / "a")
            rl_s, rl = one_run(limited_url, make_items(n, 2), c, Path(tmp) / "b")
        for label, seconds, stats in (("no 429", base_s, base), (f"{args.share:.0%} 429", rl_s, rl)):
            print(f"{label}: {args.requests:,} requests in {seconds:.2f}s "
                  f"({args.requests / seconds:,.0f} req/s), "
                  f"answered {stats.done:,}, failed {stats.failed:,}, retries {stats.retries:,}, "
                  f"attempts {getattr(stats, 'attempts', '?')}, limit at the end {stats.concurrency}")
        ratio = base_s / rl_s
        # the request whose first attempt was the last to get a 429 waits out its Retry-After before its
        # retry: no client can finish sooner than the 429-free run plus one Retry-After
        floor = base_s + float(args.retry_after)
        print(f"best possible: {floor:.2f}s ({base_s / floor:.1%}); the runner took {rl_s - base_s:.2f}s "
              f"more than the 429-free run, of which {float(args.retry_after):g}s is the last Retry-After")
        verdict = "OK" if ratio >= 0.5 else "BELOW TARGET"
        print(f"throughput with {args.share:.0%} 429s (Retry-After {args.retry_after}) at concurrency "
              f"{args.concurrency}: {ratio:.1%} of the run without 429s (target >= 50%): {verdict}")
    finally:
        for server in (clean, limited):
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
