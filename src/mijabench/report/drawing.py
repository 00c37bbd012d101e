"""Drawing the report's plots in other processes. matplotlib holds the GIL, so threads would not help: forked
processes draw the plots while the report writes its tables, examples and provenance. A helper is forked
when the report starts, before the judged table is loaded, so that it imports matplotlib while the report
analyses (a little less urgently than the report: ``HELPER_NICENESS``); with two CPUs it then forks a partner
that shares the import. Once the plotted tables exist the report sends the helper the plots: the plotting
function's name (from a fixed list) and its arguments, the tables among them as JSON (no pickle, no code).
The helper and its partner take them one at a time from one queue. The PNGs come back through pipes as
plain bytes. Anything that fails in a process is drawn again by the one that forked it (in the end the
report's own, where its error is raised), as are the plots of a process that has not answered within
``CHILD_TIMEOUT_S``."""

from __future__ import annotations

import atexit
import contextlib
import importlib
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

try:
    import fcntl
except ImportError:  # no fcntl (Windows): no fork either, so no helper
    fcntl = None

# (plot name, rough cost, plotting function's name, its arguments)
Job = tuple[str, float, str, tuple]
Draw = Callable[[str, tuple], bytes]  # a plotting function's name and arguments -> PNG bytes
CHILD_TIMEOUT_S = 600.0  # the forked drawing takes seconds; past this it is stopped and redrawn here
# the helper imports matplotlib while the report analyses: with two CPUs, three processes then share them,
# and the report, which everything waits for, keeps a whole CPU when the helper and its partner yield to it
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

# numpy and the analysis package are imported inside the functions: this module is imported at start-up,
# before the helper is forked (``prefork``), and must not load them there

def _encode_value(value: Any) -> Any:
    from ..analysis import Frame

    if isinstance(value, Frame):
        return {"frame": value.name, "columns": [[name, col.dtype.str if col.dtype != object else "object",
                                                  col.tolist()] for name, col in value.columns.items()]}
    if isinstance(value, dict):
        raise TypeError("a plot's argument is a table, a list or a plain value, not a mapping")
    return value


def _decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    import numpy as np

    from ..analysis import Frame

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

def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent ends (Linux); exit at once if it already has."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request above
        os._exit(1)


def _claim(queue: int) -> int | None:
    """The next job number from the queue, or None when it is empty (every writer has closed it). The
    numbers were all written before anyone read, as 4-byte records, so a read never splits one."""
    record = os.read(queue, 4)
    return struct.unpack("<I", record)[0] if record else None


def _serve(draw: Draw, job_read: int, png_write: int, processes: int, queue: int) -> None:
    """A helper's (or its partner's) work: read the jobs, draw what it takes from the queue, send back the
    PNGs. The helper owns the queue: it fills it and hands its partner the same jobs; it then draws again
    whatever its partner took but did not deliver (the partner failed)."""
    partner, fill = None, -1
    if queue < 0:  # the helper: a queue for itself and its partner
        queue, fill = os.pipe()
        if processes > 1:
            partner = Helper.fork(draw, close=(job_read, png_write, fill), queue=queue)
    with os.fdopen(job_read, "rb") as pipe:
        message = pipe.read()  # empty when the report needs no help after all
    jobs = decode_jobs(message) if message else []
    if fill >= 0:
        costliest_first = sorted(range(len(jobs)), key=lambda i: -jobs[i][1])
        with os.fdopen(fill, "wb") as out:
            out.write(b"".join(struct.pack("<I", i) for i in costliest_first))
        if partner is not None and not partner.send_message(message):
            partner.cancel()
            partner = None
    # every plot is drawn before the first write: the parent reads the pipe only when its own plots are
    # done, and a PNG larger than the pipe's buffer (64 KiB) would block this process until then
    drawn = {}
    try:
        while (i := _claim(queue)) is not None:
            name, _, func, args = jobs[i]
            drawn[name] = draw(func, args)
    except BaseException:
        if partner is not None:
            partner.cancel()
        raise
    if partner is not None:
        drawn.update(partner.collect() or {})
        drawn.update({name: draw(func, args) for name, _, func, args in jobs if name not in drawn})
    with os.fdopen(png_write, "wb") as out:
        for name, _, _, _ in jobs:
            if name in drawn:
                key = name.encode("utf-8")
                out.write(struct.pack("<IQ", len(key), len(drawn[name])) + key + drawn[name])


