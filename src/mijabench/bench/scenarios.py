"""Building scenarios with a model: N new, distinct scenarios per category and language.

Each call shows the model the category's hand-written examples and some scenarios already kept, and asks
for a JSON list. Good items are kept even when others in the same answer are broken; exact and near
duplicates (of each other, of stored scenarios and of the examples) are dropped. Every call's outcome is
stored as soon as it arrives, so a killed build loses at most the calls in flight, and a category that
already holds N scenarios is skipped on the next run.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends.base import Backend, GenerationRequest
from ..backends.registry import ModelConfig, create_backend
from ..errors import MijaError
from ..records import Scenario
from ..run.engine import Outcome, RetryPolicy, RunStats, execute
from ..store import Store
from ..taxonomy import load_taxonomy
from .datafiles import example_scenarios
from .parsing import parse_text_list
from .prompts import BenchPrompt, load_prompt
from .textsim import NearDuplicateIndex

STAGE = "scenarios"
AVOID_SHOWN = 12  # scenarios already kept that a call lists as "do not repeat"


@dataclass
class CellReport:
    """One (language, category): how many scenarios it holds and what this run did to it."""

    language: str
    category: str
    stored: int = 0  # scenarios held after the run
    added: int = 0
    calls: int = 0
    duplicates: int = 0
    unparsed: int = 0  # items lost to broken JSON, wrong types, bad length
    failed_calls: int = 0
    skipped: bool = False  # already complete before the run


@dataclass
class ScenarioBuildReport:
    run_id: str
    per_category: int
    cells: list[CellReport] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(c.added for c in self.cells)

    @property
    def short(self) -> list[CellReport]:
        """Cells that ended below the target (the call limit ran out first)."""
        return [c for c in self.cells if c.stored < self.per_category]


def _is_model_built(scenario: Scenario) -> bool:
    return scenario.provenance.get("builder") != "builtin"


def build_scenarios(store: Store, model: ModelConfig, *, per_category: int = 200,
                    languages: Sequence[str] = ("en", "pt"), categories: Sequence[str] | None = None,
                    per_call: int = 10, max_calls: int | None = None, threshold: float = 0.7,
                    backend: Backend | None = None, policy: RetryPolicy | None = None,
                    concurrency: int | None = None, progress=None) -> ScenarioBuildReport:
    """Fill every (language, category) up to ``per_category`` model-built scenarios (see module doc).

    ``max_calls`` caps the calls per cell in this run (default: three times the calls the target needs,
    plus two); ``threshold`` is the shingle Jaccard similarity from which two scenarios count as near
    duplicates. ``backend`` replaces the one ``model`` would create (tests pass a scripted one).
    """
    return asyncio.run(abuild_scenarios(
        store, model, per_category=per_category, languages=languages, categories=categories,
        per_call=per_call, max_calls=max_calls, threshold=threshold, backend=backend, policy=policy,
        concurrency=concurrency, progress=progress))


async def abuild_scenarios(store: Store, model: ModelConfig, *, per_category: int = 200,
                           languages: Sequence[str] = ("en", "pt"), categories: Sequence[str] | None = None,
                           per_call: int = 10, max_calls: int | None = None, threshold: float = 0.7,
                           backend: Backend | None = None, policy: RetryPolicy | None = None,
                           concurrency: int | None = None, progress=None) -> ScenarioBuildReport:
    """``build_scenarios`` inside a running event loop."""
    tax = load_taxonomy()
    languages = [tax.check_language(lang, field="languages") for lang in languages]
    cats = [tax.check_scenario_category(c, field="categories") for c in categories or tax.scenario_categories]
    if per_category < 1 or per_call < 1:
        raise MijaError("--per-category and --per-call must be at least 1")
    max_calls = max_calls or 3 * math.ceil(per_category / per_call) + 2
    templates = {lang: load_prompt("scenarios", lang) for lang in languages}
    config = {"model": model.name, "spec": model.spec, "settings": model.settings.to_dict(),
              "per_category": per_category, "per_call": per_call, "max_calls": max_calls,
              "threshold": threshold, "languages": languages, "categories": cats,
              "templates": {lang: t.version_tag for lang, t in templates.items()}}
    own_backend = backend is None
    backend = backend or create_backend(model)
    if own_backend:
        try:  # the model answers before the run is recorded
            await backend.check()
        except BaseException:
            await backend.aclose()
            raise
    run_id = store.new_run(STAGE, config)
    build = _ScenarioBuild(store=store, run_id=run_id, model=model, templates=templates,
                           per_category=per_category, per_call=per_call,
                           report=ScenarioBuildReport(run_id, per_category))
    _load_stored(build, languages, cats, threshold)
    bar = None
    if progress is not None:
        todo = sum(max(0, per_category - c.stored) for c in build.cells.values())
        bar = progress.add(f"{model.name}", total=todo)
    try:
        for _round in range(max_calls):
            open_cells = [c for c in build.cells.values() if c.stored < per_category and c.calls < max_calls]
            if not open_cells:
                break
            await _call_round(build, open_cells, backend, policy, concurrency or model.concurrency, bar)
    finally:
        if own_backend:
            await backend.aclose()
    _log_short_cells(build)
    return build.report


@dataclass
class _ScenarioBuild:
    """One scenario build under way: its fixed inputs and what it holds so far, per (language, category)."""
    store: Store
    run_id: str
    model: ModelConfig
    templates: dict[str, BenchPrompt]  # language -> the scenario-writing prompt
    per_category: int
    per_call: int
    report: ScenarioBuildReport
    indexes: dict[str, NearDuplicateIndex] = field(default_factory=dict)  # language -> every text seen
    kept: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # model-built texts, oldest first
    cells: dict[tuple[str, str], CellReport] = field(default_factory=dict)
    next_call: Counter = field(default_factory=Counter)  # the call index each cell's next call gets
    added: RunStats = field(default_factory=RunStats)  # scenarios added in this run, for the progress bar


def _load_stored(build: _ScenarioBuild, languages: list[str], cats: list[str], threshold: float) -> None:
    """What earlier runs left: one duplicate index per language over the examples and everything stored
    (no near copies anywhere), the model-built texts per cell, and each cell's next call index."""
    for lang in languages:
        index = NearDuplicateIndex(threshold)
        for cat, texts in example_scenarios(lang).items():
            for n, text in enumerate(texts):
                index.add(f"example:{cat}:{n}", text)
        for s in build.store.scenarios(language=lang):
            index.add(s.id, s.text)
            if _is_model_built(s):
                build.kept.setdefault((lang, s.category), []).append(s.text)
                call = s.provenance.get("call_index")
                if isinstance(call, int):
                    build.next_call[(lang, s.category)] = max(build.next_call[(lang, s.category)], call + 1)
        build.indexes[lang] = index
        for cat in cats:
            cell = CellReport(lang, cat, stored=len(build.kept.get((lang, cat), [])))
            cell.skipped = cell.stored >= build.per_category
            build.cells[(lang, cat)] = cell
            build.report.cells.append(cell)
    for event in build.store.events(stage=STAGE):  # calls that kept nothing still advance the call index
        detail = event["detail"]
        key = (detail.get("language"), detail.get("category"))
        if detail.get("model") == build.model.name and isinstance(detail.get("call_index"), int):
            build.next_call[key] = max(build.next_call[key], detail["call_index"] + 1)


