"""Batched, prompt writes of responses to the store.

Responses arrive one by one, hundreds a second; one transaction each would spend the time in commits. The
writer gathers them and commits a batch every ``interval_s`` or every ``max_rows`` rows, whichever comes
first, in a worker thread so the event loop keeps sending. A run killed even with SIGKILL loses at most the
batch not yet committed, and those requests are simply sent again by the next run (a response's id is its
key, so nothing is stored twice).
"""

from __future__ import annotations

import asyncio

from ..records import Response
from ..store import Store


class ResponseWriter:
    def __init__(self, store: Store, *, interval_s: float = 0.05, max_rows: int = 256):
        self.store = store
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.written = 0
        self._buffer: list[Response] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task | None = None

    def add(self, response: Response) -> None:
        self._buffer.append(response)
        if len(self._buffer) >= self.max_rows:
            self._full.set()

    async def __aenter__(self) -> ResponseWriter:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._write(self._take())  # synchronously: this also runs when the run is being cancelled

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), self.interval_s)
            except TimeoutError:
                pass
            self._full.clear()
            batch = self._take()
            if batch:
                write = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    await write  # a thread cannot be stopped: let this batch land before we go
                    raise

    def _take(self) -> list[Response]:
        batch, self._buffer = self._buffer, []
        return batch

    def _write(self, batch: list[Response]) -> None:
        if batch:
            self.store.put_responses(batch)
            self.written += len(batch)