class Helper:
    """A forked process that imports matplotlib at once, then waits for the plots it is to draw. With
    ``processes`` 2 it forks a partner once matplotlib is imported (the partner shares the import instead of
    repeating it: half a second of CPU). The two take the plots one at a time, costliest first, from a queue
    (a pipe of job numbers), so neither waits for the other while plots are left."""

    def __init__(self, pid: int, to_child: int, from_child: int):
        self.pid, self.to_child, self.from_child = pid, to_child, from_child
        self.reaped = False  # once reaped, its pid may be another process's: never signalled again

    @classmethod
    def fork(cls, draw: Draw, processes: int = 1, close: tuple[int, ...] = (), preload: str | None = None,
             queue: int = -1) -> Helper | None:
        """A helper, or None when this process cannot fork. ``close``: descriptors the child must not keep
        open (a partner holding its helper's pipe to the report would keep the report waiting for the end of
        the PNGs after the helper has sent them). ``preload``: a module the child imports with matplotlib,
        before its partner is forked (the plotting code, when forked before the report imported it).
        ``queue``: a partner's read end of its helper's job queue."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            job_read, job_write = os.pipe()
            png_read, png_write = os.pipe()
            parent = os.getpid()
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
            for fd in (job_write, png_read, *close):
                if fd >= 0:
                    os.close(fd)
            if queue >= 0:  # a partner: it must not outlive its helper (stopped when the report fails)
                _die_with_parent(parent)
            if "matplotlib" not in sys.modules:  # a partner inherits the import, and its helper's niceness
                with contextlib.suppress(OSError):
                    os.nice(HELPER_NICENESS)
                import matplotlib.backends.backend_agg  # noqa: F401
                import matplotlib.collections  # noqa: F401
                import matplotlib.figure  # noqa: F401
            if preload:
                importlib.import_module(preload)
            _serve(draw, job_read, png_write, processes, queue)
            code = 0
        finally:
            os._exit(code)

    def send(self, jobs: list[Job]) -> bool:
        """Hand the helper its plots (it starts drawing when the pipe is closed); False if it is gone."""
        return self.send_message(encode_jobs(jobs))

    def send_message(self, message: bytes) -> bool:
        fd, self.to_child = self.to_child, -1  # closed below: never closed again (its number may be reused)
        try:
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(message)
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


def fork_helper(draw: Draw, count: int | None = None, preload: str | None = None) -> Helper | None:
    """The helper that draws in ``count`` processes (itself and a partner it forks; default: one per CPU
    this process may use, up to two), or None with one CPU or while other threads run."""
    count = workers_available() if count is None else count
    return Helper.fork(draw, processes=count, preload=preload) if count >= 2 else None


# --- a helper forked when the command starts ---

_preforked: Helper | None = None


def _draw_plots(func: str, args: tuple) -> bytes:
    """The report's plotting functions, imported in the helper (this module is imported before them)."""
    from .plots import _draw

    return _draw(func, args)


def prefork() -> None:
    """Fork the report's drawing helper now, before the command imports its libraries (over half a second
    on one CPU): the helper imports matplotlib and the plotting code on the other CPU meanwhile.
    ``take_preforked`` hands it to the report; a helper the command did not use is stopped at exit."""
    global _preforked
    if _preforked is None:
        _preforked = fork_helper(_draw_plots, preload=f"{__package__}.plots")
        if _preforked is not None:
            atexit.register(cancel_preforked)


def take_preforked() -> Helper | None:
    """The helper ``prefork`` started, once (None if it did not)."""
    global _preforked
    helper, _preforked = _preforked, None
    return helper


def cancel_preforked() -> None:
    helper = take_preforked()
    if helper is not None:
        helper.cancel()


class Drawing:
    """Plots being drawn by a helper (or by this process when ``finish`` is called, without one), so this
    process can do other work in between."""

    def __init__(self, jobs: list[Job], draw: Draw, helper: Helper | None):
        self.jobs, self.draw = jobs, draw
        self.helper = helper if helper is not None and helper.send(jobs) else None
        if helper is not None and self.helper is None:  # gone: its plots are drawn here
            helper.cancel()

    def finish(self) -> dict[str, bytes]:
        """Every plot's PNG, by name, in a fixed order."""
        helper, self.helper = self.helper, None
        drawn = helper.collect() if helper is not None else None
        if drawn is None:  # no helper, or it failed: drawn here, where an error is raised
            drawn = {name: self.draw(func, args) for name, _, func, args in self.jobs}
        return {name: drawn[name] for name, _, _, _ in self.jobs}

    def cancel(self) -> None:
        """Stop the forked process (the report failed before its plots were needed)."""
        helper, self.helper = self.helper, None
        if helper is not None:
            helper.cancel()