async def _call_round(build: _ScenarioBuild, open_cells: list[CellReport], backend: Backend,
                      policy: RetryPolicy | None, concurrency: int | None, bar) -> None:
    """One call for every cell still short of its target, each answer kept as soon as it arrives."""
    requests, meta = [], {}
    for cell in open_cells:
        key = (cell.language, cell.category)
        call = build.next_call[key]
        build.next_call[key] += 1
        cell.calls += 1
        request = _request(build.templates[cell.language], cell, call, build.per_call,
                           build.kept.get(key, []), build.model)
        requests.append(request)
        meta[request.key] = (cell, call, request.settings)

    def on_result(outcome: Outcome) -> None:
        cell, call, settings = meta[outcome.request.key]
        build.added.done += _take(build, outcome, cell, call, settings)
        if bar:
            bar.update(build.added)

    await execute(requests, backend, on_result, policy=policy, concurrency=concurrency)


def _log_short_cells(build: _ScenarioBuild) -> None:
    for cell in build.report.short:
        build.store.log_events(build.run_id, STAGE, [(f"{cell.language}/{cell.category}", "short", {
            "language": cell.language, "category": cell.category, "stored": cell.stored,
            "target": build.per_category, "calls": cell.calls, "model": build.model.name})])


def _request(template, cell: CellReport, call: int, n: int, kept: list[str],
             model: ModelConfig) -> GenerationRequest:
    tax = load_taxonomy()
    # Each call sees the examples in its own order and a different slice of what is already kept, so
    # that even greedy decoding gets a new prompt every time.
    rng = random.Random(f"scenarios:{cell.language}:{cell.category}:{call}")
    examples = list(example_scenarios(cell.language)[cell.category])
    rng.shuffle(examples)
    recent = kept[-AVOID_SHOWN:]
    avoid = ""
    if recent:
        heading = "Already written (do not repeat them or write near copies):" if cell.language == "en" else \
            "Já escritos (não os repita nem escreva cópias próximas):"
        avoid = "\n" + heading + "\n" + "\n".join(f"- {t}" for t in recent) + "\n"
    messages = template.render(n=str(n), category=tax.scenario_categories[cell.category].name(cell.language),
                               examples="\n".join(f"- {t}" for t in examples), avoid=avoid)
    settings = replace(model.settings, seed=model.settings.seed + call)
    return GenerationRequest(key=f"{cell.language}/{cell.category}/{call}", messages=messages,
                             settings=settings)


