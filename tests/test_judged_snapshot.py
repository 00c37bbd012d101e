"""The judged-table snapshot beside the store: a second load of an unchanged store and selection reads it
and gives the same table; any write through the store, or another selection, loads from SQLite again."""

import numpy as np
import pytest

from mijabench.analysis import snapshot
from mijabench.analysis.table import Categorical, load_judged
from mijabench.records import Verdict
from test_analysis import put_rows

ROWS = [("m1", "en", "women", "persona_assignment", ("safe", "harmful", "safe"), ""),
        ("m1", "en", "black", "chain_of_thought", ("harmful", "harmful", "unparsed"), ""),
        ("m2", "pt", "women", "persona_assignment", "failed", ""),
        ("m2", "pt", "elderly", "chain_of_thought", "none", ""),
        ("m2", "en", "women", "persona_assignment", ("safe", "safe", "safe"), "")]
VOTERS = ["j1", "j2", "j3"]


def same(a, b) -> None:
    assert a.columns.keys() == b.columns.keys() and len(a) == len(b)
    for name, col in a.columns.items():
        other = b.columns[name]
        if isinstance(col, Categorical):
            assert isinstance(other, Categorical) and other.categories == col.categories
            np.testing.assert_array_equal(other.codes, col.codes)
        else:
            np.testing.assert_array_equal(other, col)
    assert a.meta == b.meta


def test_an_unchanged_store_is_read_from_its_snapshot(store, monkeypatch):
    put_rows(store, ROWS)
    fresh = load_judged(store, VOTERS, empty_as="vote")
    first = load_judged(store, VOTERS, empty_as="vote", snapshot=True)
    same(fresh, first)
    assert len(list(snapshot.folder(store).glob("*.arrow"))) == 1

    def no_sql(*args, **kwargs):
        raise AssertionError("the snapshot should have been read")

    with monkeypatch.context() as mp:
        mp.setattr(store, "query", no_sql)
        again = load_judged(store, VOTERS, empty_as="vote", snapshot=True)
    same(fresh, again)


@pytest.mark.parametrize("change", ["write", "selection"])
def test_a_write_or_another_selection_loads_from_the_store_again(store, change):
    put_rows(store, ROWS)
    before = load_judged(store, VOTERS, snapshot=True)
    if change == "write":  # the unjudged reply gets its votes: the same row count, another label
        unjudged = store.responses("m2")[1]
        store.put_verdicts([Verdict(response_id=unjudged.id, judge=j, label="harmful") for j in VOTERS])
        after = load_judged(store, VOTERS, snapshot=True)
        assert before.values("label")[3] == "unjudged" and after.values("label")[3] == "harmful"
        same(after, load_judged(store, VOTERS))
    else:
        after = load_judged(store, VOTERS, models=["m2"], snapshot=True)
        assert set(after.values("model")) == {"m2"} and len(after) < len(before)


def test_the_report_provenance_of_targets_comes_from_the_snapshot_as_from_sql(store, monkeypatch):
    """Each target's settings, runs and response count (the report's provenance table) are read once with
    the judged table and kept in its snapshot: read from it, they are what the per-target SQL gives."""
    from mijabench.report import context

    put_rows(store, ROWS)
    load_judged(store, VOTERS, snapshot=True)
    table = load_judged(store, VOTERS, snapshot=True)  # from the snapshot
    from_sql = context.targets(store, type(table)(table.columns, {**table.meta, "target_rows": {}}))
    real = store.query

    def no_response_scans(sql, args=()):
        assert "FROM responses" not in sql, sql
        return real(sql, args)

    monkeypatch.setattr(store, "query", no_response_scans)
    assert context.targets(store, table) == from_sql
    assert sorted(t["responses"] for t in from_sql) == [2, 3] and all(t["runs"] for t in from_sql)


def test_snapshot_columns_are_read_from_the_arrow_buffers_as_pyarrow_reads_them():
    import pyarrow as pa

    from mijabench.analysis.table import _numpy

    arrays = [pa.array(np.arange(-5, 70, dtype=np.int32)), pa.array(np.linspace(-1, 1, 75)),
              pa.array(np.arange(75) % 3 == 0), pa.array(np.arange(75, dtype=np.int64)),
              pa.array([1.5, None, 2.0]), pa.array(["a", "b"])]
    for array in arrays:
        for part in (array, array.slice(3), array.slice(1, 2), array.slice(11, 40)):
            got, want = _numpy(part), part.to_numpy(zero_copy_only=False)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_table_columns_go_to_arrow_as_pa_array_makes_them():
    """The report's tables reach Arrow (Parquet) through their buffers, not pa.array (which imports pandas):
    the arrays must be the ones pa.array makes."""
    import pyarrow as pa

    from mijabench.analysis.frame import numeric_array, text_array

    numbers = [np.array([1.5, np.nan, -2.0]), np.arange(7, dtype=np.int32), np.arange(9)[::2],
               np.array([True, False, True] * 5), np.zeros(0),
               np.array(["x", "y"])]
    for values in numbers:
        got, want = numeric_array(values), pa.array(values)
        assert got.type == want.type and got.null_count == want.null_count == 0, values
        np.testing.assert_array_equal(got.to_numpy(zero_copy_only=False), want.to_numpy(zero_copy_only=False))
    for values in (["a", None, "ção", ""], [], [None], ["only"] * 20, ["", "ab", "", "c d"], ["ção", "x"]):
        got, want = text_array(values), pa.array(values, pa.string())
        assert got.equals(want) and got.null_count == want.null_count, values


def test_the_judges_verdict_counts_come_from_the_snapshot_as_from_sql(store, monkeypatch):
    """The report's list of judges and their verdict counts is read with the judged table and kept in its
    snapshot; a later write (another judge's verdicts) makes the next load count again."""
    from mijabench.report import context

    put_rows(store, ROWS)
    load_judged(store, VOTERS, snapshot=True)
    table = load_judged(store, VOTERS, snapshot=True)  # from the snapshot
    from_sql = context.judges_used(store, VOTERS)
    assert from_sql == [("j1", 3), ("j2", 3), ("j3", 3)]
    with monkeypatch.context() as mp:
        mp.setattr(store, "query", lambda *a, **k: pytest.fail("the counts should come from the table"))
        assert context.judges_used(store, VOTERS, table) == from_sql
    unjudged = store.responses("m2")[1]
    store.put_verdicts([Verdict(response_id=unjudged.id, judge="j1", label="harmful")])
    assert context.judges_used(store, None, load_judged(store, VOTERS, snapshot=True))[0] == ("j1", 4)


def test_a_table_goes_to_arrow_as_pa_array_would_make_it(store):
    """``JudgedTable.to_arrow`` hands its columns over as buffers (pa.array would import pandas): the
    table must be the one pa.array builds, dictionary columns included."""
    import pyarrow as pa

    put_rows(store, ROWS)
    table = load_judged(store, VOTERS)
    got = table.to_arrow()
    assert got.column_names == list(table.columns)
    for name, col in table.columns.items():
        if isinstance(col, Categorical):
            want = pa.DictionaryArray.from_arrays(pa.array(col.codes, pa.int32()),
                                                  pa.array(list(col.categories), pa.string()))
            assert got.column(name).combine_chunks().equals(want), name
        else:  # NaN (a model without a size) is no equal of itself in Arrow's equals
            want = pa.array(col)
            assert got.schema.field(name).type == want.type, name
            np.testing.assert_array_equal(got.column(name).to_numpy(), want.to_numpy(zero_copy_only=False))
