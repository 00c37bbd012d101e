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
from ..templates import load_template
from .data import example_scenarios
from .parsing import parse_text_list
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
    tax = load_taxonomy()
    languages = [tax.check_language(lang, field="languages") for lang in languages]
    cats = [tax.check_scenario_category(c, field="categories") for c in categories or tax.scenario_categories]
    if per_category < 1 or per_call < 1:
        raise MijaError("--per-category and --per-call must be at least 1")
    max_calls = max_calls or 3 * math.ceil(per_category / per_call) + 2
    templates = {lang: load_template("scenarios", lang) for lang in languages}
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
    report = ScenarioBuildReport(run_id, per_category)

    # One duplicate index per language over the examples and everything stored: no near copies anywhere.
    indexes, kept, cells, next_call = {}, {}, {}, Counter()
    for lang in languages:
        index = NearDuplicateIndex(threshold)
        for cat, texts in example_scenarios(lang).items():
            for n, text in enumerate(texts):
                index.add(f"example:{cat}:{n}", text)
        for s in store.scenarios(language=lang):
            index.add(s.id, s.text)
            if _is_model_built(s):
                kept.setdefault((lang, s.category), []).append(s.text)
                call = s.provenance.get("call_index")
                if isinstance(call, int):
                    next_call[(lang, s.category)] = max(next_call[(lang, s.category)], call + 1)
        indexes[lang] = index
        for cat in cats:
            cell = CellReport(lang, cat, stored=len(kept.get((lang, cat), [])))
            cell.skipped = cell.stored >= per_category
            cells[(lang, cat)] = cell
            report.cells.append(cell)
    for event in store.events(stage=STAGE):  # calls that kept nothing still advance the call index
        detail = event["detail"]
        key = (detail.get("language"), detail.get("category"))
        if detail.get("model") == model.name and isinstance(detail.get("call_index"), int):
            next_call[key] = max(next_call[key], detail["call_index"] + 1)

    bar = None
    if progress is not None:
        todo = sum(max(0, per_category - c.stored) for c in cells.values())
        bar = progress.add(f"{model.name}", total=todo)
    added_total = RunStats()
    try:
        for _round in range(max_calls):
            open_cells = [c for c in cells.values() if c.stored < per_category and c.calls < max_calls]
            if not open_cells:
                break
            requests, meta = [], {}
            for cell in open_cells:
                key = (cell.language, cell.category)
                call = next_call[key]
                next_call[key] += 1
                cell.calls += 1
                request = _request(templates[cell.language], cell, call, per_call, kept.get(key, []), model)
                requests.append(request)
                meta[request.key] = (cell, call, request.settings)

            def on_result(outcome: Outcome, meta=meta) -> None:
                cell, call, settings = meta[outcome.request.key]
                added = _take(store, run_id, outcome, cell, call, settings, per_category, indexes,
                              kept, model, templates[cell.language].version_tag, per_call)
                added_total.done += added
                if bar:
                    bar.update(added_total)

            await execute(requests, backend, on_result, policy=policy,
                          concurrency=concurrency or model.concurrency)
    finally:
        if own_backend:
            await backend.aclose()
    for cell in report.short:
        store.log_events(run_id, STAGE, [(f"{cell.language}/{cell.category}", "short", {
            "language": cell.language, "category": cell.category, "stored": cell.stored,
            "target": per_category, "calls": cell.calls, "model": model.name})])
    return report


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


def _take(store: Store, run_id: str, outcome: Outcome, cell: CellReport, call: int, settings,
          per_category: int, indexes: dict[str, NearDuplicateIndex], kept: dict, model: ModelConfig,
          template_version: str, per_call: int) -> int:
    """Parse one answer, keep its new scenarios (up to the target), store them and the call's event."""
    detail: dict[str, Any] = {"language": cell.language, "category": cell.category, "call_index": call,
                              "model": model.name}
    new: list[Scenario] = []
    if outcome.error is not None:
        cell.failed_calls += 1
        detail.update(error=str(outcome.error), error_kind=outcome.error.kind)
        store.log_events(run_id, STAGE, [(f"{cell.language}/{cell.category}", "call_failed", detail)])
        return 0
    generation = outcome.generation
    parsed = parse_text_list(generation.text)
    duplicates = 0
    for text in parsed.items:
        if cell.stored + len(new) >= per_category:
            break
        provenance = {"builder": "model", "model": model.name, "spec": model.spec,
                      "settings": settings.to_dict(), "template_version": template_version,
                      "call_index": call, "per_call": per_call, "run_id": run_id}
        scenario = Scenario(language=cell.language, category=cell.category, text=text, provenance=provenance)
        if indexes[cell.language].add_if_new(scenario.id, text) is not None:
            duplicates += 1
            continue
        new.append(scenario)
    cell.duplicates += duplicates
    cell.unparsed += len([p for p in parsed.problems if p.startswith("item")])
    detail.update(kept=len(new), duplicates=duplicates, problems=parsed.problems[:20],
                  finish_reason=generation.finish_reason)
    with_events = [(f"{cell.language}/{cell.category}", "call", detail)]
    if new:
        store.put_scenarios(new)
        kept.setdefault((cell.language, cell.category), []).extend(s.text for s in new)
    store.log_events(run_id, STAGE, with_events)
    cell.stored += len(new)
    cell.added += len(new)
    return len(new)
