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
from .limiter import AdaptiveLimiter


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
    errors: dict[str, int] = field(default_factory=dict)  # error kind -> requests that failed with it
    retrying: int = 0  # requests that failed at least once and are not settled yet
    concurrency: int = 0  # the in-flight limit now (it shrinks on HTTP 429 and grows back)
    skipped: int = 0  # already stored before this run (set by callers that resume)
    error_examples: dict[str, str] = field(default_factory=dict)  # error kind -> one message, for summaries
    aborted: str | None = None  # why the rest of the requests were not sent (set by callers that stop early)

    def count_failure(self, error: BackendError) -> None:
        self.failed += 1
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1
        self.error_examples.setdefault(error.kind, str(error))

    @property
    def throughput(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0


async def call_with_retries(backend: Backend, request: GenerationRequest, policy: RetryPolicy,
                            on_retry: Callable[[BackendError], None] | None = None,
                            limiter: AdaptiveLimiter | None = None) -> Outcome:
    """One request, tried until it succeeds or the policy's budget is spent. With a ``limiter``, every
    attempt holds one of its slots while in flight (waiting for a slot does not count toward the timeout)
    and reports successes and 429s to it."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        started = await limiter.acquire() if limiter else 0.0
        try:
            async with asyncio.timeout(policy.timeout_s):  # unlike wait_for, no extra task per attempt
                generation = await backend.generate(request)
        except TimeoutError:
            error = BackendError(f"no answer within {policy.timeout_s:g}s", retryable=True, kind="timeout")
        except BackendError as exc:
            error = exc
        except Exception as exc:  # a backend bug must not take the whole run down: record it, go on
            error = BackendError(f"{type(exc).__name__}: {exc}", retryable=False, kind="internal")
        else:
            if limiter:
                limiter.succeeded()
            return Outcome(request, generation, None, attempt)
        finally:
            if limiter:
                limiter.release()
        if limiter and (error.status == 429 or error.kind == "rate_limited"):
            limiter.overloaded(started, error.retry_after)
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
                  on_progress: Callable[[RunStats], None] | None = None,
                  adaptive: bool = False, stats: RunStats | None = None) -> RunStats:
    """Send every request, at most ``concurrency`` at a time; call ``on_result`` once per request.

    ``adaptive`` lets the limit shrink when the server answers 429 and grow back (see ``AdaptiveLimiter``);
    ``concurrency`` is then the ceiling. ``requests`` is consumed lazily, so a generator may stop early.
    """
    policy = policy or RetryPolicy()
    limit = concurrency or backend.default_concurrency
    limiter = AdaptiveLimiter(limit) if adaptive else None
    stats = stats or RunStats()
    stats.concurrency = limit
    start = time.monotonic()
    pending = iter(requests)  # shared by the workers: each takes the next request when it is free

    async def worker() -> None:
        for request in pending:
            retried = False

            def on_retry(error: BackendError) -> None:
                nonlocal retried
                stats.retries += 1
                if not retried:
                    retried = True
                    stats.retrying += 1
                if limiter:
                    stats.concurrency = limiter.limit

            outcome = await call_with_retries(backend, request, policy, on_retry, limiter)
            if retried:
                stats.retrying -= 1
            if outcome.error is None:
                stats.done += 1
            else:
                stats.count_failure(outcome.error)
            if limiter:
                stats.concurrency = limiter.limit
            on_result(outcome)
            stats.elapsed_s = time.monotonic() - start
            if on_progress:
                on_progress(stats)

    workers = [asyncio.create_task(worker()) for _ in range(limit)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    stats.elapsed_s = time.monotonic() - start
    return stats
