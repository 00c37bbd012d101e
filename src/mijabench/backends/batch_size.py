"""How many rows the continuous decode loop runs together: bounded by memory, then chosen by measurement.

Memory: the key/value buffer takes ``rows * capacity * bytes_per_token``. Its budget is a share of the memory
available when the model is loaded (``kv_cache_mb`` overrides it), so a long prompt or a small machine gets
fewer rows instead of an out-of-memory error.

Throughput: per-step cost is mostly fixed overhead, so tokens/s rises with the rows and then flattens (or
falls, once attention over the cache dominates). The chooser starts low, runs each size on the ladder for a
few full steps, and moves up while a size beats the one below it by at least ``GAIN``; then it stays at the
best one. The tokens/s of each size tried is kept in ``measured`` (the benchmark prints it).
"""

from __future__ import annotations

LADDER = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
GAIN = 1.08  # a bigger batch must be this much faster to be worth its memory
STEPS_PER_TRIAL = 8  # full decode steps measured per size
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

    @staticmethod
    def rows_below(rows: int) -> int:
        return max(1, rows // 2)

    def record(self, rows: int, active: int, seconds: float, capacity: int) -> None:
        """One decode step of ``active`` rows out of ``rows`` took ``seconds``. Only full steps count."""
        if self.settled or active < rows or rows != self.rows(capacity):
            return
        self._steps += 1
        self._tokens += active
        self._seconds += seconds
        if self._steps < STEPS_PER_TRIAL:
            return
        rate = self._tokens / self._seconds
        self.measured[rows] = rate
        self._steps, self._tokens, self._seconds = 0, 0, 0.0
        below = [r for r in self.measured if r < rows]
        if below and rate < GAIN * self.measured[max(below)]:
            self.current = max(self.measured, key=self.measured.get)  # not worth it: back to the best
            self.settled = True
            return
        bigger = [r for r in LADDER if r > rows]
        if not bigger or bigger[0] > self.memory_cap(capacity):
            self.settled = True
            return
        self.current = bigger[0]
