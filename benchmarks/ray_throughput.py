"""Ray Data executor throughput against the plain (local) runner, with the scripted backend.

Both send the same N items to a scripted backend that sleeps ``--latency`` per request (standing in for a
model server). The Ray executor drives one backend in each of ``--workers`` Ray actors, ``--concurrency``
requests in flight each; the local runner drives one backend in this process. Every run stores into a fresh
workspace, and the script checks that every item was stored exactly once.

Figures, per round, medians at the end:

- local: items / wall time of ``run_items``, with the same backend settings as each Ray worker (one backend,
  ``--concurrency`` in flight) and with as many requests in flight as all Ray workers together;
- ray, generation: items / (time from the first block starting on a worker to the last block stored);
- ray, run: items / wall time of ``run_items_ray`` (the worker pool's start-up included: processes spawned,
  backends built);
- ray, with start-up: as above plus ``ray.init`` (a local instance started once per process), measured once.

Target: the Ray executor's *generation* throughput is at least 70% of the local runner's (checked against
both baselines). Start-up is a fixed cost per run (seconds; see the figures) that a cluster pays once per
model, however long the run; the figures with it included are printed too.

    .venv/bin/python benchmarks/ray_throughput.py [--items 10000] [--latency 0.01] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mijabench.backends.registry import ModelConfig
from mijabench.records import BenchmarkItem
from mijabench.run.engine import RetryPolicy
from mijabench.run.generate import run_items
from mijabench.run.ray_mode import connect, run_items_ray
from mijabench.store import Store


def make_items(n: int, round_no: int) -> list[BenchmarkItem]:
    return [BenchmarkItem(language="en", group="women", seed_text=f"seed {i}", scenario_category="history",
                          scenario_text="a market square", strategy="persona_assignment",
                          prompt=f"round {round_no} prompt {i}: write a short story set in a market square")
            for i in range(n)]


def check_stored_once(store: Store, items: list[BenchmarkItem], model: str) -> None:
    responses = store.responses(model)
    ids = {r.id for r in responses}
    if not (len(responses) == len(ids) == len(items) and all(r.ok for r in responses)
            and {r.item_id for r in responses} == {i.id for i in items}):
        raise SystemExit(f"FAIL: {len(responses)} responses ({len(ids)} distinct) for {len(items)} items")


def local_round(items, config, workdir: Path) -> float:
    with Store(workdir) as store:
        store.put_items(items, bench="speed")
        start = time.perf_counter()
        stats = run_items(store, items, [config], policy=RetryPolicy(), progress=False)
        seconds = time.perf_counter() - start
        assert stats[config.name].done == len(items), stats
        check_stored_once(store, items, config.name)
    return len(items) / seconds


def ray_round(items, config, workdir: Path, workers: int,
              block_size: int | None) -> tuple[float, float, dict]:
    with Store(workdir) as store:
        store.put_items(items, bench="speed")
        start = time.perf_counter()
        stats = run_items_ray(store, items, [config], policy=RetryPolicy(), progress=False,
                              num_workers=workers, block_size=block_size)
        seconds = time.perf_counter() - start
        assert stats[config.name].done == len(items), stats
        check_stored_once(store, items, config.name)
        (timing,) = [e["detail"] for e in store.events("generate") if e["kind"] == "ray_timing"]
    return len(items) / seconds, len(items) / timing["generate_s"], {**timing, "run_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.01, help="seconds the scripted backend sleeps")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight per backend")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block-size", type=int, default=None, help="default: the executor's choice")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    config = ModelConfig(spec="scripted:speed", name="speed", concurrency=args.concurrency,
                         options={"latency_s": args.latency})
    # Two baselines: the local runner with the same backend settings (one backend, the same concurrency as
    # each Ray worker), and with as many requests in flight as all the Ray workers together.
    baselines = {"same settings": config,
                 "same total in flight": replace(config, concurrency=args.concurrency * args.workers)}
    start = time.perf_counter()
    connect(None, args.workers)  # a local Ray instance, kept for every round
    init_s = time.perf_counter() - start
    print(f"{args.items:,} items, scripted backend with {args.latency * 1000:.0f} ms per request; Ray: "
          f"{args.workers} workers x {args.concurrency} in flight; local runner: one backend with "
          f"{args.concurrency} ('same settings') or {args.concurrency * args.workers} ('same total in "
          f"flight'); Ray's local instance started in {init_s:.1f} s")
    local_rates: dict[str, list[float]] = {name: [] for name in baselines}
    ray_run_rates, ray_gen_rates, startups, first_total = [], [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            items = make_items(args.items, round_no)
            for n, (name, local_config) in enumerate(baselines.items()):
                local_rates[name].append(local_round(items, local_config, Path(tmp) / f"local{round_no}-{n}"))
            run_rate, gen_rate, timing = ray_round(items, config, Path(tmp) / f"ray{round_no}", args.workers,
                                                   args.block_size)
            ray_run_rates.append(run_rate)
            ray_gen_rates.append(gen_rate)
            startups.append(timing["startup_s"])
            if first_total is None:  # this process's first run is the one that paid for ray.init
                first_total = args.items / (init_s + timing["run_s"])
            locals_now = ", ".join(f"{rates[-1]:,.0f} ({name})" for name, rates in local_rates.items())
            print(f"round {round_no + 1}: local {locals_now} items/s; ray generation {gen_rate:,.0f} "
                  f"items/s, ray run {run_rate:,.0f} items/s (pool start-up {timing['startup_s']:.1f} s, "
                  f"{timing['blocks']} blocks of {timing['block_size']}, workers busy "
                  f"{timing['worker_busy_s'] / args.workers / timing['generate_s']:.0%} of the time); "
                  f"every item stored once in each run")
    gen, run = statistics.median(ray_gen_rates), statistics.median(ray_run_rates)
    print(f"median ray generation (start-up excluded): {gen:,.0f} items/s")
    for name, rates in local_rates.items():
        local = statistics.median(rates)
        verdict = "OK" if gen >= 0.7 * local else "BELOW TARGET"
        print(f"  vs local runner, {name}: {local:,.0f} items/s -> {gen / local:.0%} (target >= 70%): "
              f"{verdict}; with the pool's start-up (median {statistics.median(startups):.1f} s) "
              f"{run:,.0f} items/s -> {run / local:.0%}; first run with ray.init ({init_s:.1f} s) too "
              f"{first_total:,.0f} items/s -> {first_total / local:.0%}")


if __name__ == "__main__":
    main()
