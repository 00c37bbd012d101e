"""`mijabench bench build | report` and `mijabench scenarios build`: parse options, call mijabench.bench,
print the balance report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..errors import MijaError
from .common import ProgressOption, WorkspaceOption, command_group, console, err_console, open_store

app = command_group(help="Build benchmarks: adversarial rewrites of seeds, counterfactual twins, balance.",
                  no_args_is_help=True)


@app.command()
def build(
    seeds: str = typer.Option(..., "--seeds", "-s", help="'demo', 'toxigen' or 'toxsyn' (the hub), or a "
                                                          "JSONL/CSV/Parquet seed file (columns text, group, "
                                                          "language)."),
    bench: str = typer.Option(..., "--bench", "-b", help="Name of the benchmark in the store."),
    model: str = typer.Option(None, "--model", "-m", help="Rewriter model string or YAML file."),
    offline: bool = typer.Option(False, "--offline",
                                 help="Use the offline rewriter (no model) instead of --model."),
    scenarios: str = typer.Option("builtin", "--scenarios",
                                  help="builtin (the project's examples) or store (built scenarios)."),
    language: str = typer.Option(None, "--language", "-l", help="Only seeds of this language."),
    rng_seed: int = typer.Option(0, "--rng-seed", help="Seed of every draw (strategy, scenario, examples)."),
    strategies: str = typer.Option("uniform", "--strategies",
                                   help="uniform, a list (a,b) or weights "
                                        "(persona_assignment=2,chain_of_thought=1)."),
    counterfactual: bool = typer.Option(False, "--counterfactual",
                                        help="Also aim every attack at every other group of its language."),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Draws per seed before giving up."),
    dedup_threshold: float = typer.Option(0.85, "--dedup-threshold", min=0.05, max=1.0,
                                          help="Shingle Jaccard similarity from which prompts are "
                                               "duplicates."),
    max_words: int = typer.Option(150, "--max-words", min=10,
                                  help="Longest prompt the rewriter is asked for."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Rewriter output limit (tokens)."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="Rewriter sampling temperature."),
    keep_truncated: bool = typer.Option(False, "--keep-truncated",
                                        help="Keep rewrites cut at the token limit (marked in provenance) "
                                             "instead of retrying them: for tiny local models only."),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, help="Rewriter calls in flight."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.1, help="Seconds one rewriter call may take."),
    progress_mode: str = ProgressOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """One jailbreak prompt per seed (resumable: re-run the same command to finish a killed build)."""
    from ..backends.registry import parse_model
    from ..bench import OFFLINE_REWRITER, build_benchmark
    from ..run.progress import StageProgress

    if offline == (model is not None):
        raise MijaError("give either --model REWRITER or --offline")
    rewriter = OFFLINE_REWRITER if offline else parse_model(model, max_tokens=max_tokens,
                                                             temperature=temperature)
    from ..bench.datafiles import check_scenario_pool, scenario_pool

    check_scenario_pool(scenarios)
    seed_list = _load_seeds(seeds, language)
    with open_store(workspace) as store:
        pool = scenario_pool(scenarios, store, {s.language for s in seed_list})
        with StageProgress("bench", mode=progress_mode) as progress:
            report = build_benchmark(store, seed_list, pool, rewriter, bench=bench, rng_seed=rng_seed,
                                     strategies=strategies, counterfactual=counterfactual,
                                     max_attempts=max_attempts, dedup_threshold=dedup_threshold,
                                     max_words=max_words, keep_truncated=keep_truncated,
                                     concurrency=concurrency, progress=progress,
                                     policy=_policy(timeout))
    label = "offline rewriter (no model)" if offline else f"rewriter {report.rewriter}"
    console.print(f"benchmark {bench} with the {label}: "
                  f"{report.done:,} seeds rewritten, {report.items:,} items stored, "
                  f"{report.resumed:,} seeds already done, {len(report.gave_up):,} given up "
                  f"({report.elapsed_s:.1f}s)")
    print_balance(report.balance)
    if report.items == 0 and report.resumed < report.seeds:
        why = f": the first error was {report.first_error}" if report.first_error else ""
        err_console.print(Text(f"error: no item was built in this run{why}"), soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def report(bench: str = typer.Option(..., "--bench", "-b"), workspace: Path = WorkspaceOption) -> None:
    """The balance report of a stored benchmark."""
    from ..bench import balance_report

    with open_store(workspace, create=False) as store:
        if bench not in store.benches():
            have = ", ".join(store.benches()) or "none"
            raise MijaError(f"no benchmark '{bench}' in the store (have: {have})")
        print_balance(balance_report(store, bench))


def scenarios_build(
    model: str = typer.Option(..., "--model", "-m", help="Model string or YAML file."),
    per_category: int = typer.Option(200, "--per-category", "-n", min=1,
                                     help="Scenarios per category and language."),
    languages: str = typer.Option("en,pt", "--languages", "-l", help="Comma-separated languages."),
    categories: str = typer.Option(None, "--categories", help="Comma-separated category ids (default: all)."),
    per_call: int = typer.Option(10, "--per-call", min=1, help="Scenarios asked for in one call."),
    max_calls: int = typer.Option(None, "--max-calls", min=1, help="Calls per category in this run."),
    threshold: float = typer.Option(0.7, "--threshold", min=0.05, max=1.0,
                                    help="Shingle Jaccard similarity from which scenarios are duplicates."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="Sampling temperature."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Output limit per call (tokens)."),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, help="Calls in flight."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.1, help="Seconds one call may take."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Ask a model for new, distinct scenarios per category; resumable."""
    from ..backends.registry import parse_model
    from ..bench import build_scenarios
    from ..run.progress import StageProgress

    config = parse_model(model, temperature=temperature, max_tokens=max_tokens)
    langs = [x.strip() for x in languages.split(",") if x.strip()]
    cats = [x.strip() for x in categories.split(",") if x.strip()] if categories else None
    with open_store(workspace) as store, StageProgress("scenarios") as progress:
        result = build_scenarios(store, config, per_category=per_category, languages=langs, categories=cats,
                                 per_call=per_call, max_calls=max_calls, threshold=threshold,
                                 concurrency=concurrency, progress=progress, policy=_policy(timeout))
    table = Table(title=f"scenarios (target {per_category} per category)")
    for col in ("language", "category", "stored", "added", "calls", "duplicates", "unparsed", "failed calls"):
        table.add_column(col, justify="left" if col in ("language", "category") else "right")
    for c in result.cells:
        table.add_row(c.language, c.category, str(c.stored), str(c.added), str(c.calls), str(c.duplicates),
                      str(c.unparsed), str(c.failed_calls))
    console.print(table)
    console.print(f"added {result.added:,} scenarios")
    if result.short:
        err_console.print(f"{len(result.short)} categories are still short of {per_category}; "
                          "run the command again (or raise --max-calls) to continue", style="yellow")


