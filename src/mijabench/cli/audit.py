"""`mijabench audit`: the whole chain from one config or preset. With no arguments: the embedded demo."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import typer
from rich.text import Text

from ..audit import PRESETS, make_config, preset, read_config_file, run_audit
from ..errors import MijaError
from .common import ProgressOption, WorkspaceOption, console, open_store

DEMO_NOTICE = ("This is a demo of the machinery on a 135M-parameter model with template-built prompts and a "
               "rule-based judge; it is not a measurement of any production model.")


def audit(
    config: Path = typer.Option(None, "--config", "-c", help="Audit config (YAML); overrides the preset."),
    preset_name: str = typer.Option(None, "--preset", "-p",
                                    help=f"One of {', '.join(PRESETS)}; demo when no config is given."),
    model: list[str] = typer.Option(None, "--model", "-m", help="Target model (repeatable); replaces the "
                                    "preset's models."),
    judge: list[str] = typer.Option(None, "--judge", "-j", help="Judge model or rules:refusal-v1 "
                                    "(repeatable); replaces the preset's judges."),
    voter: list[str] = typer.Option(None, "--voter", help="A judge whose vote counts (repeatable; default: "
                                    "the LLM judges, or the rule judge when it is the only one)."),
    bench: str = typer.Option(None, "--bench", help="Benchmark name in the store."),
    prompts_from: str = typer.Option(None, "--prompts-from", help="Load the prompts from a file or hub repo "
                                     "instead of building them."),
    old_prompts_from: str = typer.Option(None, "--benchmark", hidden=True),  # the old name of --prompts-from
    seeds: str = typer.Option(None, "--seeds", help="Seed source for building: demo, toxigen, toxsyn, FILE."),
    per_group: int = typer.Option(None, "--per-group", help="Seeds per group when building."),
    rewriter: str = typer.Option(None, "--rewriter", help="'template' (offline) or a rewriter model."),
    counterfactual: bool = typer.Option(None, "--counterfactual/--no-counterfactual",
                                        help="Swap each attack onto every group of its language."),
    sample_per_cell: int = typer.Option(None, "--sample-per-cell",
                                        help="Keep N items per group x strategy x language."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Max new tokens for every target model."),
    concurrency: int = typer.Option(None, "--concurrency", help="Requests in flight per model."),
    target_ci: float = typer.Option(None, "--target-ci", help="Budgeted audit: stop each cell once its 95% "
                                    "interval (and its group's deviation) is at most PTS points wide."),
    budget: int = typer.Option(None, "--budget", help="Budgeted audit: at most CALLS target-model calls, "
                               "the last ones on the widest cells."),
    budget_seed: int = typer.Option(None, "--budget-seed", help="Seed of the order prompts are drawn in."),
    executor: str = typer.Option(None, "--executor", help="local (this process) or ray (Ray Data workers; "
                                 "needs mijabench[ray]); a budgeted audit generates each look on Ray "
                                 "[default: the config's ray field, else local]."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster with --executor ray (auto, "
                                    "HOST:6379, ray://HOST:10001); default: RAY_ADDRESS, else a local one."),
    ray_workers: int = typer.Option(None, "--ray-workers", min=1, help="Ray workers per model [default: 2]."),
    ray_engine: str = typer.Option(None, "--ray-engine", help="backend (any model string) or vllm."),
    ray_gpus: float = typer.Option(None, "--ray-gpus", min=0.0, help="GPUs each Ray worker reserves."),
    out: Path = typer.Option(None, "--out", "-o", help="Report folder [default: WORKSPACE/report]."),
    allow_model_change: bool = typer.Option(
        False, "--allow-model-change",
        help="Resume even when a server now reports another model (id or weights path) than the stored "
             "responses of the same model name came from."),
    progress: str = ProgressOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Run the whole audit: benchmark, runs, judging, statistics and the HTML report. Resumable: run the
    same command again to finish a stopped audit; nothing is done twice."""
    # The preset is the base layer; a config file alone starts from the built-in defaults.
    layers = [preset(preset_name or "demo")] if config is None or preset_name else []
    if config is not None:
        layers.append(read_config_file(config))
    seeds_layer = None
    if seeds or per_group:
        seeds_layer = {"source": seeds or "demo", **({"per_group": per_group} if per_group else {})}
    flags = {
        "models": list(model or []) or None, "judges": list(judge or []) or None,
        "voters": list(voter or []) or None,
        "bench": bench, "prompts_from": prompts_from, "benchmark": old_prompts_from,
        "seeds": seeds_layer, "rewriter": rewriter, "counterfactual": counterfactual,
        "sample_per_cell": sample_per_cell, "concurrency": concurrency,
        "settings": {"max_tokens": max_tokens} if max_tokens else None,
        "target_ci": target_ci, "budget": budget, "budget_seed": budget_seed,
    }
    ray_flags = {k: v for k, v in (("address", ray_address), ("workers", ray_workers),
                                   ("engine", ray_engine), ("gpus", ray_gpus)) if v is not None}
    if executor not in (None, "local", "ray"):
        raise MijaError(f"--executor must be local or ray, got '{executor}'")
    if ray_flags and executor != "ray":
        raise MijaError("--ray-address, --ray-workers, --ray-engine and --ray-gpus need --executor ray")
    if executor == "ray":
        flags["ray"] = ray_flags
    if model:
        flags["demo"] = False  # the user's own model: no longer the embedded demo
    cfg = make_config(*layers, flags, source=str(config or "flags"))
    if executor == "local":  # the flag overrides a config file's ray field
        cfg = replace(cfg, ray=None)
    cfg.check_budget()  # a bad target or budget: one line, before the store is opened
    if out is not None:
        from ..paths import check_output
        check_output(out, folder=True)
    if cfg.demo:
        console.print(Text.assemble(("Demo.", "bold yellow"), f" {DEMO_NOTICE}"))

    started = time.monotonic()

    def on_stage(number: int, name: str, note: str) -> None:
        console.rule(Text.assemble((f"{number}/4 {name}", "bold"), " ", (note, "dim")))

    with open_store(workspace) as store:
        result = run_audit(store, cfg, out=out, on_stage=on_stage, progress=progress,
                           allow_model_change=allow_model_change)
    from ..report.terminal import summary
    for renderable in summary(result.report):
        console.print(renderable)
    minutes = (time.monotonic() - started) / 60
    console.print(Text.assemble(
        ("Audit finished", "bold green"),
        f" in {minutes:.1f} min: {result.items:,} items, {len(result.models)} model(s), judges: "
        f"{', '.join(result.judges)}; voting: {', '.join(result.voters)}."))
    if result.budget is not None:
        plan = result.budget.result
        by_budget = int((plan.status == "budget").sum())
        widest = 100 * float((plan.high - plan.low).max())
        console.print(f"Budgeted: {plan.calls:,} of the full design's {plan.full_calls:,} target-model calls "
                      f"({plan.saved:.1%} saved); widest rate interval {widest:.1f} points; {by_budget:,} of "
                      f"{len(plan.n):,} cells stopped by the budget.")
    if result.failed_responses:
        console.print(f"{result.failed_responses:,} responses failed after retries; run the same command "
                      "again to retry them.", style="yellow")
    console.print(Text.assemble("Report: ", (str(result.report_html), "bold")), soft_wrap=True)
    if cfg.demo:
        console.print(DEMO_NOTICE)
