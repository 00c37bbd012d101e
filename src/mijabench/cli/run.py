"""`mijabench run`: send a benchmark to one or more models and store every response."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..errors import MijaError
from ..run.engine import RetryPolicy, RunStats
from .common import ProgressOption, WorkspaceOption, console, err_console, open_store


def run(
    bench: str = typer.Option(..., "--bench", "-b",
                              help="A benchmark name in the store, or a JSONL/CSV/Parquet file of items."),
    model: list[str] = typer.Option(..., "--model", "-m",
                                    help="Model string (local:smollm2-135m, openai:MODEL@URL, hf:ID, "
                                         "gguf:PATH) or YAML file; repeat for several models."),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1,
                                    help="Most calls in flight per model (default: the model's; 64 "
                                         "for HTTP servers); below it the runner adapts to 429s and "
                                         "queueing."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Longest answer (default: 2048)."),
    temperature: float = typer.Option(None, "--temperature", min=0.0,
                                      help="Sampling temperature (default: 0, greedy)."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed (default: 0)."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="System prompt sent before each item."),
    no_system_prompt: bool = typer.Option(False, "--no-system-prompt",
                                          help="Send no system prompt, even if a model file sets one."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.1, help="Seconds one attempt may take."),
    max_attempts: int = typer.Option(6, "--max-attempts", min=1, help="Tries per item before it fails."),
    executor: str = typer.Option("local", "--executor",
                                 help="local (this process) or ray (Ray Data workers; needs "
                                      "mijabench[ray])."),
    ray_address: str = typer.Option(None, "--ray-address",
                                    help="Ray cluster to use with --executor ray (auto, HOST:6379, "
                                         "ray://HOST:10001); default: RAY_ADDRESS, else a local instance."),
    ray_workers: int = typer.Option(2, "--ray-workers", min=1,
                                    help="Ray workers per model; --concurrency is then per worker."),
    ray_engine: str = typer.Option("backend", "--ray-engine",
                                   help="backend (any model string) or vllm (hf: models on GPU nodes via "
                                        "ray.data.llm; untested)."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus", min=0.0, help="GPUs each Ray worker reserves."),
    target_ci: float = typer.Option(None, "--target-ci", help="Budgeted run: draw each (model, language, "
                                    "group) cell's prompts in a random order, judging them with the rule "
                                    "judge as they come, and stop the cell once the full width of its 95% "
                                    "interval (and its deviation's) is at most PTS points."),
    budget: int = typer.Option(None, "--budget", help="Budgeted run: at most CALLS target-model calls, the "
                               "last ones on the cells whose intervals are widest."),
    budget_seed: int = typer.Option(0, "--budget-seed", help="Seed of the order prompts are drawn in."),
    budget_by: list[str] = typer.Option([], "--budget-by", help="Finer cells: strategy and/or "
                                        "scenario_category (repeat)."),
    allow_model_change: bool = typer.Option(
        False, "--allow-model-change",
        help="Resume even when a server now reports another model (id or weights path) than the one whose "
             "responses are stored under the same name."),
    progress: str = ProgressOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Send every item to every model; resume where a previous run stopped. Exit code 1 when some items
    still failed after their retries (run again to retry them), 2 for bad input or an unreachable model."""
    from ..backends.registry import parse_model  # keeps `mijabench --help` fast
    from ..run.generate import run_items

    if executor not in ("local", "ray"):
        raise MijaError(f"--executor must be local or ray, got '{executor}'")
    if executor == "local" and (ray_address or ray_engine != "backend" or ray_gpus):
        raise MijaError("--ray-address, --ray-engine and --ray-gpus need --executor ray")
    if system_prompt is not None and no_system_prompt:
        raise MijaError("--system-prompt and --no-system-prompt exclude each other")
    budgeted = target_ci is not None or budget is not None
    if budgeted:  # bad targets and budgets: one line, before the store is opened
        from ..audit.config import AuditConfig
        AuditConfig(target_ci=target_ci, budget=budget, budget_by=list(budget_by)).check_budget()
    configs = []
    for text in model:
        config = parse_model(text, max_tokens=max_tokens, temperature=temperature, seed=seed,
                             system_prompt=system_prompt)
        if no_system_prompt:
            config = replace(config, settings=replace(config.settings, system_prompt=None))
        configs.append(config)
    policy = RetryPolicy(max_attempts=max_attempts, timeout_s=timeout)  # no whole-request cap
    with open_store(workspace) as store:
        bench_name, items = _load_bench(store, bench)
        if not items:
            raise MijaError(f"--bench {bench}: the benchmark has no items")
        if budgeted:
            _run_budgeted(store, bench_name, items, configs, target_ci, budget, budget_seed, budget_by,
                          concurrency=concurrency, policy=policy, progress=progress, executor=executor,
                          ray=dict(ray_address=ray_address, num_workers=ray_workers, engine=ray_engine,
                                   num_gpus=ray_gpus), allow_model_change=allow_model_change)
            return
        if executor == "ray":
            from ..run.ray_mode import run_items_ray

            stats = run_items_ray(store, items, configs, concurrency=concurrency, policy=policy,
                                  bench=bench_name, ray_address=ray_address, num_workers=ray_workers,
                                  engine=ray_engine, num_gpus=ray_gpus, progress=progress,
                                  allow_model_change=allow_model_change)
        else:
            stats = run_items(store, items, configs, concurrency=concurrency, policy=policy, bench=bench_name,
                              progress=progress, allow_model_change=allow_model_change)
    _print_summary(stats)
    from ..store.secrets import scrub_text

    aborted = {name: s.aborted for name, s in stats.items() if s.aborted}
    if aborted:
        for name, reason in aborted.items():
            err_console.print(Text.assemble(("error:", "red"), f" {name}: {scrub_text(reason)}"),
                              soft_wrap=True)
        raise typer.Exit(2)
    failed = sum(s.failed for s in stats.values())
    if failed:
        err_console.print(f"{failed:,} item(s) failed after retries and are stored as errors; "
                          "run the same command again to retry them.")
        raise typer.Exit(1)


