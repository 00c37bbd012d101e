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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends.base import Backend, GenerationRequest
from ..backends.registry import ModelConfig, create_backend, parse_model
from ..errors import MijaError
from ..records import HARMFUL, SAFE, UNPARSED, BenchmarkItem, Response, SamplingSettings, Verdict
from ..run.engine import Outcome, RetryPolicy, RunStats, execute
from ..run.generate import FATAL_KINDS
from ..store import Store
from .identity import JudgeIdentity, llm_judge_identity, rules_judge_identity
from .parse import parse_verdict
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
    backend: Backend | None = None
    owned: bool = False  # created here, so closed here
    concurrency: int | None = None


def resolve_judges(judges: Sequence[str | ModelConfig | Backend | RefusalRules],
                   max_tokens: int = JUDGE_MAX_TOKENS) -> list[_Judge]:
    """Turn model strings, configs, ready backends or a RefusalRules into judges; names must be unique.

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


def select_responses(store: Store, bench: str | None = None,
                     target_models: Sequence[str] | None = None) -> list[Response]:
    """Answered responses (no error, text present), optionally only for one bench's items and some models."""
    if bench is not None:
        benches = store.benches()
        if bench not in benches:
            raise MijaError(f"no benchmark named '{bench}' in {store.path} "
                            f"(known: {', '.join(benches) or 'none'})")
        in_bench = {item.id for item in store.items(bench)}
    models = list(target_models) if target_models else [None]
    out: list[Response] = []
    for model in models:
        out.extend(r for r in store.responses(model=model, ok_only=True)
                   if r.ok and (bench is None or r.item_id in in_bench))
    return out


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
        responses = select_responses(store, bench, target_models)
        items = store.get_items({r.item_id for r in responses})
        missing = sum(1 for r in responses if r.item_id not in items)
        responses = [r for r in responses if r.item_id in items]
        for j in resolved:  # every judge reachable before the run is recorded
            if j.backend is not None:
                await j.backend.check()
        run_id = store.new_run("judge", {
            "judges": [{"name": j.name, "spec": j.spec, "fingerprint": j.identity.fingerprint,
                        "identity": j.identity.parts} for j in resolved],
            "bench": bench, "target_models": list(target_models or []), "concurrency": concurrency,
            "responses": len(responses), "keep_stale": keep_stale})
        stats = await asyncio.gather(*(
            _run_judge(store, j, responses, items, run_id, concurrency, policy, progress, keep_stale)
            for j in resolved))
    finally:
        for j in resolved:
            if j.owned and j.backend is not None:
                await j.backend.aclose()
    return JudgeRun(run_id, len(responses), missing, list(stats))


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


async def _run_judge(store: Store, judge: _Judge, responses: list[Response], items: dict[str, BenchmarkItem],
                     run_id: str, concurrency: int | None, policy: RetryPolicy | None,
                     progress: Any, keep_stale: bool) -> JudgeStats:
    fingerprint = judge.identity.fingerprint
    current = store.judged_response_ids(judge.name, fingerprint)
    stale = store.judged_response_ids(judge.name) - current
    done = current | stale if keep_stale else current
    todo = [r for r in responses if r.id not in done]
    stats = JudgeStats(judge.name, pending=len(todo), skipped=len(responses) - len(todo),
                       fingerprint=fingerprint)
    in_selection = {r.id for r in responses} & stale
    stats.kept_stale, stats.stale = (len(in_selection), 0) if keep_stale else (0, len(in_selection))
    bar = progress.add(judge.name, total=len(responses), skipped=stats.skipped) if progress else None
    writer = _Writer(store, stats)
    start = time.monotonic()
    try:
        if judge.rules is not None:
            # In a thread, so LLM judges running at the same time keep their event loop.
            await asyncio.to_thread(_run_rules, judge.rules, todo, run_id, fingerprint, writer,
                                    bar.update if bar else None)
        else:
            assert judge.backend is not None
            settings = judge.settings
            languages = {r.id: items[r.item_id].language for r in todo}
            run_stats = RunStats(skipped=stats.skipped)

            def on_result(outcome: Outcome) -> None:
                writer.add(_verdict_from_outcome(outcome, judge.name, languages[outcome.request.key], run_id,
                                                 fingerprint))
                # A bad key or a missing model fails every call alike: stop sending, keep what is stored.
                if outcome.error is not None and outcome.error.kind in FATAL_KINDS and not run_stats.aborted:
                    run_stats.aborted = str(outcome.error)

            await execute(_requests(todo, items, settings, run_stats), judge.backend, on_result,
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


def _requests(todo: list[Response], items: dict[str, BenchmarkItem], settings: SamplingSettings,
              stats: RunStats) -> Iterator[GenerationRequest]:
    """Built lazily: the engine pulls requests as workers free up, so a large backlog costs no memory."""
    request_settings = replace(settings, system_prompt=None)  # already in the messages
    for response in todo:
        if stats.aborted:
            return
        item = items[response.item_id]
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


def _run_rules(rules: RefusalRules, todo: list[Response], run_id: str, fingerprint: str, writer: _Writer,
               on_progress: Callable[[RunStats], None] | None) -> None:
    start = time.monotonic()
    for n, response in enumerate(todo, start=1):
        verdict = rules.judge(response.text)
        writer.add(Verdict(response_id=response.id, judge=rules.name, label=verdict.label,
                           reasoning=verdict.reasoning, run_id=run_id, fingerprint=fingerprint))
        if on_progress and (n % 500 == 0 or n == len(todo)):
            on_progress(RunStats(done=n, elapsed_s=time.monotonic() - start))