def _policy(timeout: float):
    from ..run.engine import RetryPolicy

    return RetryPolicy(timeout_s=timeout)


def _load_seeds(spec: str, language: str | None):
    """What ``Workspace.build(seeds=...)`` reads (``sources.load_source``): a named source or a seed file."""
    from ..sources.build import NAMED_SOURCES, load_source
    from ..sources.hub import BENCH_SEEDS_OFFLINE_HINT

    if spec not in NAMED_SOURCES and not Path(spec).is_file():
        raise MijaError(f"{spec}: seed file not found (or pass --seeds {', '.join(NAMED_SOURCES)})")
    return load_source(spec, language=language, offline_hint=BENCH_SEEDS_OFFLINE_HINT)


def print_balance(report) -> None:
    """Group x strategy per language, the spread over scenario categories, and what was dropped."""
    if report is None:
        return
    for lang in report.languages:
        rows, cols, counts = report.pivot("group", "strategy", language=lang)
        table = Table(title=Text(f"{report.bench} [{lang}]: items per group x strategy"))
        table.add_column("group")
        for col in cols:  # first word of the id keeps the table narrow: persona, representation, ...
            table.add_column(col.split("_")[0], justify="right")
        table.add_column("categories (min-max)", justify="right")
        per_cat = report.counts("group", "scenario_category", language=lang)
        for row, values in zip(rows, counts, strict=True):
            cat_counts = [n for (g, _), n in per_cat.items() if g == row]
            table.add_row(row, *map(str, values), f"{len(cat_counts)} ({min(cat_counts)}-{max(cat_counts)})")
        console.print(table)
    rewriters = ", ".join(f"{k}: {v:,}" for k, v in report.rewriters.items())
    console.print(f"{report.total:,} items ({rewriters})" +
                  (f"; {report.pairs:,} counterfactual sets" if report.pairs else ""))
    if report.truncated:
        err_console.print(f"{report.truncated:,} items were kept although the rewriter was cut off "
                          "at its token limit (--keep-truncated)", style="yellow")
    if report.dropped or report.gave_up:
        dropped = ", ".join(f"{k} {v:,}" for k, v in report.dropped.most_common())
        gave_up = ", ".join(f"{k} {v:,}" for k, v in report.gave_up.most_common())
        console.print(f"dropped outputs (retried with a new draw): {dropped or 'none'}")
        if gave_up:
            console.print(f"seeds given up (last reason): {gave_up}", style="yellow")
