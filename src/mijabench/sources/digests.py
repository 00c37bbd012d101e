"""Record ids of a whole corpus, hashed on two cores.

An import at paper scale hashes 2.4M ids (600k responses, 1.8M verdicts): one SHA-256 per id, about 0.4 us of
Python each and 2 to 3 s in all, on one core while the other waits. Above ``FORK_MIN`` ids, a forked child
(``Deferred``) hashes the second half while this process hashes the first, and hands back 8 raw bytes per
id. Anything that goes wrong in the child (no ``fork`` on this platform, a child killed, a short answer)
only means this process hashes that half too: the ids are the same either way.

The child must not wait on a lock another thread held at the fork, so it forks only while this process runs
no other Python thread (a notebook's, a server's), and hashes with Python's own SHA-256 where it has one,
not OpenSSL's (which takes locks of its own, and is also slower on inputs this short: 0.54 s against 0.65 s
for 600k ids). Both give the same digests.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

_IN_CHILD = False  # set in a Deferred's child: it hashes alone, the parent has the other core
FORK_MIN = 200_000  # fewer ids than this are hashed here: the fork would cost more than it saves
DIGEST_BYTES = 8  # an id is the first 16 hex digits of the SHA-256 (``records.stable_id``)


def _builtin_sha256() -> Any:
    for module in ("_sha2", "_sha256"):  # Python 3.12 merged _sha256 into _sha2
        try:
            return __import__(module).sha256
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


sha256 = _builtin_sha256()


def hex_ids(part: Callable[[int, int], bytes], n: int) -> np.ndarray:
    """The ids ``[0, n)`` as an array of 16-byte ASCII hex (dtype S16). ``part(lo, hi)`` returns the first
    ``DIGEST_BYTES`` of each digest of ids ``lo`` to ``hi``, joined."""
    digests = _halves(part, n) if n >= FORK_MIN and _can_fork() else part(0, n)
    return np.frombuffer(binascii.hexlify(digests), dtype=f"S{2 * DIGEST_BYTES}")


def _can_fork() -> bool:
    if _IN_CHILD or not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:
        return (os.cpu_count() or 1) >= 2


def _halves(part: Callable[[int, int], bytes], n: int) -> bytes:
    """The second half hashed in a child (``Deferred``) while this process hashes the first."""
    mid = n // 2
    tail = Deferred(lambda: (np.frombuffer(part(mid, n), np.uint8),), arrays=1, size=n)
    head = part(0, mid)
    rest = tail.result()[0].tobytes()
    if len(rest) != (n - mid) * DIGEST_BYTES:  # a child that answered short or long
        rest = part(mid, n)
    return head + rest


class Deferred:
    """``compute()`` (which returns ``arrays`` numpy arrays of plain numbers or bytes) run in a forked
    child while this process goes on, when it can fork and ``size`` (the ids to hash) is at least
    ``FORK_MIN``; ``result()`` waits for it. An import hashes its verdict ids this way while it writes its
    items and responses, the child on one core and SQLite on the other. The child leaves its arrays in a
    temporary file (``np.save``, no pickles) and exits; anything that goes wrong there only means
    ``result()`` computes them here."""

    def __init__(self, compute: Callable[[], tuple[np.ndarray, ...]], arrays: int, size: int):
        self.compute, self.arrays = compute, arrays
        self.pid: int | None = None
        self.value: tuple[np.ndarray, ...] | None = None
        if size < FORK_MIN or not _can_fork():  # computed here, when asked
            return
        try:
            self.file = tempfile.TemporaryFile()
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError:
            self.file.close()
            return
        if pid == 0:
            self._child()
        self.pid = pid

    def _child(self) -> None:
        global _IN_CHILD
        _IN_CHILD = True
        code = 1
        try:
            for array in self.compute():
                np.save(self.file, array, allow_pickle=False)
            self.file.flush()
            code = 0
        finally:
            os._exit(code)

    def result(self) -> tuple[np.ndarray, ...]:
        if self.value is None:
            self.value = self._join() or tuple(self.compute())
        return self.value

    def _join(self) -> tuple[np.ndarray, ...] | None:
        if self.pid is None:
            return None
        try:
            _, status = os.waitpid(self.pid, 0)
            self.pid = None
            if status != 0:
                return None
            self.file.seek(0)
            return tuple(np.load(self.file, allow_pickle=False) for _ in range(self.arrays))
        except (OSError, ValueError, EOFError):
            return None
        finally:
            self.file.close()
