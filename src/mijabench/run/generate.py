"""The generation runner: send every benchmark item to every model and store each response as it arrives.

A response is keyed by (item, model, sampling settings), so running the same thing again skips what is
stored: a run stopped at any point, kill -9 included, continues where it stopped, and nothing is stored
twice. Failures are stored as errors and sent again by the next run; they never count as answers.

    from mijabench.run.generate import run_items
    stats = run_items(store, store.items("demo"), [parse_model("openai:llama3@http://127.0.0.1:8000/v1")])
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any

from ..backends.base import Backend, Generation, GenerationRequest
from ..backends.errorkind import FATAL_KINDS
from ..backends.registry import ModelConfig, create_backend
from ..errors import MijaError
from ..records import BenchmarkItem, Response, SamplingSettings, stable_id
from ..store import Store
from .engine import Outcome, RetryPolicy, RunStats, execute
from .progress import StageProgress
from .responsewriter import ResponseWriter


def build_messages(item: BenchmarkItem, settings: SamplingSettings) -> list[dict[str, str]]:
    """What a target model is sent: the settings' system prompt (if any), then the item's prompt."""
    messages = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    messages.append({"role": "user", "content": item.prompt})
    return messages


def pending_items(store: Store, items: Sequence[BenchmarkItem], model: str,
                  settings: SamplingSettings) -> list[tuple[BenchmarkItem, str]]:
    """(item, response id) for every item this model has not answered yet with these settings."""
    answered = store.answered_response_ids(model, settings)
    key = settings.key  # hashed once: records.response_id would hash the settings again for every item
    out = []
    for item in items:
        rid = stable_id("response", item.id, model, key)  # == response_id(item.id, model, settings)
        if rid not in answered:
            out.append((item, rid))
    return out


def run_items(store: Store, items: Sequence[BenchmarkItem], configs: Sequence[ModelConfig], *,
              concurrency: int | None = None, policy: RetryPolicy | None = None,
              progress: bool | str | StageProgress = True, bench: str | None = None,
              backends: dict[str, Backend] | None = None,
              allow_model_change: bool = False) -> dict[str, RunStats]:
    """Send every item to every model; returns RunStats per model name. See ``arun_items``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_items(store, items, configs, concurrency=concurrency, policy=policy,
                                      progress=progress, bench=bench, backends=backends,
                                      allow_model_change=allow_model_change))
    raise RuntimeError("run_items was called inside a running event loop; use `await arun_items(...)`")


async def arun_items(store: Store, items: Sequence[BenchmarkItem], configs: Sequence[ModelConfig], *,
                     concurrency: int | None = None, policy: RetryPolicy | None = None,
                     progress: bool | str | StageProgress = True, bench: str | None = None,
                     backends: dict[str, Backend] | None = None,
                     allow_model_change: bool = False) -> dict[str, RunStats]:
    """The runner itself.

    ``concurrency`` overrides every model's limit (default: the model config's, else the backend's). Items
    should be in the store so later stages can join responses to them; ``bench`` names their benchmark
    (recorded with the run) and stores those not yet stored under it. ``backends`` supplies ready backends
    by model name (tests, notebooks); the others are built from their configs. Every backend is checked
    (``Backend.check``) before anything is sent, so an unreachable server or a wrong model name fails fast
    with a MijaError; so does a server that now reports another model (id or weights) than the one whose
    responses are stored under the same name, unless ``allow_model_change``. Nothing is stored before. A
    model whose calls fail for a reason more calls will not fix (bad key, unknown model) stops early; its
    stats carry the reason in ``aborted``. ``progress`` is a display, a mode of ``StageProgress`` (auto,
    rich, plain, none), or True (auto) / False (none).
    """
    policy = policy or RetryPolicy()
    # nothing is written until every model is built, reachable and still the model stored runs used
    items, configs = plan_run(items, configs, concurrency=concurrency)

    ready = dict(backends or {})
    built: list[Backend] = []
    try:
        for config in configs:
            if config.name not in ready:
                ready[config.name] = create_backend(config)
                built.append(ready[config.name])
        await asyncio.gather(*(ready[c.name].check() for c in configs))
        check_model_identity(store, configs, ready, allow_change=allow_model_change)
    except BaseException:
        await asyncio.gather(*(b.aclose() for b in built), return_exceptions=True)
        raise
    store_items(store, items, bench)

    run_id = store.new_run("generate", {
        "bench": bench, "items": len(items), "policy": asdict(policy),
        "models": [{"name": c.name, "spec": c.spec, "settings": c.settings.to_dict(), "options": c.options,
                    "concurrency": c.concurrency or ready[c.name].default_concurrency,
                    "endpoint": ready[c.name].info()} for c in configs]})
    record_models(store, configs, ready)

    display = progress_display("generate", progress)
    results: dict[str, RunStats] = {}
    try:
        with display:
            async with ResponseWriter(store) as writer:
                await asyncio.gather(*(
                    _run_model(store, items, config, ready[config.name], writer, display, policy, run_id,
                               results) for config in configs))
    finally:
        await asyncio.gather(*(b.aclose() for b in built), return_exceptions=True)
    record_models(store, configs, ready)  # again: a backend learns what its server reports as it answers
    store.log_events(run_id, "generate", [(name, "summary", s.summary()) for name, s in results.items()]
                     + [(c.name, "endpoints", ready[c.name].info()) for c in configs])
    return results


