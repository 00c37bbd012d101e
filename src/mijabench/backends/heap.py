"""Handing memory freed by tensors back to the system, for the in-process decode loop (glibc only).

Torch allocates CPU tensors with ``malloc``. Glibc serves a block from the heap unless it is larger than the
mmap threshold, and that threshold rises (up to 32 MB) each time a mapped block is freed; so after the first
key/value buffer is freed, the later buffer layers, prefill caches and activations come from the heap, and
what is freed there stays with the process. On the demo's prompts at 30 rows, peak memory was 270-600 MB over
what the live tensors needed, highest when the buffer was rebuilt wider after a prefill had left its
activations in the heap. ``malloc_trim`` after each refill and before each rebuild costs a few milliseconds
and took the peak down by 270 MB (2,135 to 1,867 MB, same rows); fixing the mmap threshold at 8 MB instead
gained nothing more and cost 6% more CPU in page faults. A rebuild of the buffer also hands back its old
layers every 64 MB as it replaces them (``continuous.RESIZE_TRIM_BYTES``): freed on the heap, they stayed
resident until the last layer was copied, so the old buffer lay beside the new one (demo prompts at 48 rows:
peak 1,862 MB before, 1,654 MB after). Other C libraries: nothing to do.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

_MALLOC_TRIM: Any = None


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the system."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            try:
                _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):
                pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)
