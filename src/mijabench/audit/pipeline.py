"""The whole audit as one resumable chain: benchmark -> responses -> verdicts -> report.

Every stage already skips what the store holds (items by content id, responses by item x model x settings,
verdicts by response x judge), so running the same audit again finishes a killed one and repeats no work;
only the report, which is cheap, is always rewritten.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Backend
from ..backends.registry import ModelConfig, create_backend
from ..errors import MijaError
from ..paths import check_output
from ..records import BenchmarkItem
from ..store import Store
from .config import AuditConfig, judge_name

STAGES = ("benchmark", "generate", "judge", "report")


@dataclass
class AuditResult:
    bench: str
    items: int
    models: list[str]
    judges: list[str]
    voters: list[str] = field(default_factory=list)  # the judges whose majority is the label
    report_html: Path | None = None
    failed_responses: int = 0
    generated: int = 0  # model calls that ended (answered or failed) in this run; 0 when resumed fully
    judged: int = 0  # responses sent to judges in this run
    stage_notes: dict[str, str] = field(default_factory=dict)
    report: Any = None  # the ReportResult, for the terminal summary
    budget: Any = None  # the BudgetedAudit of a budgeted audit


def run_audit(store: Store, config: AuditConfig, *, out: str | Path | None = None,
              on_stage: Callable[[int, str, str], None] | None = None,
              progress: bool | str = True, allow_model_change: bool = False) -> AuditResult:
    """Run (or resume) the audit described by ``config``. ``on_stage(number, name, note)`` is called as each
    stage starts. ``progress``: a mode of ``StageProgress`` (auto, rich, plain, none), or True / False."""
    configs = config.model_configs()  # fail on a bad model list before any work
    voters = config.voter_names()  # and on a bad vote
    config.check_budget()  # and on a bad target or budget
    if config.report.get("out") is not None or out is not None:
        check_output(out or config.report["out"], folder=True)
    stage = _stage_reporter(on_stage)
    backends = _shared_backends(configs)
    try:
        # every target and judge server answers its check before the benchmark stage stores a single item
        targets = [c for c in configs if c.scheme == "openai"]
        judges = [create_backend(c) for c in _judge_configs(config.judges) if c.scheme == "openai"]
        _check_servers([backends[c.name] for c in targets] + judges)
        from ..run.generate import check_model_identity
        check_model_identity(store, targets, backends, allow_change=allow_model_change)

        stage("benchmark", "building or loading the prompts")
        check = None
        if config.budgeted:  # a budget under one call per cell is refused before loaded prompts are stored
            def check(loaded: list[BenchmarkItem]) -> None:
                from ..run.budget import check_budget_args
                from .budgeted import cell_count
                check_budget_args(config.target_ci, config.budget,
                                  cell_count(loaded, len(configs), config.budget_by))
        bench, items = _benchmark(store, config, check)
        result = AuditResult(bench=bench, items=len(items), models=[c.name for c in configs], judges=[])
        if not items:
            raise MijaError(f"benchmark '{bench}' has no items; nothing to audit")
        result.stage_notes["benchmark"] = f"{len(items):,} items in benchmark '{bench}'"

        if config.budgeted:
            _budgeted(store, config, bench, items, configs, voters, result, stage, progress, backends,
                      allow_model_change)
        else:
            _full(store, config, bench, items, configs, result, stage, progress, backends, allow_model_change)
    finally:
        _close(backends)

    stage("report", "statistics, intervals, HTML")
    from ..report import write_report
    options = dict(config.report)
    out_dir = Path(out or options.pop("out", None) or Path(store.path).parent / "report")
    options.pop("out", None)
    result.voters = voters
    report = write_report(store, out_dir, judges=voters, bench=bench, models=result.models,
                          demo=config.demo or None, budget=result.budget, **options)
    result.report, result.report_html = report, report.html
    return result


def _budgeted(store: Store, config: AuditConfig, bench: str, items: list[BenchmarkItem],
              configs: list[ModelConfig], voters: list[str], result: AuditResult,
              stage: Callable[[str, str], None], progress: bool | str, backends: dict[str, Backend],
              allow_model_change: bool = False) -> None:
    """Generate and judge in looks, cell by cell, until the target or the budget (``audit.budgeted``); with
    ``ray`` in the config each look's prompts are generated on Ray, over one connection."""
    from contextlib import nullcontext
    from functools import partial

    from ..run.budget import check_budget_args
    from .budgeted import cell_count, run_budgeted
    target = config.target_ci / 100 if config.target_ci is not None else None
    check_budget_args(target, config.budget, cell_count(items, len(configs), config.budget_by))
    rule = " and ".join(x for x in (f"target {config.target_ci:g} points" if target else "",
                                    f"budget {config.budget:,} calls" if config.budget else "") if x)
    stage("generate", f"budgeted: {rule}; {len(items):,} items x {len(configs)} model(s), judged as drawn")
    if config.ray is not None:
        from ..run.ray_mode import ray_run_options, ray_runner
        runner = ray_runner(**ray_run_options(config.ray), allow_model_change=allow_model_change)
    else:  # run_items in this process, on the shared backends
        from ..run.generate import run_items
        runner = nullcontext(partial(run_items, backends=backends, allow_model_change=allow_model_change))
    with runner as generate:
        audit = run_budgeted(store, bench, items, configs, list(config.judges), voters, target=target,
                             budget=config.budget, seed=config.budget_seed, by=config.budget_by,
                             twins=config.counterfactual, concurrency=config.concurrency,
                             backends=backends, progress=progress, generate=generate)
    stage("judge", "done with each look")
    result.budget = audit
    result.judges = [judge_name(j) for j in config.judges]
    result.generated = audit.result.calls


