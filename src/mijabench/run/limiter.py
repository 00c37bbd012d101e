"""Adaptive concurrency: how many calls to one model may be in flight right now.

AIMD, as TCP does it: when the server says it is overloaded (HTTP 429) the limit halves, at most once per
round of calls (a burst of 429s from one overload counts once), and the server's Retry-After pauses every new
call; each run of ``limit`` successes then adds one slot, up to the configured ceiling.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

MAX_PAUSE_S = 60.0  # a Retry-After longer than this pauses new calls this long; the retry itself waits more


class AdaptiveLimiter:
    def __init__(self, max_limit: int, *, min_limit: int = 1, adaptive: bool = True):
        if max_limit < 1:
            raise ValueError("concurrency must be at least 1")
        self.max_limit = max_limit
        self.min_limit = max(1, min(min_limit, max_limit))
        self.limit = max_limit
        self.adaptive = adaptive
        self.in_flight = 0
        self.pause_until = 0.0
        self.decreases = 0
        self._last_decrease = float("-inf")
        self._successes = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> float:
        """Wait for a slot; returns the time the call starts (pass it to ``overloaded``)."""
        while True:
            pause = self.pause_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self.in_flight < self.limit:
                self.in_flight += 1
                return time.monotonic()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # we were handed a slot we will not use: pass it on
                else:
                    self._waiters.remove(waiter)
                raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def succeeded(self) -> None:
        if not self.adaptive or self.limit >= self.max_limit:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._wake()

    def overloaded(self, started: float, retry_after: float | None = None) -> None:
        """A call that started at ``started`` got 429. Calls that started before the last decrease were sent
        under the old limit, so their 429s do not halve it again."""
        now = time.monotonic()
        if retry_after:
            self.pause_until = max(self.pause_until, now + min(retry_after, MAX_PAUSE_S))
        if self.adaptive and started >= self._last_decrease:
            self.limit = max(self.min_limit, self.limit // 2)
            self._last_decrease = now
            self._successes = 0
            self.decreases += 1

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
