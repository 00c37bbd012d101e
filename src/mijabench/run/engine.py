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
from typing import Any

from ..backends.base import Backend, BackendError, Generation, GenerationRequest
from ..backends.errorkind import ErrorKind
from .limiter import AdaptiveLimiter


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    # per request, all attempts together; None: no cap, so a healthy slow run is never cut off
    max_total_s: float | None = None
    timeout_s: float = 300.0  # per attempt, from the moment it is sent (waiting for a slot does not count)
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
    concurrency: int = 0  # the in-flight limit now (it shrinks on HTTP 429 or queueing and grows back)
    attempts: int = 0  # calls sent, retries included
    timeouts: int = 0  # attempts that got no answer within the time-out (the connection was closed)
    skipped: int = 0  # already stored before this run (set by callers that resume)
    error_examples: dict[str, str] = field(default_factory=dict)  # error kind -> one message, for summaries
    aborted: str | None = None  # why the rest of the requests were not sent (set by callers that stop early)
    # per endpoint URL: requests, failures, median latency (set by the runner from its backend, when known)
    replicas: dict[str, dict] = field(default_factory=dict)

    def count_failure(self, error: BackendError) -> None:
        self.failed += 1
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1
        self.error_examples.setdefault(error.kind, str(error))

    @property
    def throughput(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures a run logs as its 'summary' event (the in-flight gauges are left out)."""
        return {"answered": self.done, "failed": self.failed, "skipped": self.skipped,
                "retries": self.retries, "attempts": self.attempts, "timeouts": self.timeouts,
                "elapsed_s": round(self.elapsed_s, 3), "errors": self.errors,
                "error_examples": self.error_examples, "aborted": self.aborted, "replicas": self.replicas}


async def call_with_retries(backend: Backend, request: GenerationRequest, policy: RetryPolicy,
                            on_retry: Callable[[BackendError], None] | None = None,
                            limiter: AdaptiveLimiter | None = None,
                            on_attempt: Callable[[bool], None] | None = None,
                            on_resume: Callable[[], None] | None = None) -> Outcome:
    """One request, tried until it succeeds or the policy's budget is spent. With a ``limiter``, every
    attempt holds one of its slots while in flight (waiting for a slot does not count toward the timeout)
    and reports answers, 429s and time-outs to it. A time-out cancels the call, which closes its
    connection, so the server can stop working on it. A 429's Retry-After delays this request's retry
    only. ``on_attempt`` is told of every attempt as it ends (True: it timed out)."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        started = await limiter.acquire() if limiter else time.monotonic()
        sent_with = limiter.in_flight if limiter else 0
        try:
            async with asyncio.timeout(policy.timeout_s):  # unlike wait_for, no extra task per attempt
                generation = await backend.generate(request)
        except TimeoutError:
            error = BackendError(f"no answer within {policy.timeout_s:g}s", retryable=True,
                                 kind=ErrorKind.TIMEOUT)
        except BackendError as exc:
            error = exc
        except Exception as exc:  # a backend bug must not take the whole run down: record it, go on
            error = BackendError(f"{type(exc).__name__}: {exc}", retryable=False, kind=ErrorKind.INTERNAL)
        else:
            if limiter:
                limiter.succeeded(started, sent_with)
            if on_attempt:
                on_attempt(False)
            return Outcome(request, generation, None, attempt)
        finally:
            if limiter:
                limiter.release()
        if on_attempt:
            on_attempt(error.kind == ErrorKind.TIMEOUT)
        if limiter and (error.status == 429 or error.kind == ErrorKind.RATE_LIMITED):
            limiter.overloaded(started, error.retry_after)
        elif limiter and error.kind == ErrorKind.TIMEOUT:
            limiter.timed_out(started)
        elapsed = time.monotonic() - start
        wait = policy.delay(attempt, error.retry_after)
        over = policy.max_total_s is not None and elapsed + wait > policy.max_total_s
        if not error.retryable or attempt >= policy.max_attempts or over:
            return Outcome(request, None, error, attempt)
        if on_retry:
            on_retry(error)
        try:
            await asyncio.sleep(wait)
        finally:
            if on_resume:
                on_resume()


async def execute(requests: Iterable[GenerationRequest], backend: Backend,
                  on_result: Callable[[Outcome], None], *, concurrency: int | None = None,
                  policy: RetryPolicy | None = None,
                  on_progress: Callable[[RunStats], None] | None = None,
                  adaptive: bool = False, stats: RunStats | None = None) -> RunStats:
    """Send every request, at most ``concurrency`` at a time; call ``on_result`` once per request.

    ``adaptive`` lets the limit shrink when the server answers 429 or queues calls, and grow back (see
    ``AdaptiveLimiter``); ``concurrency`` is then the ceiling. ``requests`` is consumed lazily, so a generator
    may stop early.
    """
    policy = policy or RetryPolicy()
    limit = concurrency or backend.default_concurrency
    # a limiter even when not adaptive: it is what bounds the calls in flight (workers may be more, below)
    limiter = AdaptiveLimiter(limit, adaptive=adaptive)
    stats = stats or RunStats()
    stats.concurrency = limiter.limit
    start = time.monotonic()
    pending = iter(requests)  # shared by the workers: each takes the next request when it is free
    tasks: list[asyncio.Task] = []
    alive = sleeping = 0  # workers running; of them, waiting to retry (holding no slot)

    def on_attempt(timed_out: bool) -> None:
        stats.attempts += 1
        if timed_out:
            stats.timeouts += 1

    def spawn() -> None:
        nonlocal alive
        alive += 1
        tasks.append(asyncio.create_task(worker()))

    async def worker() -> None:
        nonlocal alive, sleeping
        for request in pending:
            retried = False

            def on_retry(error: BackendError) -> None:
                nonlocal retried, sleeping
                stats.retries += 1
                if not retried:
                    retried = True
                    stats.retrying += 1
                stats.concurrency = limiter.limit
                # this worker now sleeps out a backoff or a Retry-After: a stand-in keeps the other
                # requests going, so one request's wait never slows the rest
                sleeping += 1
                if alive - sleeping < limit:
                    spawn()

            def on_resume() -> None:
                nonlocal sleeping
                sleeping -= 1

            outcome = await call_with_retries(backend, request, policy, on_retry, limiter, on_attempt,
                                              on_resume)
            if retried:
                stats.retrying -= 1
            if outcome.error is None:
                stats.done += 1
            else:
                stats.count_failure(outcome.error)
            stats.concurrency = limiter.limit
            on_result(outcome)
            stats.elapsed_s = time.monotonic() - start
            if on_progress:
                on_progress(stats)
            if alive - sleeping > limit:  # a sleeper woke up while its stand-in works: one steps down
                break
        alive -= 1

    for _ in range(limit):
        spawn()
    try:
        while not all(task.done() for task in tasks):  # stand-ins join the list while we wait
            await asyncio.gather(*(task for task in tasks if not task.done()))
        for task in tasks:
            task.result()  # a worker's exception ends the run
    finally:
        for task in tasks:
            task.cancel()
    stats.elapsed_s = time.monotonic() - start
    return stats
