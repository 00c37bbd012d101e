"""Building a benchmark: one jailbreak prompt per seed, written by a rewriter model or by the offline
rewriter (no model), optionally multiplied into counterfactual twins for every group of the language.

Per seed: the strategy and scenario category it was dealt (``draws.assign_slots``), then per attempt a
scenario of that category, two few-shot examples of the strategy and an affirmative prefix for the assistant
turn (prefix injection), all drawn from (RNG seed, seed id, attempt). The output is cleaned; an output cut at
the token limit, a refusal by the rewriter, an empty one, a near duplicate of a kept prompt (or, for
counterfactual builds, one that never names the group) is dropped and the seed tried again with a new draw,
up to ``max_attempts``; a seed that runs out of attempts is recorded as given up.

Seeds go through in chunks; within a chunk outputs are screened in input order, so the kept prompts depend
only on the RNG seed and the model's answers, not on which answer came back first. Each chunk's items are
stored before the next starts: a killed build loses at most one chunk, and re-running the same build skips
every seed that already has an item (or gave up) under the same build configuration.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..backends.base import Backend, GenerationRequest
from ..backends.registry import ModelConfig, create_backend, parse_model
from ..errors import MijaError
from ..records import BenchmarkItem, Scenario, Seed, stable_id
from ..run.engine import Outcome, RetryPolicy, RunStats, execute
from ..store import Store
from ..taxonomy import load_taxonomy
from . import offline
from .balance import BalanceReport, balance_report
from .counterfactual import counterfactual_groups, find_mentions, swap_group
from .datafiles import FewShot, OfflineTemplate, fewshot_examples, group_terms, rewriter_data
from .draws import Slot, assign_slots, attempt_rng, parse_strategy_mix
from .postprocess import clean_rewrite, is_refusal, word_count
from .prompts import load_prompt
from .textsim import NearDuplicateIndex

STAGE = "bench"
# The offline rewriter (bench/offline.py, no model). Its stored name, in item provenance, build keys and
# audit configs, stays "template": changing it would orphan every build made so far.
OFFLINE_REWRITER = "template"


@dataclass
class BuildReport:
    bench: str
    build_key: str
    run_id: str
    rewriter: str  # OFFLINE_REWRITER ("template") or the rewriter model's name
    seeds: int  # seeds given
    resumed: int  # seeds already done (or given up) under this build before the run
    done: int = 0  # seeds that got an item in this run
    items: int = 0  # items stored in this run (counterfactual twins included)
    gave_up: dict[str, list[str]] = field(default_factory=dict)  # seed id -> drop reasons, this run
    dropped: Counter = field(default_factory=Counter)  # reason -> dropped outputs, this run
    elapsed_s: float = 0.0
    balance: BalanceReport | None = None
    first_error: str | None = None  # the first failed rewriter call of this run: shown when nothing was built


@dataclass(frozen=True)
class _Draw:
    scenario: Scenario
    fewshot: tuple[FewShot, ...] = ()
    prefix: str | None = None
    template: OfflineTemplate | None = None
    settings: Any = None


def build_benchmark(store: Store, seeds: Sequence[Seed], scenarios: Sequence[Scenario],
                    rewriter: ModelConfig | str = OFFLINE_REWRITER, *, bench: str, rng_seed: int = 0,
                    strategies: str | dict[str, float] | None = None, counterfactual: bool = False,
                    max_attempts: int = 3, dedup_threshold: float = 0.85, max_words: int = 150,
                    keep_truncated: bool = False, backend: Backend | None = None,
                    policy: RetryPolicy | None = None, concurrency: int | None = None,
                    chunk_size: int | None = None, progress=None) -> BuildReport:
    """Build (or resume) the benchmark ``bench`` from ``seeds``; see the module doc.

    ``rewriter`` is a ModelConfig, a model string, or ``OFFLINE_REWRITER`` (``"template"``) for the offline
    rewriter.
    ``strategies`` is a mix ("uniform", "a,b", "a=2,b=1" or a dict). ``keep_truncated`` keeps outputs cut at
    the token limit instead of dropping them, marked ``truncated`` in provenance: only for tiny local models
    that never stop on their own. ``backend`` replaces the one the config would create (tests pass a
    scripted one).
    """
    return asyncio.run(abuild_benchmark(
        store, seeds, scenarios, rewriter, bench=bench, rng_seed=rng_seed, strategies=strategies,
        counterfactual=counterfactual, max_attempts=max_attempts, dedup_threshold=dedup_threshold,
        max_words=max_words, keep_truncated=keep_truncated, backend=backend, policy=policy,
        concurrency=concurrency, chunk_size=chunk_size, progress=progress))


async def abuild_benchmark(store: Store, seeds: Sequence[Seed], scenarios: Sequence[Scenario],
                           rewriter: ModelConfig | str = OFFLINE_REWRITER, *, bench: str, rng_seed: int = 0,
                           strategies: str | dict[str, float] | None = None, counterfactual: bool = False,
                           max_attempts: int = 3, dedup_threshold: float = 0.85, max_words: int = 150,
                           keep_truncated: bool = False, backend: Backend | None = None,
                           policy: RetryPolicy | None = None, concurrency: int | None = None,
                           chunk_size: int | None = None, progress=None) -> BuildReport:
    """``build_benchmark`` inside a running event loop."""
    started = time.monotonic()
    model = _rewriter_model(rewriter)
    if max_attempts < 1:
        raise MijaError("--max-attempts must be at least 1")
    if not bench or not bench.strip():
        raise MijaError("--bench needs a name")
    options = _Options(rng_seed=rng_seed, strategies=parse_strategy_mix(strategies),
                       counterfactual=counterfactual, max_attempts=max_attempts,
                       dedup_threshold=dedup_threshold, max_words=max_words, keep_truncated=keep_truncated)
    seeds = _checked_seeds(seeds)
    pool = _scenario_pool(scenarios)
    config = _build_config(model, options, pool)
    own_backend = model is not None and backend is None
    if own_backend:
        backend = create_backend(model)
        await _checked(backend)  # the rewriter answers before the run or a scenario is stored
    try:
        ctx, pending = _start_build(store, bench, seeds, pool, model, options, config)
        limit = concurrency or (model.concurrency if model else None) or (backend.default_concurrency
                                                                          if backend else 64)
        bar = progress.add(f"{bench} ({ctx.report.rewriter})", total=len(seeds), skipped=ctx.report.resumed) \
            if progress is not None else None
        calls = _Calls(backend=backend, policy=policy, limit=limit, bar=bar, started=started)
        chunk = chunk_size or max(8, 4 * limit)
        for start in range(0, len(pending), chunk):
            await _build_chunk(ctx, pending[start:start + chunk], calls)
    finally:
        if own_backend:
            await backend.aclose()
    ctx.report.elapsed_s = time.monotonic() - started
    ctx.report.balance = balance_report(store, bench)
    return ctx.report


# -- set-up -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    """What shapes the prompts a build keeps. Each is part of the build key, so a build under other values
    never resumes or mixes with this one."""
    rng_seed: int
    strategies: dict[str, float]  # the parsed mix
    counterfactual: bool
    max_attempts: int
    dedup_threshold: float
    max_words: int
    keep_truncated: bool


def _rewriter_model(rewriter: ModelConfig | str) -> ModelConfig | None:
    """The rewriter model, or None for the offline rewriter."""
    if isinstance(rewriter, str) and rewriter == OFFLINE_REWRITER:
        return None
    return rewriter if isinstance(rewriter, ModelConfig) else parse_model(rewriter)


def _build_config(model: ModelConfig | None, options: _Options,
                  pool: dict[tuple[str, str], list[Scenario]]) -> dict[str, Any]:
    """Everything that identifies a build: the build key is its hash."""
    return {
        "rewriter": OFFLINE_REWRITER if model is None else "model",
        "model": None if model is None else model.name, "spec": None if model is None else model.spec,
        "settings": None if model is None else model.settings.to_dict(),
        **asdict(options),
        # per language, the version of what the rewriter writes from (a stored key: its name stays)
        "templates": {lang: _rewriter_version(lang, model is None) for lang in load_taxonomy().languages},
        "scenarios": stable_id(sorted(s.id for group in pool.values() for s in group)),
    }


def _start_build(store: Store, bench: str, seeds: list[Seed], pool: dict[tuple[str, str], list[Scenario]],
                 model: ModelConfig | None, options: _Options,
                 config: dict[str, Any]) -> tuple[_Build, list[Slot]]:
    """Check the bench holds only this build's items, record the run and the scenarios, and deal the seeds
    their slots: the build, and the slots of the seeds still to do (neither done nor given up before)."""
    build_key = stable_id("build", config)
    existing = _existing_items(store, bench, build_key)
    run_id = store.new_run(STAGE, {**config, "bench": bench, "build_key": build_key, "seeds": len(seeds)})
    store.put_scenarios(s for group in pool.values() for s in group)
    done = {i.seed_id for i in existing}
    gave_up_before = {e["ref"] for e in store.events(stage=STAGE) if e["kind"] == "gave_up"
                      and e["detail"].get("build_key") == build_key and e["detail"].get("bench") == bench}
    categories = {lang: sorted({c for (lg, c) in pool if lg == lang}) for lang in {s.language for s in seeds}}
    slots = assign_slots(seeds, options.strategies, categories, options.rng_seed)
    pending = [s for s in slots if s.seed.id not in done and s.seed.id not in gave_up_before]
    report = BuildReport(bench, build_key, run_id, OFFLINE_REWRITER if model is None else model.name,
                         seeds=len(seeds), resumed=len(seeds) - len(pending))
    ctx = _Build(store=store, bench=bench, model=model, options=options, pool=pool, config=config,
                 build_key=build_key, run_id=run_id, report=report)
    # Near duplicates are looked for among the rewrites themselves (twins are near copies by design).
    for item in existing:
        if item.provenance.get("counterfactual", {}).get("role", "original") == "original":
            _index(ctx, item.language).add(item.id, item.prompt)
    return ctx, pending


def _checked_seeds(seeds: Sequence[Seed]) -> list[Seed]:
    tax = load_taxonomy()
    out, seen = [], set()
    for n, seed in enumerate(seeds, 1):
        lang = tax.check_language(seed.language, row=n, field="language")
        group = tax.check_group(seed.group, row=n, field="group")
        if lang not in tax.groups[group].languages:
            raise MijaError(f"seed {n} ({seed.id}): group '{group}' has no {lang} seeds in the taxonomy")
        if not seed.text.strip():
            raise MijaError(f"seed {n} ({seed.id}): empty text")
        if group != seed.group or lang != seed.language:
            seed = replace(seed, group=group, language=lang)
        if seed.id not in seen:
            seen.add(seed.id)
            out.append(seed)
    if not out:
        raise MijaError("no seeds to build from")
    return out


def _scenario_pool(scenarios: Sequence[Scenario]) -> dict[tuple[str, str], list[Scenario]]:
    pool: dict[tuple[str, str], list[Scenario]] = {}
    for s in scenarios:
        pool.setdefault((s.language, s.category), []).append(s)
    return {k: sorted(v, key=lambda s: s.id) for k, v in sorted(pool.items())}


def _rewriter_version(language: str, offline_mode: bool) -> str:
    """The offline patterns' version, or the rewriter prompt's, few-shot examples' and rewriter data's."""
    if offline_mode:
        return offline.offline_version(language)
    examples = [f.__dict__ for fs in fewshot_examples(language).values() for f in fs]
    fewshot_version = stable_id(examples, length=8)
    return (f"{load_prompt('rewriter', language).version_tag}; fewshot {fewshot_version}; "
            f"rewriter-data v{rewriter_data(language).version}")


def _existing_items(store: Store, bench: str, build_key: str) -> list[BenchmarkItem]:
    """The bench's items, after checking they all come from this build configuration. Items are stored by
    content, so a row first written by a build of another bench keeps that bench's provenance: such shared
    rows are identical to what this build made, and count as its own."""
    items = store.items(bench)
    foreign = [i for i in items if not i.provenance.get("build_key")
               or (i.provenance.get("bench") == bench and i.provenance["build_key"] != build_key)]
    if foreign:
        raise MijaError(f"benchmark '{bench}' already holds items built with another configuration "
                        f"(rewriter, RNG seed, strategies, scenarios or templates differ) or loaded from "
                        f"elsewhere; resume with the same options or choose another --bench name")
    return items


def _index(ctx: _Build, language: str) -> NearDuplicateIndex:
    # Template prompts share most of their words by construction: only exact repeats count for them.
    if language not in ctx.indexes:
        ctx.indexes[language] = NearDuplicateIndex(1.0 if ctx.model is None else ctx.options.dedup_threshold)
    return ctx.indexes[language]


@dataclass
class _Build:
    """One build under way: what it is, fixed before the first call, and what it has done so far."""
    store: Store
    bench: str
    model: ModelConfig | None  # None: the offline rewriter
    options: _Options
    pool: dict[tuple[str, str], list[Scenario]]  # (language, category) -> scenarios
    config: dict[str, Any]  # what the build key hashes
    build_key: str
    run_id: str
    report: BuildReport
    indexes: dict[str, NearDuplicateIndex] = field(default_factory=dict)  # language -> kept rewrites


@dataclass
class _Calls:
    """How the rewriter is called: its backend, retry policy and calls in flight, and the progress shown."""
    backend: Backend | None
    policy: RetryPolicy | None
    limit: int
    bar: Any
    started: float
    stats: RunStats = field(default_factory=RunStats)


def _event_base(ctx: _Build, slot: Slot, attempt: int) -> dict[str, Any]:
    return {"bench": ctx.bench, "build_key": ctx.build_key, "attempt": attempt,
            "language": slot.seed.language, "group": slot.seed.group, "strategy": slot.strategy,
            "category": slot.category}


# -- chunks and attempts ------------------------------------------------------------------------------------
async def _build_chunk(ctx: _Build, chunk: list[Slot], calls: _Calls) -> None:
    """Try every seed of the chunk until it is kept or out of attempts; record those that gave up."""
    active = chunk
    reasons: dict[str, list[str]] = {s.seed.id: [] for s in chunk}
    for attempt in range(ctx.options.max_attempts):
        if not active:
            break
        active = await _attempt(ctx, active, attempt, reasons, calls)
    if active:
        _give_up(ctx, active, reasons, calls)


async def _attempt(ctx: _Build, active: list[Slot], attempt: int, reasons: dict[str, list[str]],
                   calls: _Calls) -> list[Slot]:
    """One attempt for each active seed: draw, rewrite, keep or drop, store. Returns the seeds to retry."""
    draws = {s.seed.id: _draw(ctx, s, attempt, calls.backend) for s in active}
    outputs = await _rewrite(ctx, active, draws, attempt, calls)
    retry, items, events = [], [], []
    for slot in active:  # input order: independent of the order answers arrived in
        index = _index(ctx, slot.seed.language)
        result = _screen_output(ctx, slot, draws[slot.seed.id], attempt, outputs[slot.seed.id], index)
        if isinstance(result, list):
            items.extend(result)
            index.add(result[0].id, result[0].prompt)
            calls.stats.done += 1
        else:
            reason, detail = result
            if reason == "error" and ctx.report.first_error is None:
                ctx.report.first_error = detail["error"]
            reasons[slot.seed.id].append(reason)
            ctx.report.dropped[reason] += 1
            events.append((slot.seed.id, "dropped",
                           {"reason": reason, **detail, **_event_base(ctx, slot, attempt)}))
            retry.append(slot)
            calls.stats.retries += 1
    if items:
        ctx.store.put_items(items, ctx.bench)
        ctx.report.items += len(items)
    if events:
        ctx.store.log_events(ctx.run_id, STAGE, events)
    ctx.report.done += len(active) - len(retry)
    calls.stats.elapsed_s = time.monotonic() - calls.started
    if calls.bar:
        calls.bar.update(calls.stats)
    return retry


def _give_up(ctx: _Build, slots: list[Slot], reasons: dict[str, list[str]], calls: _Calls) -> None:
    last = ctx.options.max_attempts - 1
    ctx.store.log_events(ctx.run_id, STAGE, [
        (s.seed.id, "gave_up", {"reasons": reasons[s.seed.id], **_event_base(ctx, s, last)}) for s in slots])
    for s in slots:
        ctx.report.gave_up[s.seed.id] = reasons[s.seed.id]
    calls.stats.failed += len(slots)
    if calls.bar:
        calls.bar.update(calls.stats)


# -- one attempt ------------------------------------------------------------------------------------------
def _draw(ctx: _Build, slot: Slot, attempt: int, backend: Backend | None) -> _Draw:
    rng = attempt_rng(ctx.options.rng_seed, slot.seed.id, attempt)
    scenario = rng.choice(ctx.pool[(slot.seed.language, slot.category)])
    if ctx.model is None:
        return _Draw(scenario, template=offline.pick_template(slot.strategy, slot.seed.language, rng))
    fewshot = tuple(rng.sample(fewshot_examples(slot.seed.language)[slot.strategy], 2))
    prefix = rng.choice(rewriter_data(slot.seed.language).prefixes)
    if backend is not None and not backend.supports_prefix:
        prefix = None
    settings = replace(ctx.model.settings, seed=ctx.model.settings.seed + attempt)
    return _Draw(scenario, fewshot, prefix, settings=settings)


def _messages(ctx: _Build, slot: Slot, draw: _Draw) -> list[dict[str, str]]:
    lang = slot.seed.language
    strategy = load_taxonomy().strategies[slot.strategy]
    labels = ("Scenario", "Target group", "Statement", "Message") if lang == "en" else \
        ("Cenário", "Grupo-alvo", "Afirmação", "Mensagem")
    examples = "\n\n".join(
        "\n".join(f"{label}: {value}" for label, value in
                  zip(labels, (ex.scenario, ex.group, ex.statement, ex.message), strict=True))
        for ex in draw.fewshot)
    return load_prompt("rewriter", lang).render(
        strategy_name=strategy.name(lang), strategy_description=" ".join(strategy.descriptions[lang].split()),
        examples=examples, scenario=draw.scenario.text, group=group_terms(lang).groups[slot.seed.group].name,
        statement=" ".join(slot.seed.text.split()), max_words=str(ctx.options.max_words))


async def _rewrite(ctx: _Build, slots: list[Slot], draws: dict[str, _Draw], attempt: int,
                   calls: _Calls) -> dict[str, Any]:
    """seed id -> the rendered template (offline) or the engine's Outcome (model)."""
    if ctx.model is None:
        return {s.seed.id: offline.render(draws[s.seed.id].template, s.seed, draws[s.seed.id].scenario)
                for s in slots}
    requests = [GenerationRequest(key=f"{s.seed.id}:{attempt}", messages=_messages(ctx, s, draws[s.seed.id]),
                                  settings=draws[s.seed.id].settings, prefix=draws[s.seed.id].prefix)
                for s in slots]
    outcomes: dict[str, Outcome] = {}

    def on_result(outcome: Outcome) -> None:
        outcomes[outcome.request.key.rsplit(":", 1)[0]] = outcome

    await execute(requests, calls.backend, on_result, concurrency=calls.limit, policy=calls.policy)
    return outcomes


