"""One Rich progress display for long stages; each model (or judge) gets its own bar.

Usage::

    with StageProgress("generate") as progress:
        bar = progress.add("model-a", total=1000)
        await execute(requests, backend, on_result, on_progress=bar.update)
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .engine import RunStats


class _Bar:
    REFRESH_S = 0.1  # the display redraws ten times a second; updating it per result would only cost time

    def __init__(self, progress: Progress, task_id, skipped: int, total: int):
        self.progress, self.task_id, self.skipped, self.total = progress, task_id, skipped, total
        self._last = 0.0

    def update(self, stats: RunStats) -> None:
        now = time.monotonic()
        if now - self._last < self.REFRESH_S and self.skipped + stats.done + stats.failed < self.total:
            return
        self._last = now
        self.progress.update(
            self.task_id, completed=self.skipped + stats.done + stats.failed,
            info=f"ok {stats.done:,}  failed {stats.failed:,}  retrying {stats.retrying:,}  "
                 f"{stats.throughput:,.1f}/s  in flight <= {stats.concurrency}")


class StageProgress:
    """A progress display that stays quiet when output is not a terminal (CI logs, pipes) unless forced."""

    def __init__(self, stage: str, console: Console | None = None, enabled: bool | None = None):
        self.console = console or Console(stderr=True)
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.progress = Progress(
            TextColumn(f"[bold]{stage}[/bold] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console,
            disable=not enabled, transient=False)

    def add(self, label: str, total: int, skipped: int = 0) -> _Bar:
        """A bar for ``label``; ``skipped`` counts work already stored (resumed runs start part-way)."""
        task_id = self.progress.add_task(label, total=total, completed=skipped,
                                         info=f"resumed {skipped:,}" if skipped else "")
        return _Bar(self.progress, task_id, skipped, total)

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
