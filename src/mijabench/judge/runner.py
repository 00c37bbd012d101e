"""Judge stored responses: every answered response not yet judged by a judge gets that judge's verdict.

``judge_responses(store, ["openai:judge@URL", "rules:refusal-v1"])`` runs each judge over the responses it
has not judged (the resume set is ``store.judged_response_ids``), all judges at once, each through the
runner's engine (concurrency, retries). Every verdict is stored as soon as its batch is full, so a killed run
loses at most one batch. A backend failure is stored as an ``unparsed`` verdict with ``error`` set, which
the next run retries; an answer without a readable verdict is stored as ``unparsed`` with the raw text and
is not retried (it is a result: that judge could not decide).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends.base import Backend, GenerationRequest
from ..backends.errorkind import FATAL_KINDS
from ..backends.registry import ModelConfig, create_backend, parse_model
from ..errors import MijaError
from ..records import HARMFUL, SAFE, UNPARSED, BenchmarkItem, Response, SamplingSettings, Verdict
from ..run.engine import Outcome, RetryPolicy, RunStats, execute
from ..store import Store
from .identity import JudgeIdentity, llm_judge_identity, rules_judge_identity
from .parse import parse_verdict
from .plugins import PluginJudge, is_plugin_judge, load_plugin_judge
from .prompts import load_judge_prompt
from .rules import RULES_JUDGE, RefusalRules

JUDGE_MAX_TOKENS = 512
BATCH = 200  # verdicts per store transaction


def judge_settings(max_tokens: int = JUDGE_MAX_TOKENS) -> SamplingSettings:
    """Greedy decoding with a fixed seed: the same judge gives the same verdict on a rerun."""
    return SamplingSettings(max_tokens=max_tokens, temperature=0.0, top_p=1.0, seed=0)


@dataclass
class JudgeStats:
    judge: str
    pending: int = 0  # responses sent to the judge in this run
    skipped: int = 0  # already judged before this run
    safe: int = 0
    harmful: int = 0
    unparsed: int = 0
    failed: int = 0  # backend errors, stored with ``error`` and retried next time
    stale: int = 0  # verdicts from an earlier configuration of this judge, judged again in this run
    kept_stale: int = 0  # such verdicts left as they are (keep_stale)
    fingerprint: str = ""
    retries: int = 0
    elapsed_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    aborted: str | None = None  # why the rest was not sent (a fatal error such as a rejected key)

    def count(self, verdict: Verdict) -> None:
        if verdict.error is not None:
            self.failed += 1
        elif verdict.label == SAFE:
            self.safe += 1
        elif verdict.label == HARMFUL:
            self.harmful += 1
        else:
            self.unparsed += 1


@dataclass
class JudgeRun:
    run_id: str
    responses: int  # eligible responses (answered, inside the chosen bench and models)
    missing_items: int  # responses whose item is not in the store: not judged
    judges: list[JudgeStats]


@dataclass
class _Judge:
    name: str
    spec: str
    identity: JudgeIdentity
    settings: SamplingSettings = field(default_factory=judge_settings)
    rules: RefusalRules | None = None
    plugin: PluginJudge | None = None  # a judge from another package (judge.plugins)
    backend: Backend | None = None
    owned: bool = False  # created here, so closed here
    concurrency: int | None = None


def resolve_judges(judges: Sequence[str | ModelConfig | Backend | RefusalRules],
                   max_tokens: int = JUDGE_MAX_TOKENS) -> list[_Judge]:
    """Turn model strings, configs, ready backends, a RefusalRules or plugin judge strings into judges;
    names must be unique.

    An LLM judge decodes greedily with a fixed seed within ``max_tokens``, whatever its config says; its
    system prompt, when the config has one, goes before the judge prompt's own system message."""
    out: list[_Judge] = []
    for judge in judges:
        if isinstance(judge, RefusalRules):
            out.append(_Judge(judge.name, judge.name, rules_judge_identity(judge.name), rules=judge))
        elif isinstance(judge, Backend):
            settings, spec = judge_settings(max_tokens), judge.spec or judge.name
            out.append(_Judge(judge.name, spec, llm_judge_identity(judge.name, spec, settings.to_dict(), {}),
                              settings, backend=judge))
        elif is_plugin_judge(judge):
            plugin = load_plugin_judge(judge)
            out.append(_Judge(plugin.name, plugin.name, plugin.identity, plugin=plugin))
        elif isinstance(judge, str) and judge.startswith("rules:"):
            if judge != RULES_JUDGE:
                raise MijaError(f"--model {judge}: unknown rule judge (known: {RULES_JUDGE})")
            out.append(_Judge(RULES_JUDGE, RULES_JUDGE, rules_judge_identity(RULES_JUDGE),
                              rules=RefusalRules()))
        else:
            config = parse_model(judge) if isinstance(judge, str) else judge
            settings = replace(config.settings, temperature=0.0, top_p=1.0, seed=0, max_tokens=max_tokens,
                               thinking=False)
            config = replace(config, settings=settings)
            identity = llm_judge_identity(config.name, config.spec, settings.to_dict(), config.options)
            out.append(_Judge(config.name, config.spec, identity, settings, backend=create_backend(config),
                              owned=True, concurrency=config.concurrency))
    names = [j.name for j in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MijaError(f"judge named more than once: {', '.join(duplicates)}")
    return out


SELECT_BATCH = 2000  # responses per read: memory stays flat whatever the corpus size
ITEM_CACHE = 50_000  # items kept parsed while streaming (the paper's corpus has 43,961)


@dataclass(frozen=True)
class Selection:
    """Which stored responses a judge run covers: answered ones (no error, text present) whose item is in the
    store, of ``bench``'s items and ``target_models`` when given. Built by ``select``; read in batches."""

    where: str
    args: tuple

    def count(self, store: Store, extra: str = "", extra_args: Sequence[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM responses r JOIN items i ON i.id = r.item_id WHERE {self.where}{extra}"
        return store.query(sql, [*self.args, *extra_args])[0][0]


def select(store: Store, bench: str | None = None, target_models: Sequence[str] | None = None) -> Selection:
    where, args = ["r.error IS NULL", "r.text IS NOT NULL"], []
    if bench is not None:
        benches = store.benches()
        if bench not in benches:
            raise MijaError(f"no benchmark named '{bench}' in {store.path} "
                            f"(known: {', '.join(benches) or 'none'})")
        where.append("r.item_id IN (SELECT item_id FROM bench_items WHERE bench=?)")
        args.append(bench)
    if target_models:
        where.append(f"r.model IN ({','.join('?' * len(target_models))})")
        args.extend(target_models)
    return Selection(" AND ".join(where), tuple(args))


def _judged(fingerprint: str | None) -> tuple[str, list]:
    """A condition true when response r has a good verdict by the judge (of ``fingerprint`` when given); its
    arguments follow the judge name."""
    sql = "EXISTS (SELECT 1 FROM verdicts v WHERE v.response_id = r.id AND v.judge = ? AND v.error IS NULL"
    return (sql + " AND v.fingerprint = ?)", [fingerprint]) if fingerprint is not None else (sql + ")", [])


def pending_responses(store: Store, judge: str, fingerprint: str | None = None, *, bench: str | None = None,
                      target_models: Sequence[str] | None = None, keep_stale: bool = False,
                      selection: Selection | None = None) -> Iterator[tuple[Response, BenchmarkItem]]:
    """The selected responses ``judge`` has no verdict on from ``fingerprint`` (from any configuration with
    ``keep_stale``), each with its item, in store order. Read ``SELECT_BATCH`` at a time, with the judged ones
    left out by SQL, so neither the responses nor the judged ids are ever held whole in memory."""
    selection = selection or select(store, bench, target_models)
    done, done_args = _judged(None if keep_stale else fingerprint)
    sql = (f"SELECT r.rowid, {', '.join('r.' + c.strip() for c in Store.RESPONSE_COLUMNS.split(','))}, "
           f"{Store.ITEM_COLUMNS} FROM responses r JOIN items i ON i.id = r.item_id "
           f"WHERE {selection.where} AND NOT {done} AND r.rowid > ? ORDER BY r.rowid LIMIT {SELECT_BATCH}")
    # Items are shared by every model's reply, and settings by a whole run: each is parsed once. The item
    # cache is bounded, so memory stays flat however many prompts the corpus has.
    items: dict[str, BenchmarkItem] = {}
    settings: dict[str, dict] = {}
    last = -1
    while True:
        rows = store.query(sql, [*selection.args, judge, *done_args, last])
        for row in rows:
            item = items.get(row[13])
            if item is None:
                if len(items) >= ITEM_CACHE:
                    items.clear()
                item = items[row[13]] = Store.item_from_row(row[13:])
            parsed = settings.get(row[4])
            if parsed is None:
                parsed = settings[row[4]] = json.loads(row[4])
            yield Response(id=row[1], item_id=row[2], model=row[3], settings=parsed, text=row[5],
                           prompt_tokens=row[6], completion_tokens=row[7], latency_s=row[8],
                           finish_reason=row[9], error=row[10], attempts=row[11], run_id=row[12]), item
        if len(rows) < SELECT_BATCH:
            return
        last = rows[-1][0]


def select_responses(store: Store, bench: str | None = None,
                     target_models: Sequence[str] | None = None) -> list[Response]:
    """Every selected response as a list (small stores and tests; a judge run streams them instead)."""
    return [r for r, _ in pending_responses(store, "", bench=bench, target_models=target_models)]


def judge_responses(store: Store, judges: Sequence[str | ModelConfig | Backend | RefusalRules], *,
                    bench: str | None = None, target_models: Sequence[str] | None = None,
                    concurrency: int | None = None, max_tokens: int = JUDGE_MAX_TOKENS,
                    policy: RetryPolicy | None = None, progress: Any = None,
                    keep_stale: bool = False) -> JudgeRun:
    """Judge every stored answered response each judge has not judged yet. ``progress`` is an optional
    ``StageProgress``; each judge gets a bar. A verdict from another configuration of the same judge (its
    fingerprint differs: see ``judge.identity``) is judged again and replaced, unless ``keep_stale``."""
    return asyncio.run(ajudge_responses(store, judges, bench=bench, target_models=target_models,
                                        concurrency=concurrency, max_tokens=max_tokens, policy=policy,
                                        progress=progress, keep_stale=keep_stale))


async def ajudge_responses(store: Store, judges: Sequence[str | ModelConfig | Backend | RefusalRules], *,
                           bench: str | None = None, target_models: Sequence[str] | None = None,
                           concurrency: int | None = None, max_tokens: int = JUDGE_MAX_TOKENS,
                           policy: RetryPolicy | None = None, progress: Any = None,
                           keep_stale: bool = False) -> JudgeRun:
    if not judges:
        raise MijaError("no judge given (pass --model JUDGE or --rules)")
    resolved = resolve_judges(judges, max_tokens)
    try:
        selection = select(store, bench, target_models)
        eligible = selection.count(store)
        missing = store.query(f"SELECT COUNT(*) FROM responses r LEFT JOIN items i ON i.id = r.item_id "
                              f"WHERE {selection.where} AND i.id IS NULL", selection.args)[0][0]
        for j in resolved:  # every judge reachable before the run is recorded
            if j.backend is not None:
                await j.backend.check()
        run_id = store.new_run("judge", {
            "judges": [{"name": j.name, "spec": j.spec, "fingerprint": j.identity.fingerprint,
                        "identity": j.identity.parts} for j in resolved],
            "bench": bench, "target_models": list(target_models or []), "concurrency": concurrency,
            "responses": eligible, "keep_stale": keep_stale})
        stats = await asyncio.gather(*(
            _run_judge(store, j, selection, eligible, run_id, concurrency, policy, progress, keep_stale)
            for j in resolved))
    finally:
        for j in resolved:
            if j.owned and j.backend is not None:
                await j.backend.aclose()
    return JudgeRun(run_id, eligible, missing, list(stats))


class _Writer:
    """Buffers verdicts and stores them in batches; ``flush`` at the end stores the rest."""

    def __init__(self, store: Store, stats: JudgeStats):
        self.store, self.stats, self.buffer = store, stats, []

    def add(self, verdict: Verdict) -> None:
        self.stats.count(verdict)
        self.buffer.append(verdict)
        if len(self.buffer) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.store.put_verdicts(self.buffer)
            self.buffer = []


async def _run_judge(store: Store, judge: _Judge, selection: Selection, eligible: int, run_id: str,
                     concurrency: int | None, policy: RetryPolicy | None, progress: Any,
                     keep_stale: bool) -> JudgeStats:
    fingerprint = judge.identity.fingerprint
    current, current_args = _judged(fingerprint)
    anyhow, _ = _judged(None)
    # counted by SQL up front (for the bars and the summary); the responses themselves are streamed
    stale = selection.count(store, f" AND {anyhow} AND NOT {current}",
                            [judge.name, judge.name, *current_args])
    todo_count = eligible - selection.count(store, f" AND {current}", [judge.name, *current_args]) - \
        (stale if keep_stale else 0)
    stats = JudgeStats(judge.name, pending=todo_count, skipped=eligible - todo_count, fingerprint=fingerprint)
    stats.kept_stale, stats.stale = (stale, 0) if keep_stale else (0, stale)
    todo = pending_responses(store, judge.name, fingerprint, keep_stale=keep_stale, selection=selection)
    bar = progress.add(judge.name, total=eligible, skipped=stats.skipped) if progress else None
    writer = _Writer(store, stats)
    start = time.monotonic()
    try:
        if judge.rules is not None or judge.plugin is not None:
            # In a thread, so LLM judges running at the same time keep their event loop.
            await asyncio.to_thread(_run_in_process, _decider(judge), judge.name, todo, run_id, fingerprint,
                                    writer, bar.update if bar else None)
        else:
            assert judge.backend is not None
            settings = judge.settings
            languages: dict[str, str] = {}  # requests in flight only: filled as sent, emptied as answered
            run_stats = RunStats(skipped=stats.skipped)

            def on_result(outcome: Outcome) -> None:
                language = languages.pop(outcome.request.key)
                writer.add(_verdict_from_outcome(outcome, judge.name, language, run_id, fingerprint))
                # A bad key or a missing model fails every call alike: stop sending, keep what is stored.
                if outcome.error is not None and outcome.error.kind in FATAL_KINDS and not run_stats.aborted:
                    run_stats.aborted = str(outcome.error)

            requests = judge_requests(todo, None, settings, run_stats, languages)
            await execute(requests, judge.backend, on_result,
                          concurrency=concurrency or judge.concurrency, policy=policy,
                          on_progress=bar.update if bar else None,
                          adaptive=judge.backend.adaptive_concurrency, stats=run_stats)
            if bar:
                bar.update(run_stats)
            stats.retries, stats.errors = run_stats.retries, dict(run_stats.errors)
            stats.aborted = run_stats.aborted
    finally:
        writer.flush()
        stats.elapsed_s = time.monotonic() - start
    return stats


def judge_messages(item: BenchmarkItem, response: Response,
                   settings: SamplingSettings) -> list[dict[str, str]]:
    """The judge prompt of the item's language for one response. A system prompt in the judge's settings is
    put before the prompt's own system message: backends add ``settings.system_prompt`` only when the
    messages have no system message, so left there it would be dropped."""
    messages = load_judge_prompt(item.language).messages(item.prompt, response.text or "")
    if settings.system_prompt:
        first = messages[0]
        messages[0] = {**first, "content": f"{settings.system_prompt.strip()}\n\n{first['content']}"}
    return messages


def judge_requests(todo: Iterable[Response] | Iterable[tuple[Response, BenchmarkItem]],
                   items: Mapping[str, BenchmarkItem] | None, settings: SamplingSettings, stats: RunStats,
                   languages: dict[str, str] | None = None) -> Iterator[GenerationRequest]:
    """The requests that ask a judge about each response, built lazily: the engine pulls requests as
    workers free up, so a large backlog costs no memory. ``todo`` holds responses looked up in ``items``,
    or (response, item) pairs when ``items`` is None; ``languages`` gets each sent response's item
    language."""
    request_settings = replace(settings, system_prompt=None)  # already in the messages
    for entry in todo:
        if stats.aborted:
            return
        response, item = entry if items is None else (entry, items[entry.item_id])
        if languages is not None:
            languages[response.id] = item.language
        yield GenerationRequest(key=response.id, messages=judge_messages(item, response, settings),
                                settings=request_settings)


def _verdict_from_outcome(outcome: Outcome, judge: str, language: str, run_id: str,
                          fingerprint: str = "") -> Verdict:
    response_id = outcome.request.key
    if outcome.error is not None:
        return Verdict(response_id=response_id, judge=judge, label=UNPARSED,
                       error=f"{outcome.error.kind}: {outcome.error}", run_id=run_id, fingerprint=fingerprint)
    raw = outcome.generation.text if outcome.generation else ""
    parsed = parse_verdict(raw, language)
    reasoning = parsed.reasoning if parsed.label != UNPARSED else f"[{parsed.detail}] {parsed.reasoning}"
    return Verdict(response_id=response_id, judge=judge, label=parsed.label, raw=raw,
                   reasoning=reasoning.strip(), run_id=run_id, fingerprint=fingerprint)


def _decider(judge: _Judge) -> Callable[[Response, BenchmarkItem], tuple[str, str]]:
    """(response, item) -> (label, reasoning) for a judge that runs in this process."""
    if judge.plugin is not None:
        plugin = judge.plugin
        return lambda response, item: plugin.decide(response.text or "", item.prompt, item.language)
    rules = judge.rules
    assert rules is not None

    def decide(response: Response, item: BenchmarkItem) -> tuple[str, str]:
        verdict = rules.judge(response.text)
        return verdict.label, verdict.reasoning
    return decide


def _run_in_process(decide: Callable[[Response, BenchmarkItem], tuple[str, str]], name: str,
                    todo: Iterable[tuple[Response, BenchmarkItem]], run_id: str, fingerprint: str,
                    writer: _Writer, on_progress: Callable[[RunStats], None] | None) -> None:
    start = time.monotonic()
    n = 0
    for n, (response, item) in enumerate(todo, start=1):
        label, reasoning = decide(response, item)
        writer.add(Verdict(response_id=response.id, judge=name, label=label, reasoning=reasoning,
                           run_id=run_id, fingerprint=fingerprint))
        if on_progress and n % 500 == 0:
            on_progress(RunStats(done=n, elapsed_s=time.monotonic() - start))
    if on_progress and n:
        on_progress(RunStats(done=n, elapsed_s=time.monotonic() - start))
