"""Record ids of a whole corpus, hashed on two cores.

An import at paper scale hashes 2.4M ids (600k responses, 1.8M verdicts): one SHA-256 per id, about 0.4 us of
Python each and 2 to 3 s in all, on one core while the other waits. Above ``FORK_MIN`` ids, a forked child
hashes the second half while this process hashes the first; the child hands back 8 raw bytes per id through
a pipe. Anything that goes wrong in the child (no ``fork`` on this platform, a child killed, a short
answer) only means this process hashes that half too: the ids are the same either way.

The child must not wait on a lock another thread held at the fork, so it forks only while this process runs
no other Python thread (a notebook's, a server's), and hashes with Python's own SHA-256 where it has one,
not OpenSSL's (which takes locks of its own, and is also slower on inputs this short: 0.54 s against 0.65 s
for 600k ids). Both give the same digests.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

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
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:
        return (os.cpu_count() or 1) >= 2


def _halves(part: Callable[[int, int], bytes], n: int) -> bytes:
    mid = n // 2
    want = (n - mid) * DIGEST_BYTES
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return part(0, n)
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return part(0, n)
    if pid == 0:  # the child: hash the second half, write it, leave without running any exit handler
        code = 1
        try:
            os.close(read_end)
            view = memoryview(part(mid, n))
            while view:
                view = view[os.write(write_end, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        head = part(0, mid)
        chunks, got = [], 0
        while got < want:
            chunk = os.read(read_end, min(want - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    tail = b"".join(chunks)
    if status != 0 or len(tail) != want:
        tail = part(mid, n)
    return head + tail
