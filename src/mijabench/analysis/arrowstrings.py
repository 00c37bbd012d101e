"""A read-only sequence of strings kept in an Arrow string array until some of them are asked for.

A judged table has one response id per row: 615k at the paper's scale, 6M at ten times it. Read from a
snapshot as Python strings they cost 0.15 s and about 80 bytes each at 600k; the analysis never looks at
them, and the report looks at a few hundred (its examples). So a snapshot's response ids stay in Arrow: a
table grown on top of the snapshot (``analysis.delta``) appends to them, and a snapshot written again hands
the same array back to Arrow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


class ArrowStrings(Sequence):
    """``array`` (Arrow strings, no nulls) as a sequence of ``str``; equal to any sequence of the same
    strings, a tuple included."""

    __slots__ = ("array", "_strings")

    def __init__(self, array: pa.Array):
        self.array = array
        self._strings: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.strings()[index]
        if index < 0:
            index += len(self.array)
        if not 0 <= index < len(self.array):
            raise IndexError(index)
        return self.array[index].as_py()

    def __iter__(self):
        return iter(self.strings())

    def __eq__(self, other) -> bool:
        if isinstance(other, ArrowStrings):
            return self.array.equals(other.array)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self) and self.strings() == tuple(other)
        return NotImplemented

    __hash__ = None  # a sequence compared by value, not a key

    def strings(self) -> tuple[str, ...]:
        """Every string, made once."""
        if self._strings is None:
            self._strings = tuple(self.array.to_pylist())
        return self._strings

    def take(self, index: np.ndarray) -> np.ndarray:
        """The strings at ``index``, as an object array (only those are made)."""
        if self._strings is not None:
            return np.asarray(self._strings, dtype=object)[index]
        taken = self.array.take(pa.array(np.asarray(index, dtype=np.int64))).to_pylist()
        return np.array(taken, dtype=object) if taken else np.empty(0, dtype=object)

    @classmethod
    def copied(cls, array: pa.Array) -> ArrowStrings:
        """Over a copy of ``array``'s buffers: a snapshot is read through a memory map, and a file cut short
        by another program under a live map would fault when the strings are read later."""
        if array.null_count:
            return cls(pa.array(array.to_pylist(), array.type))
        buffers = [None, *(pa.py_buffer(b.to_pybytes()) for b in array.buffers()[1:])]
        return cls(pa.Array.from_buffers(array.type, len(array), buffers, offset=array.offset))

    @classmethod
    def join(cls, first: Sequence[str], more: Sequence[str]) -> ArrowStrings:
        """``first`` then ``more`` (either Arrow-backed or plain strings)."""
        from .frame import text_array

        arrays = [s.array if isinstance(s, ArrowStrings) else text_array(list(s)) for s in (first, more)]
        return cls(pa.concat_arrays(arrays))