def progress_display(stage: str, progress: bool | str | StageProgress) -> StageProgress:
    """A display from what callers pass: one ready, a mode name, or True (auto) / False (none)."""
    if isinstance(progress, StageProgress):
        return progress
    if isinstance(progress, str):
        return StageProgress(stage, mode=progress)
    return StageProgress(stage, mode="auto" if progress else "none")


def record_models(store: Store, configs: Sequence[ModelConfig], ready: dict[str, Backend]) -> None:
    """Each model's metadata: family and size, and what its backend knows of its endpoint (URLs, the
    model ids the server lists and answers with)."""
    for config in configs:
        info = ready[config.name].info()
        store.put_model(config.name, config.spec, family=config.family or info.get("family"),
                        params_b=config.params_b if config.params_b is not None else info.get("params_b"),
                        meta={"backend": type(ready[config.name]).__name__, **info})


def prepare_run(store: Store, items: Sequence[BenchmarkItem], configs: Sequence[ModelConfig], *,
                concurrency: int | None, bench: str | None) -> tuple[list[BenchmarkItem], list[ModelConfig]]:
    """``plan_run`` then ``store_items``: for executors that check their models elsewhere (Ray workers)."""
    items, configs = plan_run(items, configs, concurrency=concurrency)
    store_items(store, items, bench)
    return items, configs


def plan_run(items: Sequence[BenchmarkItem], configs: Sequence[ModelConfig], *,
             concurrency: int | None) -> tuple[list[BenchmarkItem], list[ModelConfig]]:
    """Drop repeated items, apply a concurrency override and refuse a model name given twice; writes
    nothing."""
    items = list({item.id: item for item in items}.values())  # the same item twice is one item
    configs = list(configs)
    if concurrency is not None:
        configs = [replace(c, concurrency=concurrency) for c in configs]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise MijaError(f"the same model name is given twice ({', '.join(names)}); give each a distinct name")
    return items, configs


def store_items(store: Store, items: Sequence[BenchmarkItem], bench: str | None) -> None:
    """Store the items not yet filed under ``bench``, so later stages can join responses to them."""
    if bench:
        stored = {row[0] for row in store.query("SELECT item_id FROM bench_items WHERE bench=?", (bench,))}
        missing = [item for item in items if item.id not in stored]
        if missing:
            store.put_items(missing, bench=bench)


def check_servers(store: Store, configs: Sequence[ModelConfig], *, allow_model_change: bool = False) -> None:
    """Check the HTTP servers of ``configs`` and what they serve from this process, writing nothing: for
    executors whose workers build the backends only once the run has started."""
    servers = [c for c in configs if c.scheme == "openai"]
    if not servers:
        return

    async def check() -> None:
        ready = {c.name: create_backend(c) for c in servers}
        try:
            await asyncio.gather(*(b.check() for b in ready.values()))
            check_model_identity(store, servers, ready, allow_change=allow_model_change)
        finally:
            await asyncio.gather(*(b.aclose() for b in ready.values()), return_exceptions=True)
    asyncio.run(check())


