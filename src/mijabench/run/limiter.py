"""Adaptive concurrency: how many calls to one model may be in flight right now.

Two signals set the limit; the smaller wins.

- Rate limits (HTTP 429). A 429 cuts the limit by the share of 429s among the calls answered since the
  previous cut (at most once per round of calls, so one burst counts once), and each round of answers
  closes half the gap to the ceiling: the limit settles where the two balance, near the ceiling for a few
  429s, low for a server refusing most calls. The Retry-After of a 429 delays only the retry of that
  request (the engine waits it out), never the other calls. Two seconds without a 429 and the limit grows
  by one per success (doubling per round), so it is back at the ceiling within a few rounds.
- Queueing. Each answer is a sample (calls in flight when it was sent, its latency). A server that works on
  one call at a time answers the k-th queued call after k service times; one that batches answers in about
  the same time whatever the load. A line fitted through the samples, latency = a + b * in_flight, gives
  the throughput at n in flight, n / (a + b * n); the limit is the n reaching 90% of what the server can do
  at all (9 * a / b), plus one call of slack. A line is trusted only when the loads in the window differ
  (the largest at least 4 times the smallest: no extrapolating from one busy level) and the load explains
  at least half of the latency's spread (nine tenths while there are few samples; answers of very different
  lengths make a weak line). A time-out
  halves this limit at once, as the fit may come too late. A server with k parallel slots is held at a
  few times k, not k: the line cannot see the bend at k. Calls start slow (8 in flight, growing by one
  per answer) so a serial server is found before dozens of calls queue into their time-outs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

INITIAL = 8  # calls in flight at the start, before any answer says how the server copes
REGROW = 0.5  # while 429s come, each round of answers closes this share of the gap to the ceiling
QUIET_S = 2.0  # this long without a 429 and the rate-limit ceiling climbs back fast
SAMPLES = 64  # the latest (in flight, latency) samples the queueing fit uses: recent load only
FIRST_FIT = 4  # answers before the first fit: soon, before slow start sends many calls into a queue
REFIT_EVERY = 8  # answers between two fits (a fit is a few hundred multiplications)
MIN_R2 = 0.5  # how much of the latency's spread the load must explain before a fit may cut the limit
PROBE = 0.25  # calls added per round of answers once the queueing knee is known
SHARE = 0.9  # the share of the best throughput the queueing limit aims for (past it, latency buys little)


class AdaptiveLimiter:
    def __init__(self, max_limit: int, *, min_limit: int = 1, adaptive: bool = True,
                 initial: int = INITIAL, quiet_s: float = QUIET_S):
        if max_limit < 1:
            raise ValueError("concurrency must be at least 1")
        self.max_limit = max_limit
        self.min_limit = max(1, min(min_limit, max_limit))
        self.adaptive = adaptive
        self.rate_limit = float(max_limit)  # the ceiling 429s allow
        self.queue_limit = float(min(max_limit, initial) if adaptive else max_limit)  # the one latency allows
        self.quiet_s = quiet_s
        self.limit = self._current()
        self.in_flight = 0
        self.decreases = 0
        self.timeouts = 0
        self._last_decrease = float("-inf")  # when the rate-limit ceiling was last cut
        self._last_429 = float("-inf")
        self._answered_since_cut = 0
        self._rejected_since_cut = 0
        self._last_timeout_cut = float("-inf")
        self._samples: deque[tuple[int, float]] = deque(maxlen=SAMPLES)
        self._until_fit = FIRST_FIT
        self._growing = True  # the queueing limit grows by one per answer until a fit or a time-out says stop
        self._waiters: deque[asyncio.Future] = deque()

    # -- slots ---------------------------------------------------------------------------------------------
    async def acquire(self) -> float:
        """Wait for a slot; returns the time the call starts (pass it back with its outcome)."""
        while self.in_flight >= self.limit:
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
        self.in_flight += 1
        return time.monotonic()

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    # -- outcomes ------------------------------------------------------------------------------------------
    def succeeded(self, started: float | None = None, sent_with: int | None = None) -> None:
        """A call answered. ``started`` (from ``acquire``) and ``sent_with`` (calls in flight when it was
        sent, itself included) make it a queueing sample."""
        if not self.adaptive:
            return
        now = time.monotonic()
        self._answered_since_cut += 1
        if self.rate_limit < self.max_limit:
            if now - self._last_429 < self.quiet_s:  # a round of answers closes part of the gap
                step = REGROW * (self.max_limit - self.rate_limit) / self.rate_limit
            else:
                step = 1.0
            self.rate_limit = min(self.max_limit, self.rate_limit + step)
        if started is not None and sent_with is not None:
            self._sample(sent_with, now - started)
        if self.queue_limit < self.max_limit:
            # slow start until a fit says where the knee is; then a slow probe (one more call in flight
            # every few rounds), so a server that got faster is noticed by the next fit
            step = 1.0 if self._growing else PROBE / self.queue_limit
            self.queue_limit = min(self.max_limit, self.queue_limit + step)
        self._update()

    def overloaded(self, started: float, retry_after: float | None = None) -> None:
        """A call that started at ``started`` got 429. Calls that started before the last cut were sent
        under the old limit, so their 429s do not cut it again. ``retry_after`` is the engine's business:
        it delays that request's retry only."""
        now = time.monotonic()
        self._last_429 = now
        self._rejected_since_cut += 1
        if not self.adaptive or started < self._last_decrease:
            return
        share = self._rejected_since_cut / (self._rejected_since_cut + self._answered_since_cut)
        self.rate_limit = max(self.min_limit, self.rate_limit * (1 - min(0.5, share)))
        self._last_decrease = now
        self._answered_since_cut = self._rejected_since_cut = 0
        self.decreases += 1
        self._update()

    def timed_out(self, started: float) -> None:
        """A call got no answer within its time-out: the server is (at best) queueing, so halve the queueing
        limit, once per round, and stop growing it."""
        self.timeouts += 1
        if not self.adaptive:
            return
        self._growing = False  # not a sample: its latency is only a lower bound, and would flatten the fit
        if started >= self._last_timeout_cut:
            self.queue_limit = max(self.min_limit, self.queue_limit / 2)
            self._last_timeout_cut = time.monotonic()
        self._update()

    # -- the queueing fit ----------------------------------------------------------------------------------
    def _sample(self, sent_with: int, latency: float) -> None:
        self._samples.append((sent_with, latency))
        self._until_fit -= 1
        if self._until_fit <= 0:
            self._until_fit = REFIT_EVERY
            self._fit()

    def _fit(self) -> None:
        """Least squares of latency on in-flight count; needs a spread of in-flight counts to say anything."""
        n = len(self._samples)
        xs = [x for x, _ in self._samples]
        if max(xs) < 4 * min(xs):
            # the loads are too alike to extrapolate a line to an empty server (a client that is busy at
            # every load in the window would look like a serial server): keep the limit
            return
        mean_x = sum(xs) / n
        mean_y = sum(y for _, y in self._samples) / n
        sxx = sum((x - mean_x) ** 2 for x in xs)
        sxy = sum((x - mean_x) * (y - mean_y) for x, y in self._samples)
        syy = sum((y - mean_y) ** 2 for _, y in self._samples)
        slope = sxy / sxx
        min_r2 = MIN_R2 if n >= 16 else 0.9  # a few samples line up by chance more easily
        if slope > 0 and sxy * sxy < min_r2 * sxx * syy:
            # latency barely follows the load (answers of very different lengths, say): too weak a line
            # to cut the limit on; keep it as it is
            return
        base = mean_y - slope * mean_x  # latency of a call with nothing ahead of it
        if slope <= 0 or base >= slope * self.max_limit * (1 - SHARE) / SHARE:
            self._growing = True  # more in flight cost no latency worth the name: up to the ceiling
            return
        knee = SHARE / (1 - SHARE) * max(base, 0.0) / slope
        self.queue_limit = max(self.min_limit, min(self.max_limit, knee + 1))
        self._growing = False

    def _current(self) -> int:
        return max(self.min_limit, int(min(self.rate_limit, self.queue_limit)))

    def _update(self) -> None:
        self.limit = self._current()
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