def _run_budgeted(store, bench: str, items, configs, target_ci, budget, seed, by, *, concurrency, policy,
                  progress, executor: str, ray: dict, allow_model_change: bool) -> None:
    """The stopping rule of a budgeted audit (``audit.budgeted``) with the rule judge, printed per cell.
    On Ray, one connection serves every look; each look's prompts go through ``run_items_ray``."""
    from contextlib import nullcontext
    from functools import partial

    from ..audit.budgeted import cell_count, run_budgeted
    from ..run.budget import check_budget_args
    from ..run.generate import run_items

    check_budget_args(None if target_ci is None else target_ci / 100, budget,
                      cell_count(items, len(configs), by))  # before anything is stored
    judge = "rules:refusal-v1"
    if executor == "ray":
        from ..run.ray_mode import ray_runner
        runner = ray_runner(**ray, policy=policy, allow_model_change=allow_model_change)
        backends = {}
    else:  # one backend per model for every look (a local model loads its weights once)
        from ..backends.registry import create_backend
        backends = {c.name: create_backend(c) for c in configs}
        runner = nullcontext(partial(run_items, policy=policy, allow_model_change=allow_model_change,
                                     backends=backends))
    try:
        with runner as generate:
            audit = run_budgeted(store, bench, items, configs, [judge], [judge],
                                 target=None if target_ci is None else target_ci / 100, budget=budget,
                                 seed=seed, by=by, concurrency=concurrency, progress=progress,
                                 generate=generate)
    finally:
        for backend in backends.values():
            asyncio.run(backend.aclose())
    plan = audit.result
    table = Table(title=f"budgeted run (judge {judge}, seed {seed})")
    names = ["model", "language", "group", *by]
    for column in (*names, "n", "rate", "95% interval", "stopped by"):
        table.add_column(column, overflow="fold")
    for row in audit.rows():
        table.add_row(*(Text(str(row[k])) for k in names), f"{row['n']:,}", f"{row['rate']:.1%}",
                      f"{row['low']:.1%} – {row['high']:.1%}", row["stopped_by"])
    console.print(table)
    by_budget = int((plan.status == "budget").sum())
    widest = 100 * float((plan.high - plan.low).max())
    console.print(f"Budgeted: {plan.calls:,} of the full design's {plan.full_calls:,} target-model calls "
                  f"({plan.saved:.1%} saved); widest rate interval {widest:.1f} points; {by_budget:,} of "
                  f"{len(plan.n):,} cells stopped by the budget. Run the same command again to resume.")


def _load_bench(store, bench: str):
    """(bench name, items): a benchmark already in the store, else a file put into the store under its
    stem (the items are stored in the same call, so responses can be joined to them later)."""
    if bench in store.benches():
        return bench, store.items(bench)
    path = Path(bench)
    if path.is_file():
        from ..sources import load_benchmark_file

        return path.stem, load_benchmark_file(path)
    known = ", ".join(store.benches()) or "none yet"
    raise MijaError(f"--bench {bench}: no such benchmark in {store.path} (benchmarks: {known}) "
                    "and no such file")


def _replica_table(stats: dict[str, RunStats]) -> Table:
    """Per endpoint URL: requests sent (retries included), failed requests, median latency of answers."""
    table = Table(title="endpoints")
    table.add_column("model", overflow="fold")
    table.add_column("URL", overflow="fold")
    for column in ("requests", "failures", "median latency"):
        table.add_column(column, justify="right")
    for name, s in stats.items():
        for url, r in s.replicas.items():
            median = r.get("median_latency_s")
            table.add_row(Text(name), Text(url), f"{r.get('requests', 0):,}", f"{r.get('failures', 0):,}",
                          "–" if median is None else f"{median:.2f}s")
    return table


def _print_summary(stats: dict[str, RunStats]) -> None:
    table = Table(title="generation summary")
    table.add_column("model", overflow="fold")
    for column in ("answered", "already stored", "failed", "retries", "time-outs", "req/s"):
        table.add_column(column, justify="right")
    for name, s in stats.items():
        table.add_row(Text(name), f"{s.done:,}", f"{s.skipped:,}", f"{s.failed:,}", f"{s.retries:,}",
                      f"{s.timeouts:,}", f"{s.throughput:,.1f}")
    console.print(table)
    if any(s.replicas for s in stats.values()):
        console.print(_replica_table(stats))
    from ..store.secrets import scrub_text

    for name, s in stats.items():  # why things failed, one line per kind of failure
        for kind, n in sorted(s.errors.items(), key=lambda kv: -kv[1]):
            example = scrub_text(s.error_examples.get(kind, ""))  # what a server said may hold a key
            console.print(Text(f"{name}: {n:,} failed with {kind}, e.g. {example}"), soft_wrap=True)
