"""Progress for long stages; each model (or judge) gets its own bar or line.

Modes (``--progress``): ``rich`` draws live bars; ``plain`` prints one line per model at a steady interval
(done/total, rate, failures, retries, time-outs, ETA), for logs, CI and ``nohup``; ``none`` prints nothing;
``auto`` (default) is rich on a terminal and plain otherwise.

Usage::

    with StageProgress("generate", mode="auto") as progress:
        bar = progress.add("model-a", total=1000)
        await execute(requests, backend, on_result, on_progress=bar.update)
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from .engine import RunStats

MODES = ("auto", "rich", "plain", "none")
PLAIN_INTERVAL_S = 10.0


class _Bar:
    REFRESH_S = 0.1  # the display redraws ten times a second; updating it per result would only cost time

    def __init__(self, owner: StageProgress, label: str, task_id, skipped: int, total: int):
        self.owner, self.label, self.task_id, self.skipped, self.total = owner, label, task_id, skipped, total
        self.stats: RunStats | None = None
        self._last = 0.0
        self._finished = False  # a finished bar's plain line was printed: it is not repeated

    def update(self, stats: RunStats) -> None:
        self.stats = stats  # the plain printer reads the latest stats from its own thread
        if self.owner.mode != "rich":
            return
        now = time.monotonic()
        if now - self._last < self.REFRESH_S and self.skipped + stats.done + stats.failed < self.total:
            return
        self._last = now
        self.owner.progress.update(
            self.task_id, completed=self.skipped + stats.done + stats.failed,
            info=f"ok {stats.done:,}  failed {stats.failed:,}  retrying {stats.retrying:,}  "
                 f"{stats.throughput:,.1f}/s  in flight <= {stats.concurrency}")

    def line(self) -> str | None:
        """The plain progress line; None for a finished bar already shown. An unfinished one is printed every
        interval, changed or not, so a log shows a stalled run is still alive."""
        s = self.stats or RunStats()
        settled = s.done + s.failed
        done = self.skipped + settled
        if self._finished:
            return None
        self._finished = done >= self.total
        rate = settled / s.elapsed_s if s.elapsed_s else 0.0
        left = self.total - done
        eta = "done" if left <= 0 else (_duration(left / rate) if rate else "unknown")
        share = f" ({done / self.total:.0%})" if self.total else ""
        in_flight = f"in flight <= {s.concurrency}, " if s.concurrency else ""  # 0: no calls (offline work)
        return (f"{self.owner.stage} {self.label}: {done:,}/{self.total:,}{share}, {rate:,.1f}/s, "
                f"failed {s.failed:,}, retries {s.retries:,}, time-outs {s.timeouts:,}, {in_flight}ETA {eta}")


class StageProgress:
    """A progress display for one stage. ``mode`` is one of MODES; the older ``enabled`` flag still works
    (True: rich, False: none, None: auto)."""

    def __init__(self, stage: str, console: Console | None = None, enabled: bool | None = None,
                 mode: str | None = None, interval_s: float = PLAIN_INTERVAL_S):
        self.stage = stage
        self.console = console or Console(stderr=True)
        if mode is None:
            mode = "auto" if enabled is None else ("rich" if enabled else "none")
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "auto":
            mode = "rich" if self.console.is_terminal else "plain"
        self.mode = mode
        self.interval_s = interval_s
        self.bars: list[_Bar] = []
        self.progress = Progress(
            TextColumn(f"{stage} {{task.description}}", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console,
            disable=mode != "rich", transient=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, label: str, total: int, skipped: int = 0) -> _Bar:
        """A bar for ``label``; ``skipped`` counts work already stored (resumed runs start part-way)."""
        task_id = self.progress.add_task(label, total=total, completed=skipped,
                                         info=f"resumed {skipped:,}" if skipped else "")
        bar = _Bar(self, label, task_id, skipped, total)
        self.bars.append(bar)
        return bar

    def print_lines(self) -> None:
        for bar in list(self.bars):
            if (text := bar.line()) is not None:
                self.console.print(Text(text), soft_wrap=True)  # model names printed as they are

    def _print_every_interval(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.print_lines()

    def __enter__(self) -> StageProgress:
        if self.mode == "rich":
            self.progress.start()
        elif self.mode == "plain":
            self._thread = threading.Thread(target=self._print_every_interval, name=f"progress-{self.stage}",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.mode == "rich":
            self.progress.stop()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.print_lines()  # the last state of every bar not shown finished yet


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
