"""Tokens per second of the local transformers backend on the embedded model, and the demo audit's time.

    .venv/bin/python benchmarks/local_batching.py [--prompts 100] [--new-tokens 64] [--batch-sizes 16 32 64]
    .venv/bin/python benchmarks/local_batching.py --audit        # also time `mijabench audit` (the demo)
    .venv/bin/python benchmarks/local_batching.py --audit-phases # the demo in process, with its phases

In process: the same prompts go through the backend at each fixed batch size and with the automatic one
(``auto``: the chooser's pick, from memory and measured throughput), all sent at once as the runner does;
"one at a time" answers the first ``--single`` prompts one after the other, as the reference for identical
replies and the base rate. Greedy decoding throughout, so every mode should give the same texts; the count
that differ is printed (float rounding on near ties can flip one). Each mode prints tokens, wall seconds,
tokens/s, process CPU seconds (user + system, all threads) and peak RSS. Targets on 2 cores: at least 150
tokens/s for 64-token replies over 100 items.

``--audit-phases`` runs the same demo in this process and also prints the time of its prefill passes and
decode steps, the prompt tokens padded, the steps and rows, and a hash of the replies: the figures to
compare two versions of the code on a machine whose speed drifts. Last, the demo's matrix arithmetic and
the seconds this machine needs for it alone, at the float32 rates its products reach here: a floor under
the phases, to judge the 90 s target on a given machine.

``--audit`` runs the README's first command (``mijabench audit``, the embedded demo) in a fresh workspace as a
child process and prints its wall time, CPU time and peak RSS. Target: under 90 s after set-up on a quiet
2-core machine, peak RSS under 2 GB. The load average is printed before and after, because a shared machine
stretches wall time; CPU time is the figure to compare.

Loads the embedded model from the cache (converting it first if needed, ~25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

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


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in psutil.getloadavg())


async def run_mode(size: int | str, requests: list[GenerationRequest], together: bool,
                   threads: int | None) -> dict:
    # threads=None: the backend picks them from the idle cores when it loads, as `mijabench run` does
    backend = EmbeddedBackend(batch_size=None if size == "auto" else int(size), threads=threads)
    backend.load()
    await backend.generate(GenerationRequest("warm", requests[0].messages, SamplingSettings(max_tokens=2)))
    start, cpu = time.perf_counter(), cpu_seconds()
    with PeakRss() as rss:
        if together:
            results = await asyncio.gather(*(backend.generate(r) for r in requests))
        else:
            results = [await backend.generate(r) for r in requests]
    row = {"mode": f"batch {size}" if together else "one at a time", "results": results,
           "seconds": time.perf_counter() - start, "cpu": cpu_seconds() - cpu, "peak": rss.peak,
           "tokens": sum(g.completion_tokens for g in results)}
    if backend.chooser is not None and size == "auto":
        row["chosen"] = backend.batch_size
        row["measured"] = dict(backend.chooser.measured)
    await backend.aclose()
    return row


def time_audit() -> None:
    with tempfile.TemporaryDirectory(prefix="mija-demo-") as folder:
        env = {**os.environ, "MIJABENCH_WORKSPACE": str(Path(folder) / "ws"),
               "PYTHONPATH": str(ROOT / "src")}
        print(f"\n`mijabench audit` (the demo), load average before: {load_average()}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mijabench", "audit", "--out",
                               str(Path(folder) / "report")], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            print(done.stderr[-2000:])
            raise SystemExit(f"the demo audit failed (exit {done.returncode})")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"demo audit: {wall:.1f}s wall, {cpu:.1f}s CPU, peak RSS {after.ru_maxrss / 1024:.0f}MB "
              f"(target: under 90 s on a quiet 2-core machine, under 2048MB)  load average after: "
              f"{load_average()}")


def audit_phases() -> None:
    """The demo audit in this process, with timers around the decode loop's prefill passes and steps: on a
    machine whose speed drifts between runs (15 s from one demo to the next on a 2-core VM), the phases and
    the counts (prompt tokens padded, steps, rows) separate two versions of the code where wall time
    cannot. The hash of the replies checks that they did not change."""
    import hashlib
    import sqlite3

    from mijabench.backends import continuous
    from mijabench.backends.transformers_local import TransformersBackend
    from mijabench.cli.main import app

    seen = {"load": 0.0, "prefill": 0.0, "step": 0.0, "steps": 0, "rows": 0, "real": 0, "padded": 0,
            "buffers": []}
    loop_class = continuous.DecodeLoop
    prefill, step, resize = loop_class._prefill, loop_class.step, loop_class._resize

    def timed_prefill(loop, requests, prefix, plan):
        start = time.perf_counter()
        try:
            return prefill(loop, requests, prefix, plan)
        finally:
            seen["prefill"] += time.perf_counter() - start
            shared = 0 if prefix is None else prefix.length
            seen["real"] += sum(len(r.prompt_ids) - shared for r in requests)
            seen["padded"] += len(requests) * (max(len(r.prompt_ids) for r in requests) - shared)

    def timed_step(loop):
        rows, start = loop.active, time.perf_counter()
        try:
            return step(loop)
        finally:
            seen["step"] += time.perf_counter() - start
            seen["steps"] += 1
            seen["rows"] += rows

    def counted_resize(loop, rows, capacity):
        seen["buffers"].append(f"{rows}x{capacity}")
        return resize(loop, rows, capacity)

    load = TransformersBackend.load

    def timed_load(backend):
        if backend.model is not None:
            return load(backend)
        start = time.perf_counter()  # the load, or a wait for it on another thread: timed from its start
        try:
            return load(backend)
        finally:
            seen["load"] = max(seen["load"], time.perf_counter() - start)
            if backend.model is not None:
                seen["config"] = backend.model.config

    loop_class._prefill, loop_class.step, loop_class._resize = timed_prefill, timed_step, counted_resize
    TransformersBackend.load = timed_load
    with tempfile.TemporaryDirectory(prefix="mija-demo-") as folder:
        os.environ["MIJABENCH_WORKSPACE"] = str(Path(folder) / "ws")
        print(f"\n`mijabench audit` (the demo) in process, load average before: {load_average()}", flush=True)
        start, cpu = time.perf_counter(), cpu_seconds()
        sys.argv = ["mijabench", "audit", "--out", str(Path(folder) / "report")]
        try:
            app()
        except SystemExit as exit_:
            if exit_.code:
                raise
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        store = sqlite3.connect(Path(folder) / "ws" / "mijabench.sqlite")
        texts = [text for (text,) in store.execute("SELECT text FROM responses ORDER BY item_id, model")]
        store.close()
    steps = max(1, seen["steps"])
    print(f"demo audit in process: {wall:.1f}s wall, {cpu:.1f}s CPU, peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MB; load average after: "
          f"{load_average()}")
    print(f"  model load {seen['load']:.1f}s; prefill {seen['prefill']:.1f}s "
          f"({seen['real']} prompt tokens, {seen['padded']} with padding); "
          f"decode {seen['step']:.1f}s ({seen['steps']} steps, {seen['rows'] / steps:.1f} rows a step); "
          f"buffers (rows x columns): {' '.join(seen['buffers'])}")
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    print(f"  {len(texts)} replies, sha256 of their texts {digest}")
    if "config" in seen:
        print_arithmetic(seen["config"], seen["padded"], seen["rows"], seen["rows"] / steps)


def print_arithmetic(config, prefill_tokens: int, decode_rows: int, mean_rows: float) -> None:
    """The demo's matrix arithmetic and how long this machine needs for it alone, at the float32 rates its
    products reach here in the shapes of a prefill pass (512 tokens) and of a decode step (the mean rows):
    a floor under the phases above, to judge a time target on a given machine."""
    import torch

    hidden, inner = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    kv = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim
    q = config.num_attention_heads * head_dim
    # (out, in) of every product in a layer: q, k, v, o, gate, up, down
    shapes = [(q, hidden), (kv, hidden), (kv, hidden), (hidden, q), (inner, hidden), (inner, hidden),
              (hidden, inner)]
    layer_macs = sum(o * i for o, i in shapes)
    head_macs = config.vocab_size * hidden
    prefill_flop = 2 * layer_macs * config.num_hidden_layers * prefill_tokens  # the prefill skips the head
    decode_flop = 2 * (layer_macs * config.num_hidden_layers + head_macs) * decode_rows
    weights = [[torch.randn(o, i) for o, i in shapes] for _ in range(config.num_hidden_layers)]
    head = torch.randn(config.vocab_size, hidden)

    def rate(rows: int, with_head: bool) -> float:
        inputs = {i: torch.randn(rows, i) for _, i in shapes}
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for layer in weights:
                for w in layer:
                    torch.nn.functional.linear(inputs[w.shape[1]], w)
            if with_head:
                torch.nn.functional.linear(inputs[hidden], head)
            best = min(best, time.perf_counter() - start)
        macs = layer_macs * config.num_hidden_layers + (head_macs if with_head else 0)
        return 2 * macs * rows / best

    prefill_rate, decode_rate = rate(512, False), rate(max(1, round(mean_rows)), True)
    floor = prefill_flop / prefill_rate + decode_flop / decode_rate
    print(f"  arithmetic: prefill {prefill_flop / 1e12:.2f} TFLOP, decode {decode_flop / 1e12:.2f} TFLOP; "
          f"this machine's float32 products run at {prefill_rate / 1e9:.0f} GFLOP/s in a prefill's shape "
          f"(512 tokens) and {decode_rate / 1e9:.0f} in a decode step's ({round(mean_rows)} rows): "
          f"{prefill_flop / prefill_rate:.1f} s + {decode_flop / decode_rate:.1f} s = {floor:.1f} s of "
          "matrix products alone, before attention, loading and the rest of the audit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", nargs="+", default=["auto", "16", "32", "64"],
                        help="fixed sizes and/or auto")
    parser.add_argument("--single", type=int, default=8, help="prompts answered one at a time (reference)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--audit", action="store_true", help="also time the demo audit command")
    parser.add_argument("--audit-only", action="store_true", help="only time the demo audit command")
    parser.add_argument("--audit-phases", action="store_true",
                        help="only run the demo audit, in this process, timing its prefill and decode")
    args = parser.parse_args()
    if args.audit_only:
        time_audit()
        return
    if args.audit_phases:
        audit_phases()
        return

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = SamplingSettings(max_tokens=args.new_tokens)
    requests = [GenerationRequest(str(i), [{"role": "user", "content": p}], settings)
                for i, p in enumerate(prompts(args.prompts))]
    print(f"embedded model, torch threads {torch.get_num_threads()}, cpus {psutil.cpu_count()}, "
          f"load average {load_average()}")
    print(f"{args.prompts} prompts x up to {args.new_tokens} new tokens, greedy\n")

    rows = [asyncio.run(run_mode(1, requests[:args.single], together=False, threads=args.threads))]
    reference = [g.text for g in rows[0]["results"]]
    for size in args.batch_sizes:
        rows.append(asyncio.run(run_mode(size, requests, together=True, threads=args.threads)))
    header = f"{'mode':<16}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'CPU s':>8}{'peak RSS':>10}"
    print(f"{header}  replies differing from one at a time")
    for row in rows:
        differ = sum(a != g.text for a, g in zip(reference, row["results"], strict=False))
        compared = min(len(reference), len(row["results"]))
        rate = row["tokens"] / row["seconds"]
        print(f"{row['mode']:<16}{row['tokens']:>8}{row['seconds']:>9.1f}{rate:>10.1f}"
              f"{row['cpu']:>8.1f}{row['peak'] / 2**20:>8.0f}MB  {differ} of {compared}")
        if "measured" in row:
            tried = ", ".join(f"{size}: {rate:.0f}" for size, rate in sorted(row["measured"].items()))
            print(f"{'':<16}auto chose {row['chosen']} rows; decode tokens/s by rows tried: {tried}")
    print(f"\nload average after: {load_average()}  process max RSS: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MB  (target: >= 150 tokens/s)")
    if args.audit:
        time_audit()


if __name__ == "__main__":
    main()
