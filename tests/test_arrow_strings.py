"""A snapshot's response ids stay in Arrow (analysis/arrowstrings.py): the sequence behaves as the tuple of
its strings, a categorical over it gives the same values, and the ids' 64-bit keys read from its buffers
are those read from SQLite's comma-separated list."""

import numpy as np
import pyarrow as pa
import pytest

from mijabench.analysis.arrowstrings import ArrowStrings
from mijabench.analysis.columnread import arrow_keys, hex_keys
from mijabench.analysis.table import Categorical

IDS = ["00000000000000ff", "a1b2c3d4e5f60718", "ffffffffffffffff", "0123456789abcdef"]


def test_the_sequence_is_its_strings():
    lazy = ArrowStrings(pa.array(IDS))
    assert len(lazy) == 4 and lazy[0] == IDS[0] and lazy[-1] == IDS[-1] and lazy[1:3] == tuple(IDS[1:3])
    assert list(lazy) == IDS and lazy == tuple(IDS) and tuple(IDS) == lazy and lazy != tuple(IDS[:3])
    assert lazy == ArrowStrings(pa.array(IDS)) and lazy != ArrowStrings(pa.array(IDS[::-1]))
    with pytest.raises(IndexError):
        lazy[4]
    assert lazy.take(np.array([3, 0, 3])).tolist() == [IDS[3], IDS[0], IDS[3]]
    assert lazy.take(np.zeros(0, np.int64)).shape == (0,)
    joined = ArrowStrings.join(lazy, ["x", "ção"])
    assert joined == (*IDS, "x", "ção") and ArrowStrings.join(["y"], lazy) == ("y", *IDS)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_strings_taken_from_the_buffers_are_those_at_the_index(kind):
    words = ["", "ção", "a", "", "longer text", "b" * 300, "z"]
    rng = np.random.default_rng(0)
    for start in (0, 1, 3):  # a slice keeps its parent's buffers, at an offset
        lazy = ArrowStrings(pa.array(["skip"] * start + words, kind).slice(start))
        for _ in range(20):
            index = rng.integers(0, len(words), rng.integers(1, 12))
            assert lazy.take(index).tolist() == [words[i] for i in index]
        for outside in ([len(words)], [-1], [0, len(words) + 5]):
            with pytest.raises(IndexError):
                lazy.take(np.array(outside))
    assert ArrowStrings(pa.array(["", ""], kind)).take(np.array([1, 0])).tolist() == ["", ""]


def test_a_copy_owns_its_buffers_and_keeps_the_strings():
    source = pa.array(["skip", *IDS]).slice(1)
    copy = ArrowStrings.copied(source)
    assert copy == tuple(IDS) and copy.array.buffers()[2].address != source.buffers()[2].address
    np.testing.assert_array_equal(arrow_keys(copy.array), arrow_keys(pa.array(IDS)))
    assert ArrowStrings.copied(pa.array(["a", None])).array.to_pylist() == ["a", None]


def test_a_categorical_over_arrow_strings_gives_the_values_of_one_over_the_tuple():
    codes = np.array([2, 0, 0, 3, 1], np.int32)
    lazy, plain = Categorical(codes, ArrowStrings(pa.array(IDS))), Categorical(codes, tuple(IDS))
    assert lazy.values().tolist() == plain.values().tolist()
    assert lazy.take(np.array([4, 0])).values().tolist() == [IDS[1], IDS[2]]


@pytest.mark.parametrize("start", [0, 1])
def test_keys_from_the_buffers_equal_the_keys_from_the_joined_ids(start):
    array = pa.array(["deadbeefdeadbeef", *IDS]).slice(start)  # a slice: its buffers start before it
    expected = hex_keys(",".join(array.to_pylist()).encode())
    np.testing.assert_array_equal(arrow_keys(array), expected)
    assert arrow_keys(pa.array([], pa.string())).shape == (0,)
    for bad in (["00000000000000FF"], ["0000000000000ff"], ["00000000000000ff", None], ["x" * 16],
                ["0000  000000ffff"], ["0000000000000ff "], ["000000000000ffé"]):
        assert arrow_keys(pa.array(bad, pa.string())) is None, bad
