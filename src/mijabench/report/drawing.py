"""Drawing the report's plots in other processes. matplotlib holds the GIL, so threads would not help: forked
processes (helpers) draw the plots while the report writes its tables, examples and provenance. The helpers
are forked when the report starts, before the judged table is loaded, so that they import matplotlib while
the report analyses (a little less urgently than the report: ``HELPER_NICENESS``); once the analysis is
done, the report sends each its share of the plots: the plotting function's name (from a fixed list) and
its arguments, the tables among them as JSON (no pickle, no code). The PNGs come back through a pipe as
plain bytes. Anything that fails in a helper is drawn again in the report's process, where its error is
raised, as are the plots of a helper that has not answered within ``CHILD_TIMEOUT_S``."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..analysis import Frame

try:
    import fcntl
except ImportError:  # no fcntl (Windows): no fork either, so no helper
    fcntl = None

# (plot name, rough cost, plotting function's name, its arguments)
Job = tuple[str, float, str, tuple]
Draw = Callable[[str, tuple], bytes]  # a plotting function's name and arguments -> PNG bytes
CHILD_TIMEOUT_S = 600.0  # the forked drawing takes seconds; past this it is stopped and redrawn here
# the helpers import matplotlib while the report analyses: with two CPUs, three processes then share them,
# and the report, which everything waits for, keeps a whole CPU when the helpers yield to it
HELPER_NICENESS = 5
JOBS_PIPE_BYTES = 1 << 20  # a helper reads its jobs once matplotlib is imported: the report need not wait


def workers_available() -> int:
    """Processes worth drawing in: the CPUs this process may run on, at most two (the plots are few). One
    when this process runs other Python threads (an audit's servers, a judge's workers): a thread holding a
    lock at the fork would leave it held forever in the child."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(2, os.cpu_count() or 1))


# --- the jobs on the pipe: JSON, tables as their columns' values and dtypes (floats round-trip exactly) ---

def _encode_value(value: Any) -> Any:
    if isinstance(value, Frame):
        return {"frame": value.name, "columns": [[name, col.dtype.str if col.dtype != object else "object",
                                                  col.tolist()] for name, col in value.columns.items()]}
    if isinstance(value, dict):
        raise TypeError("a plot's argument is a table, a list or a plain value, not a mapping")
    return value


def _decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    columns = {}
    for name, dtype, values in value["columns"]:
        if dtype == "object":
            col = np.empty(len(values), dtype=object)
            col[:] = values
        else:
            col = np.array(values, dtype=np.dtype(dtype))
        columns[name] = col
    return Frame(columns, value["frame"])


def encode_jobs(jobs: list[Job]) -> bytes:
    message = [[name, cost, func, [_encode_value(a) for a in args]] for name, cost, func, args in jobs]
    return json.dumps(message).encode("utf-8")


def decode_jobs(data: bytes) -> list[Job]:
    return [(name, cost, func, tuple(_decode_value(a) for a in args))
            for name, cost, func, args in json.loads(data)]


# --- the helper process ---

