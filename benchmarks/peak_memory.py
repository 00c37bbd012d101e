"""Peak resident memory of this process during a block, sampled by a background thread. Shared by the
benchmark scripts (they run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import threading

import psutil


class PeakRss:
    """``with PeakRss() as rss: ...`` then ``rss.peak`` in bytes. Sampling (default every 5 ms) rather than
    ``ru_maxrss``, which would also count what was loaded before the block."""

    def __init__(self, interval_s: float = 0.005):
        self.process, self.peak, self.interval_s = psutil.Process(), 0, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