def _take(build: _ScenarioBuild, outcome: Outcome, cell: CellReport, call: int, settings) -> int:
    """Parse one answer, keep its new scenarios (up to the target), store them and the call's event."""
    model = build.model
    detail: dict[str, Any] = {"language": cell.language, "category": cell.category, "call_index": call,
                              "model": model.name}
    new: list[Scenario] = []
    if outcome.error is not None:
        cell.failed_calls += 1
        detail.update(error=str(outcome.error), error_kind=outcome.error.kind)
        event = (f"{cell.language}/{cell.category}", "call_failed", detail)
        build.store.log_events(build.run_id, STAGE, [event])
        return 0
    generation = outcome.generation
    parsed = parse_text_list(generation.text)
    duplicates = 0
    for text in parsed.items:
        if cell.stored + len(new) >= build.per_category:
            break
        provenance = {"builder": "model", "model": model.name, "spec": model.spec,
                      "settings": settings.to_dict(),
                      "template_version": build.templates[cell.language].version_tag,
                      "call_index": call, "per_call": build.per_call, "run_id": build.run_id}
        scenario = Scenario(language=cell.language, category=cell.category, text=text, provenance=provenance)
        if build.indexes[cell.language].add_if_new(scenario.id, text) is not None:
            duplicates += 1
            continue
        new.append(scenario)
    cell.duplicates += duplicates
    cell.unparsed += len([p for p in parsed.problems if p.startswith("item")])
    detail.update(kept=len(new), duplicates=duplicates, problems=parsed.problems[:20],
                  finish_reason=generation.finish_reason)
    with_events = [(f"{cell.language}/{cell.category}", "call", detail)]
    if new:
        build.store.put_scenarios(new)
        build.kept.setdefault((cell.language, cell.category), []).extend(s.text for s in new)
    build.store.log_events(build.run_id, STAGE, with_events)
    cell.stored += len(new)
    cell.added += len(new)
    return len(new)
