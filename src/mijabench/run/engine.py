"""The engine: push requests through a backend concurrently, with bounded retries, and hand every outcome
to a callback as soon as it is known.

The engine knows no store. Callers (the generation runner, the judges, the rewriter) decide what to send,
skip what is already stored, and persist each outcome in ``on_result``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..backends.base import Backend, BackendError, Generation, GenerationRequest


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_total_s: float = 600.0  # per request, all attempts together
    timeout_s: float = 300.0  # per attempt
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins when it asks for longer."""
        jittered = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))
        return max(jittered, retry_after or 0.0)


@dataclass
class Outcome:
    request: GenerationRequest
    generation: Generation | None
    error: BackendError | None
    attempts: int


@dataclass
class RunStats:
    done: int = 0
    failed: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0


async def call_with_retries(backend: Backend, request: GenerationRequest, policy: RetryPolicy,
                            on_retry: Callable[[BackendError], None] | None = None) -> Outcome:
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            generation = await asyncio.wait_for(backend.generate(request), policy.timeout_s)
            return Outcome(request, generation, None, attempt)
        except TimeoutError:
            error = BackendError(f"no answer within {policy.timeout_s:g}s", retryable=True, kind="timeout")
        except BackendError as exc:
            error = exc
        elapsed = time.monotonic() - start
        wait = policy.delay(attempt, error.retry_after)
        if not error.retryable or attempt >= policy.max_attempts or elapsed + wait > policy.max_total_s:
            return Outcome(request, None, error, attempt)
        if on_retry:
            on_retry(error)
        await asyncio.sleep(wait)


async def execute(requests: Iterable[GenerationRequest], backend: Backend,
                  on_result: Callable[[Outcome], None], *, concurrency: int | None = None,
                  policy: RetryPolicy | None = None,
                  on_progress: Callable[[RunStats], None] | None = None) -> RunStats:
    """Send every request, at most ``concurrency`` at a time; call ``on_result`` once per request."""
    policy = policy or RetryPolicy()
    limit = concurrency or backend.default_concurrency
    stats = RunStats()
    start = time.monotonic()
    queue: asyncio.Queue[GenerationRequest | None] = asyncio.Queue(maxsize=limit * 2)

    def retried(error: BackendError) -> None:
        stats.retries += 1

    async def worker() -> None:
        while (request := await queue.get()) is not None:
            outcome = await call_with_retries(backend, request, policy, retried)
            if outcome.error is None:
                stats.done += 1
            else:
                stats.failed += 1
                stats.errors[outcome.error.kind] = stats.errors.get(outcome.error.kind, 0) + 1
            on_result(outcome)
            stats.elapsed_s = time.monotonic() - start
            if on_progress:
                on_progress(stats)

    workers = [asyncio.create_task(worker()) for _ in range(limit)]
    try:
        for request in requests:
            await queue.put(request)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    stats.elapsed_s = time.monotonic() - start
    return stats
