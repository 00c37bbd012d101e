"""Tokens per second of the local transformers backend on the embedded model: batched vs one at a time.

    .venv/bin/python benchmarks/local_batching.py [--prompts 32] [--new-tokens 64] [--batch-sizes 8 16]

Both modes use greedy decoding on the same prompts, so they produce the same tokens and the ratio of
tokens/s is the ratio of wall times. "Batched" sends every prompt at once, as the runner does with its
concurrency, and lets the backend's worker group them; "one at a time" sends the next prompt only after the
previous answer. The modes take turns on chunks of the prompts, so load from other processes on the machine
affects them alike. The target is a ratio of at least 3x on a 2-core CPU. Prints peak memory (max RSS).

Loads the embedded model from the cache (converting it first if needed, ~25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import psutil  # noqa: E402

from mijabench.backends.base import GenerationRequest  # noqa: E402
from mijabench.backends.embedded import EmbeddedBackend  # noqa: E402
from mijabench.records import SamplingSettings  # noqa: E402
from peak_memory import PeakRss  # noqa: E402

TOPICS = ["the sea", "a lighthouse keeper", "autumn leaves", "a city at night", "a lost dog",
          "the first snow", "a long train ride", "an old library", "a garden in spring",
          "a mountain village", "a thunderstorm",
          "a market morning", "a bicycle trip", "a quiet harbour", "a desert road", "a school play"]
ASKS = ["Write a short story about {}.", "Describe {} in a few sentences.", "Write a poem about {}.",
        "Tell me about {} in detail."]


def prompts(n: int) -> list[str]:
    return [ASKS[i % len(ASKS)].format(TOPICS[i % len(TOPICS)]) for i in range(n)]


async def timed(backend: EmbeddedBackend, requests: list[GenerationRequest], together: bool):
    start = time.perf_counter()
    if together:
        results = await asyncio.gather(*(backend.generate(r) for r in requests))
    else:
        results = [await backend.generate(r) for r in requests]
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = SamplingSettings(max_tokens=args.new_tokens)
    requests = [GenerationRequest(str(i), [{"role": "user", "content": p}], settings)
                for i, p in enumerate(prompts(args.prompts))]
    backend = EmbeddedBackend(batch_size=1)
    load_start = time.perf_counter()
    backend.load()
    print(f"model: {backend.spec}  load {time.perf_counter() - load_start:.1f}s  "
          f"torch threads {torch.get_num_threads()}  cpus {psutil.cpu_count()}  "
          f"load average {psutil.getloadavg()[0]:.1f}")
    print(f"{args.prompts} prompts x up to {args.new_tokens} new tokens, greedy\n")

    async def bench():
        warm = GenerationRequest("warm", requests[0].messages, SamplingSettings(max_tokens=4))
        await backend.generate(warm)
        modes = [1, *args.batch_sizes]
        totals = {size: {"tokens": 0, "seconds": 0.0, "batches": 0, "peak": 0} for size in modes}
        differ = dict.fromkeys(args.batch_sizes, 0)
        # Modes take turns chunk by chunk, so a change in the machine's load hits them all alike.
        chunk = max(args.batch_sizes)
        for at in range(0, len(requests), chunk):
            part = requests[at:at + chunk]
            texts: list[str] = []
            for size in modes:
                backend._batch_size_option = size
                before = backend.batches_run
                with PeakRss() as rss:
                    results, seconds = await timed(backend, part, together=size > 1)
                row = totals[size]
                row["tokens"] += sum(g.completion_tokens for g in results)
                row["seconds"] += seconds
                row["batches"] += backend.batches_run - before
                row["peak"] = max(row["peak"], rss.peak)
                if size == 1:
                    texts = [g.text for g in results]
                else:
                    differ[size] += sum(a != g.text for a, g in zip(texts, results, strict=True))
        await backend.aclose()
        for size, count in differ.items():
            if count:
                print(f"note: batch {size}: {count} of {len(requests)} greedy texts differ from one at a "
                      "time (float rounding on near ties)")
        return [("one at a time" if size == 1 else f"batched {size}", size, row["tokens"], row["seconds"],
                 row["peak"], row["batches"]) for size, row in totals.items()]

    rows = asyncio.run(bench())
    base_rate = rows[0][2] / rows[0][3]
    header = f"{'mode':<16}{'batches':>8}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'ratio':>7}"
    print(f"{header}{'peak RSS':>10}")
    for label, _size, tokens, seconds, peak, batches in rows:
        rate = tokens / seconds
        print(f"{label:<16}{batches:>8}{tokens:>8}{seconds:>9.1f}{rate:>10.1f}{rate / base_rate:>6.1f}x"
              f"{peak / 2**20:>8.0f}MB")
    best = max(r[2] / r[3] for r in rows[1:]) / base_rate
    print(f"\nbest batched / one at a time: {best:.1f}x (target >= 3x)  "
          f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MB")


if __name__ == "__main__":
    main()