def _full(store: Store, config: AuditConfig, bench: str, items: list[BenchmarkItem],
          configs: list[ModelConfig], result: AuditResult, stage: Callable[[str, str], None],
          progress: bool | str, backends: dict[str, Backend], allow_model_change: bool) -> None:
    stage("generate", f"{len(items):,} items x {len(configs)} model(s)")
    if config.ray is not None:
        from ..run.ray_mode import ray_run_options, run_items_ray
        stats = run_items_ray(store, items, configs, bench=bench, concurrency=config.concurrency,
                              progress=progress, allow_model_change=allow_model_change,
                              **ray_run_options(config.ray))
    else:
        from ..run.generate import run_items
        stats = run_items(store, items, configs, bench=bench, concurrency=config.concurrency,
                          backends=backends, progress=progress, allow_model_change=allow_model_change)
    result.failed_responses = sum(s.failed for s in stats.values())
    result.generated = sum(s.done + s.failed for s in stats.values())
    aborted = {name: s.aborted for name, s in stats.items() if s.aborted}
    if aborted:
        raise MijaError("; ".join(f"model {n} stopped: {why}" for n, why in aborted.items()))

    stage("judge", ", ".join(str(j) for j in config.judges))
    from ..judge.runner import judge_responses
    from ..run.generate import progress_display
    with progress_display("judge", progress) as display:
        run = judge_responses(store, list(config.judges), bench=bench, target_models=result.models,
                              concurrency=config.concurrency, progress=display)
    result.judges = [j.judge for j in run.judges]
    result.judged = sum(j.pending for j in run.judges)


def _stage_reporter(on_stage: Callable[[int, str, str], None] | None) -> Callable[[str, str], None]:
    def report(name: str, note: str) -> None:
        if on_stage:
            on_stage(STAGES.index(name) + 1, name, note)
    return report


def _benchmark(store: Store, config: AuditConfig,
               check: Callable[[list[BenchmarkItem]], None] | None = None) -> tuple[str, list[BenchmarkItem]]:
    bench = config.bench
    if config.prompts_from:
        if not store.items(bench):
            loaded = _load_benchmark(config.prompts_from)
            if check:
                check(loaded)
            store.put_items(loaded, bench=bench)
    else:
        _build(store, config, bench)
    items = store.items(bench)
    if config.sample_per_cell:
        sampled = stratified_sample(items, config.sample_per_cell, seed=config.rng_seed)
        bench = f"{bench}-sample{config.sample_per_cell}"
        store.put_items(sampled, bench=bench)
        items = store.items(bench)
    return bench, items