def _screen_output(ctx: _Build, slot: Slot, draw: _Draw, attempt: int, output: Any,
                   index: NearDuplicateIndex) -> list[BenchmarkItem] | tuple[str, dict[str, Any]]:
    """Keep or drop one rewriter output (not the judge stage: this checks the prompt a rewriter wrote, not a
    target model's answer): the items for a kept output, or (drop reason, detail)."""
    lang = slot.seed.language
    truncated = False
    if ctx.model is None:
        prompt = output
    else:
        if output.error is not None:
            return "error", {"error": str(output.error), "error_kind": output.error.kind}
        generation = output.generation
        truncated = generation.finish_reason == "length"
        if truncated and not ctx.options.keep_truncated:
            return "truncated", {"output": (generation.text or "")[:300]}
        prompt = clean_rewrite(generation.text, draw.prefix, lang)
        if is_refusal(prompt, lang):
            return "refusal", {"output": prompt[:300]}
        if word_count(prompt) < rewriter_data(lang).min_words:
            return "empty", {"output": prompt[:300]}
    if ctx.options.counterfactual and not find_mentions(prompt, slot.seed.group, lang):
        return "group_not_found", {"output": prompt[:300]}
    duplicate = index.find(prompt)
    if duplicate is not None:
        return "near_duplicate", {"duplicate_of": duplicate, "output": prompt[:300]}
    return _items(ctx, slot, draw, attempt, prompt, truncated)


