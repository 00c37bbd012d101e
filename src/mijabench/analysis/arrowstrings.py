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
        index = np.asarray(index, dtype=np.int64)
        if not len(index):
            return np.empty(0, dtype=object)
        if index.min() < 0 or index.max() >= len(self.array):
            raise IndexError("string index out of range")
        return np.array(_gathered(self.array, index).to_pylist(), dtype=object)

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


def string_offsets(array: pa.Array) -> np.ndarray:
    """The ``len(array) + 1`` offsets of a string or large_string array's strings in its data buffer (a
    slice's own, read from its parent's buffer)."""
    kind = np.int64 if pa.types.is_large_string(array.type) else np.int32
    return np.frombuffer(array.buffers()[1], kind, count=len(array) + 1,
                         offset=array.offset * np.dtype(kind).itemsize)


def _gathered(array: pa.Array, index: np.ndarray) -> pa.Array:
    """The strings of ``array`` at ``index``, as a new array, gathered by numpy from its buffers. Arrow's
    own ``take`` needs ``pyarrow.compute`` (0.1 s to import) and an index array (``pa.array`` imports
    pandas, 0.3 s more): a report that reads a few hundred ids needs neither."""
    ends = string_offsets(array)
    data = array.buffers()[2]
    chars = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    starts, lengths = ends[index].astype(np.int64), (ends[index + 1] - ends[index]).astype(np.int64)
    placed = np.zeros(len(index) + 1, np.int64)
    np.cumsum(lengths, out=placed[1:])
    gather = np.repeat(starts - placed[:-1], lengths) + np.arange(placed[-1])
    return pa.Array.from_buffers(pa.large_string(), len(index),
                                 [None, pa.py_buffer(placed), pa.py_buffer(chars[gather])])