def check_model_identity(store: Store, configs: Sequence[ModelConfig], ready: dict[str, Backend], *,
                         allow_change: bool = False) -> None:
    """Refuse to resume a model name whose server now reports another model than the one recorded with its
    stored responses: the served model id, or the weights' path (vLLM's ``root``) at any URL recorded
    both times. Mixing answers of two models under one name would make every figure a blend."""
    if allow_change:
        return
    stored = {m["name"]: m["meta"] for m in store.models()}
    for config in configs:
        before = stored.get(config.name)
        if not before or not store.query("SELECT 1 FROM responses WHERE model=? LIMIT 1", (config.name,)):
            continue
        now = ready[config.name].info()
        change = _identity_change(before, now)
        if change:
            raise MijaError(f"model '{config.name}': the server now reports {change[1]} where the stored "
                            f"responses came from {change[0]}; use another --model name, or pass "
                            "--allow-model-change to add to them anyway")


def _identity_change(before: dict[str, Any], now: dict[str, Any]) -> tuple[str, str] | None:
    """(was, is) of the first difference in what identifies the served model, else None."""
    old_id, new_id = before.get("served_model"), now.get("served_model")
    if old_id and new_id and old_id != new_id:
        return f"model id '{old_id}'", f"model id '{new_id}'"
    old_roots, new_roots = before.get("served_roots") or {}, now.get("served_roots") or {}
    for url in sorted(set(old_roots) & set(new_roots)):
        if old_roots[url] != new_roots[url]:
            return f"weights '{old_roots[url]}' at {url}", f"weights '{new_roots[url]}'"
    old_set, new_set = set(old_roots.values()), set(new_roots.values())
    if not set(old_roots) & set(new_roots) and old_set and new_set and not old_set & new_set:
        # other URLs (a moved server): the weights must still be among those seen before
        return f"weights '{', '.join(sorted(old_set))}'", f"weights '{', '.join(sorted(new_set))}'"
    return None


async def _run_model(store: Store, items: list[BenchmarkItem], config: ModelConfig, backend: Backend,
                     writer: ResponseWriter, display: StageProgress, policy: RetryPolicy, run_id: str,
                     results: dict[str, RunStats]) -> None:
    settings = config.settings
    todo = pending_items(store, items, config.name, settings)
    stats = results[config.name] = RunStats(skipped=len(items) - len(todo))
    bar = display.add(config.name, total=len(items), skipped=stats.skipped)
    if not todo:
        return
    item_of = {rid: item.id for item, rid in todo}
    settings_dict = settings.to_dict()

    def requests() -> Iterator[GenerationRequest]:
        for item, rid in todo:
            if stats.aborted:
                return
            yield GenerationRequest(key=rid, messages=build_messages(item, settings), settings=settings)

    def on_result(outcome: Outcome) -> None:
        rid = outcome.request.key
        writer.add(_response(rid, item_of[rid], config.name, settings_dict, outcome, run_id))
        if outcome.error is not None and outcome.error.kind in FATAL_KINDS and not stats.aborted:
            stats.aborted = str(outcome.error)

    limit = config.concurrency or backend.default_concurrency
    try:
        await execute(requests(), backend, on_result, concurrency=limit, policy=policy,
                      on_progress=bar.update, adaptive=backend.adaptive_concurrency, stats=stats)
    finally:
        stats.replicas = backend.info().get("replicas") or {}
    bar.update(stats)


def _response(rid: str, item_id: str, model: str, settings: dict[str, Any], outcome: Outcome,
              run_id: str) -> Response:
    generation: Generation | None = outcome.generation
    if generation is None:
        error = f"{outcome.error.kind}: {outcome.error}" if outcome.error else "unknown error"
        return Response(id=rid, item_id=item_id, model=model, settings=settings, error=error,
                        attempts=outcome.attempts, run_id=run_id)
    return Response(id=rid, item_id=item_id, model=model, settings=settings, text=generation.text,
                    prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens,
                    latency_s=generation.latency_s, finish_reason=generation.finish_reason,
                    attempts=outcome.attempts, run_id=run_id)