def _items(ctx: _Build, slot: Slot, draw: _Draw, attempt: int, prompt: str,
           truncated: bool = False) -> list[BenchmarkItem]:
    seed, scenario = slot.seed, draw.scenario
    provenance: dict[str, Any] = {
        "rewriter": OFFLINE_REWRITER if ctx.model is None else "model",
        "build_key": ctx.build_key, "bench": ctx.bench, "run_id": ctx.run_id,
        "rng_seed": ctx.options.rng_seed, "attempt": attempt, "seed_id": seed.id, "scenario_id": scenario.id,
        "strategy": slot.strategy, "strategy_mix": ctx.options.strategies,
        "template_version": ctx.config["templates"][seed.language], "seed_source": seed.source,
    }
    if ctx.model is None:
        provenance["template_id"] = f"{slot.strategy}/{draw.template.id}"
    else:
        provenance.update(rewriter_model=ctx.model.name, rewriter_spec=ctx.model.spec,
                          settings=draw.settings.to_dict(), fewshot=[f.id for f in draw.fewshot],
                          prefix=draw.prefix, prefix_injection=draw.prefix is not None, truncated=truncated)
    pair_id = stable_id("pair", ctx.build_key, seed.id) if ctx.options.counterfactual else ""
    groups = counterfactual_groups(seed.language) if ctx.options.counterfactual else [seed.group]
    if ctx.options.counterfactual:
        provenance["counterfactual"] = {"role": "original", "source_group": seed.group, "groups": groups}
    original = BenchmarkItem(
        language=seed.language, group=seed.group, seed_text=seed.text, scenario_category=scenario.category,
        scenario_text=scenario.text, strategy=slot.strategy, prompt=prompt, seed_id=seed.id,
        scenario_id=scenario.id, pair_id=pair_id, provenance=provenance)
    items = [original]
    for target in groups:
        if target == seed.group:
            continue
        swapped = swap_group(prompt, seed.group, target, seed.language)
        swapped_seed = swap_group(seed.text, seed.group, target, seed.language)
        twin = {**provenance, "counterfactual": {
            "role": "variant", "source_group": seed.group, "target_group": target,
            "original_item": original.id, "swaps": [list(s) for s in swapped.swaps],
            "seed_swapped": swapped_seed.found}}
        items.append(replace(original, group=target, prompt=swapped.text, seed_text=swapped_seed.text,
                             provenance=twin, id=""))
    return items


async def _checked(backend: Backend) -> None:
    """``backend.check()``, closing the backend when it fails."""
    try:
        await backend.check()
    except BaseException:
        await backend.aclose()
        raise