def _load_benchmark(source: str) -> list[BenchmarkItem]:
    if Path(source).exists():
        from ..sources import load_benchmark_file
        return load_benchmark_file(source)
    from ..sources.hub import load_hub_benchmark
    return load_hub_benchmark(source)


def _build(store: Store, config: AuditConfig, bench: str) -> None:
    from ..bench import build_benchmark
    from ..bench.datafiles import scenario_pool
    seeds_cfg = dict(config.seeds or {})
    source = seeds_cfg.pop("source", "demo")
    languages = seeds_cfg.pop("languages", None)
    if source == "demo":
        from ..sources import demo_seeds
        seeds = demo_seeds()
    else:
        from ..sources import build_seeds
        seeds = build_seeds(source, **seeds_cfg).seeds
    if languages:
        seeds = [s for s in seeds if s.language in languages]
    scenarios = scenario_pool(config.scenarios, store, {s.language for s in seeds})
    build_benchmark(store, seeds, scenarios, config.rewriter, bench=bench, rng_seed=config.rng_seed,
                    strategies=config.strategies, counterfactual=config.counterfactual, progress=None)


def stratified_sample(items: list[BenchmarkItem], per_cell: int, seed: int = 0) -> list[BenchmarkItem]:
    """Up to ``per_cell`` items per (language, group, strategy), drawn with a seeded RNG; stable order."""
    cells: dict[tuple[str, str, str], list[BenchmarkItem]] = defaultdict(list)
    for item in items:
        cells[(item.language, item.group, item.strategy)].append(item)
    keep: set[str] = set()
    for key in sorted(cells):
        members = sorted(cells[key], key=lambda i: i.id)
        rng = random.Random(f"{seed}:{'/'.join(key)}")
        keep.update(i.id for i in rng.sample(members, min(per_cell, len(members))))
    return [i for i in items if i.id in keep]


def _shared_backends(configs: list[ModelConfig]) -> dict[str, Backend]:
    """One backend per distinct model source: the demo's two variants of the embedded model (with and
    without a safety prompt) then share one copy of the weights and one batching queue."""
    by_source: dict[tuple[str, str], Backend] = {}
    out: dict[str, Backend] = {}
    for config in configs:
        key = (config.spec, repr(sorted(config.options.items())))
        if key not in by_source:
            by_source[key] = create_backend(config)
        out[config.name] = by_source[key]
    return out


def _judge_configs(judges: list[Any]) -> list[ModelConfig]:
    from ..backends.registry import model_from_dict
    from ..judge.plugins import is_plugin_judge
    return [j if isinstance(j, ModelConfig) else model_from_dict(j, source="audit config judges")
            for j in judges if not (isinstance(j, str) and (j.startswith("rules:") or is_plugin_judge(j)))]


def _check_servers(servers: list[Backend]) -> None:
    """Check HTTP servers (what can be down or misnamed) in a loop of their own, then close their sessions
    (the runner opens new ones in its loop). Local backends are checked by the runner: closing them here
    would drop their weights."""
    import asyncio
    unique = list({id(b): b for b in servers}.values())
    if not unique:
        return

    async def check_all() -> None:
        try:
            await asyncio.gather(*(b.check() for b in unique))
        finally:
            await asyncio.gather(*(b.aclose() for b in unique), return_exceptions=True)
    asyncio.run(check_all())


def _close(backends: dict[str, Backend]) -> None:
    import asyncio
    unique = list({id(b): b for b in backends.values()}.values())

    async def close_all() -> None:
        await asyncio.gather(*(b.aclose() for b in unique), return_exceptions=True)
    asyncio.run(close_all())