class Helper:
    """A forked process that imports matplotlib at once, then waits for the plots it is to draw."""

    def __init__(self, pid: int, to_child: int, from_child: int):
        self.pid, self.to_child, self.from_child = pid, to_child, from_child
        self.reaped = False  # once reaped, its pid may be another process's: never signalled again

    @classmethod
    def fork(cls, draw: Draw, siblings: list[Helper] = ()) -> Helper | None:
        """A helper, or None when this process cannot fork. ``siblings``: helpers forked before, whose pipe
        ends this one must not keep open (a sibling would wait for the end of its jobs while this one held
        their pipe's write end)."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            job_read, job_write = os.pipe()
            png_read, png_write = os.pipe()
            pid = os.fork()
        except OSError:
            return None
        if pid:
            with contextlib.suppress(OSError, AttributeError):  # a larger pipe (Linux): the jobs are sent
                fcntl.fcntl(job_write, fcntl.F_SETPIPE_SZ, JOBS_PIPE_BYTES)  # without waiting for the reader
            os.close(job_read)
            os.close(png_write)
            return cls(pid, job_write, png_read)
        code = 1
        try:  # the child: import, wait, draw, write, and leave without running the parent's exit handlers
            for fd in (job_write, png_read, *(end for h in siblings for end in (h.to_child, h.from_child))):
                if fd >= 0:
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.nice(HELPER_NICENESS)
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.collections  # noqa: F401
            import matplotlib.figure  # noqa: F401

            with os.fdopen(job_read, "rb") as pipe:
                message = pipe.read()  # empty when the report needs no help after all
            jobs = decode_jobs(message) if message else []
            # every plot is drawn before the first write: the parent reads the pipe only when its own share
            # is done, and a PNG larger than the pipe's buffer (64 KiB) would block the child until then
            drawn = [(name.encode("utf-8"), draw(func, args)) for name, _, func, args in jobs]
            with os.fdopen(png_write, "wb") as out:
                for key, data in drawn:
                    out.write(struct.pack("<IQ", len(key), len(data)) + key + data)
            code = 0
        finally:
            os._exit(code)

    def send(self, jobs: list[Job]) -> bool:
        """Hand the helper its plots (it starts drawing when the pipe is closed); False if it is gone."""
        fd, self.to_child = self.to_child, -1  # closed below: never closed again (its number may be reused)
        try:
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(encode_jobs(jobs))
        except OSError:  # BrokenPipeError: it died; its plots are drawn here
            return False
        return True

    def collect(self) -> dict[str, bytes] | None:
        """The plots the helper drew, or None when it failed (they are then drawn here)."""
        chunks, deadline = [], time.monotonic() + CHILD_TIMEOUT_S
        fd, self.from_child = self.from_child, -1
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:  # a child stuck for any reason is stopped, and its plots drawn here
                ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
                chunk = pipe.read(1 << 20) if ready else None
                if not chunk:
                    break
                chunks.append(chunk)
        if chunk is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        data = b"".join(chunks)
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if os.waitstatus_to_exitcode(status) != 0:
            return None
        out, pos = {}, 0
        while pos < len(data):
            n_key, n_data = struct.unpack_from("<IQ", data, pos)
            pos += 12
            name = data[pos:pos + n_key].decode("utf-8")
            out[name] = data[pos + n_key:pos + n_key + n_data]
            pos += n_key + n_data
        return out

    def cancel(self) -> None:
        """Stop the helper and reap it (the report failed, or needs no help)."""
        for fd in (self.to_child, self.from_child):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_child = self.from_child = -1
        if not self.reaped:
            self.reaped = True
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)


def fork_helpers(draw: Draw, count: int | None = None) -> list[Helper]:
    """``count`` helpers (default: one per CPU this process may use, up to two, none with one CPU or while
    other threads run)."""
    count = workers_available() if count is None else count
    if count < 2:
        return []
    helpers = []
    for _ in range(count):
        helper = Helper.fork(draw, helpers)
        if helper is not None:
            helpers.append(helper)
    return helpers


class Drawing:
    """Plots being drawn by helper processes (or by this one when ``finish`` is called, without helpers), so
    this process can do other work in between."""

    def __init__(self, jobs: list[Job], draw: Draw, helpers: list[Helper]):
        self.order = [name for name, _, _, _ in jobs]
        self.draw = draw
        self.forked: list[tuple[Helper, list[Job]]] = []
        if not helpers:
            self.own = jobs
            return
        # the costliest plots first, each to the least loaded helper (longest processing time first)
        shares: list[list[Job]] = [[] for _ in helpers]
        for job in sorted(jobs, key=lambda j: -j[1]):
            min(shares, key=lambda share: sum(j[1] for j in share)).append(job)
        self.own = []
        for helper, share in zip(helpers, shares, strict=True):
            if helper.send(share):
                self.forked.append((helper, share))
            else:  # gone: its share is drawn here
                helper.cancel()
                self.own.extend(share)

    def finish(self) -> dict[str, bytes]:
        """Every plot's PNG, by name, in a fixed order."""
        try:
            drawn = {name: self.draw(func, args) for name, _, func, args in self.own}
        except BaseException:
            self.cancel()  # no forked process outlives a failed report
            raise
        forked, self.forked = self.forked, []
        for helper, share in forked:
            theirs = helper.collect()
            drawn.update(theirs if theirs is not None else
                         {name: self.draw(func, args) for name, _, func, args in share})
        return {name: drawn[name] for name in self.order}

    def cancel(self) -> None:
        """Stop the forked processes (the report failed before its plots were needed)."""
        forked, self.forked = self.forked, []
        for helper, _ in forked:
            helper.cancel()
