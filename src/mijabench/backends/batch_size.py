"""How many rows the continuous decode loop runs together: bounded by memory, then chosen by measurement.

Memory: the key/value buffer takes ``rows * capacity * bytes_per_token``. Its budget is a share of the memory
available when the model is loaded (``kv_cache_mb`` overrides it), so a long prompt or a small machine gets
fewer rows instead of an out-of-memory error.

Throughput: per-step cost is mostly fixed overhead, so tokens/s rises with the rows and then flattens (or
falls, once attention over the cache dominates). The chooser starts low, runs each size on the ladder for a
few full steps, and moves up while a size beats the one below it by at least ``GAIN``; then it stays at the
best one. The tokens/s of each size tried is kept in ``measured`` (the benchmark prints it).

A size stopped at by measurement, below what memory allows, is not final: on a shared or virtual machine
the steps of two sizes, timed a few seconds apart, can differ by a fifth for reasons of their own (the demo
on a 2-core VM stopped at 24 rows when 32 were a third faster). So every ``RETRY_STEPS`` full steps the size
settled on is measured again and the next size up is tried against that fresh figure, at most ``RETRIES``
times.
"""

from __future__ import annotations

LADDER = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# the first size tried, memory permitting. 16 and 24 rows never beat 32 in any measurement on a 2-core CPU
# (quiet: 134, 151 and 191 decode tokens/s; busy: 16, 40 and 42), and their two trials cost the demo about
# 16 steps at a third or half of its rows; the memory cap still lowers it where rows are wide or memory short
START_ROWS = 32
GAIN = 1.08  # a bigger batch must be this much faster to be worth its memory
STEPS_PER_TRIAL = 8  # full decode steps measured per size
RETRY_STEPS = 48  # full steps at a size settled on by measurement before the next size up is tried again
RETRIES = 3
CPU_BUDGET_MB = (128, 512)  # the buffer's share of available memory is clamped to this range on CPU


def memory_budget_bytes(device: str) -> int:
    """Bytes the key/value buffer may take: on CPU 20% of available memory, within ``CPU_BUDGET_MB``;
    on a GPU 40% of its free memory."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free * 0.4)
    import psutil

    low, high = CPU_BUDGET_MB
    return int(min(max(psutil.virtual_memory().available * 0.2, low * 2**20), high * 2**20))


class RowChooser:
    """The row count of a decode loop. ``fixed``: always that many (the ``batch_size`` option)."""

    def __init__(self, *, bytes_per_token: int, budget_bytes: int, start: int, fixed: int | None = None):
        self.bytes_per_token, self.budget_bytes = bytes_per_token, budget_bytes
        self.fixed = fixed
        self.current = fixed or start
        self.settled = fixed is not None
        self.measured: dict[int, float] = {}  # rows -> decode tokens/s, as measured
        self._steps, self._tokens, self._seconds = 0, 0, 0.0
        self.retries = 0 if fixed is not None else RETRIES  # left: a size settled on by measurement only
        self._since_settled = 0

    def memory_cap(self, capacity: int) -> int:
        """Most rows whose buffer of ``capacity`` columns fits the budget (at least 1)."""
        return max(1, self.budget_bytes // max(1, capacity * self.bytes_per_token))

    def rows(self, capacity: int) -> int:
        """Rows to run now, for a buffer of ``capacity`` columns."""
        return max(1, min(self.current, self.memory_cap(capacity)))

    def shrink(self) -> None:
        """After an out-of-memory error: half the rows, and no more probing upwards."""
        self.current = max(1, self.rows_below(self.current))
        self.budget_bytes = max(self.bytes_per_token, self.budget_bytes // 2)
        self.settled = True
        self.retries = 0

    @staticmethod
    def rows_below(rows: int) -> int:
        return max(1, rows // 2)

    def record(self, rows: int, active: int, seconds: float, capacity: int) -> None:
        """One decode step of ``active`` rows out of ``rows`` took ``seconds``. Only full steps count."""
        if (self.settled and not self.retries) or active < rows or rows != self.rows(capacity):
            return
        self._steps += 1
        self._tokens += active
        self._seconds += seconds
        if self._steps < STEPS_PER_TRIAL:
            return
        rate = self._tokens / self._seconds
        self._steps, self._tokens, self._seconds = 0, 0, 0.0
        bigger = self.next_size(rows, capacity)
        if self.settled:  # settled by measurement: measured again, and the next size up tried now and then
            self._since_settled += STEPS_PER_TRIAL
            if self._since_settled >= RETRY_STEPS and bigger:
                self.measured[rows] = rate  # the figure to beat, taken just before the bigger size runs
                self.retries -= 1
                self.settled, self.current = False, bigger
            return
        self.measured[rows] = rate
        below = [r for r in self.measured if r < rows]
        if below and rate < GAIN * self.measured[max(below)]:
            self.current = max(self.measured, key=self.measured.get)  # not worth it: back to the best
            self.settled, self._since_settled = True, 0
            return
        if not bigger:
            self.settled, self.retries = True, 0  # the top of the ladder, or of memory: nothing to retry
            return
        self.current = bigger

    def next_size(self, rows: int, capacity: int) -> int | None:
        """The size to try after ``rows``: the next on the ladder, or as many rows as memory holds when that
        is fewer (the demo's 512 MB hold 36 rows at 320 columns, between 32 and 48), if that is at least an
        eighth more rows; None when there is none."""
        bigger = min((r for r in LADDER if r > rows), default=None)
        if bigger is None:
            return None
        size = min(bigger, self.memory_cap(capacity))
        return size if size >= rows + max(1, rows // 8) else None
