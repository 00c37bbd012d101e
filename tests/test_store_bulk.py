"""Bulk writes: secondary indexes dropped and built once; a store left without them (a bulk import killed
midway) builds them when next opened; a bulk import stores exactly what a row-by-row one does."""

import dataclasses
import sqlite3
import time

import numpy as np
import pytest

from mijabench.records import Response, SamplingSettings, Verdict
from mijabench.sources import importer
from mijabench.store import Store, core, upsert
from test_import import dump, wide_rows, write

INDEXES = {"responses_model", "verdicts_response", "verdicts_judge"}


def indexes(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")} & INDEXES


def test_a_bulk_write_drops_and_rebuilds_the_secondary_indexes(store):
    with store.bulk(["verdicts", "responses"]):
        assert indexes(store.path) == set()
    assert indexes(store.path) == INDEXES


def test_indexes_are_sorted_on_every_core_and_the_settings_come_back(store, monkeypatch):
    """The index builds run with SQLite's sorter threads and a small sort cache; the connection's own
    settings return afterwards, also when a build fails."""
    pragma = lambda name: store.conn.execute(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
    before = (pragma("threads"), pragma("cache_size"))
    seen = []
    real = core.SECONDARY_INDEXES["verdicts"]

    class Spy:  # the connection's cursor, noting the sorter settings as each index is built
        def __init__(self, cursor):
            self.cursor = cursor

        def execute(self, sql, *args):
            if sql.startswith("CREATE INDEX"):
                seen.append((pragma("threads"), pragma("cache_size")))
            return self.cursor.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.cursor, name)
    real_transaction = store.transaction

    class Transaction:
        def __enter__(self):
            self.inner = real_transaction()
            return Spy(self.inner.__enter__())

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)
    monkeypatch.setattr(store, "transaction", Transaction)
    monkeypatch.setattr(core.os, "cpu_count", lambda: 3)
    with store.bulk(["verdicts"]):
        pass
    assert seen == [(3, -core.INDEX_SORT_CACHE_KIB)] * 2
    assert (pragma("threads"), pragma("cache_size")) == before
    broken = "CREATE INDEX IF NOT EXISTS broken ON nowhere(x)"
    monkeypatch.setitem(core.SECONDARY_INDEXES, "verdicts", real + (broken,))
    try:
        with store.bulk(["verdicts"]):
            pass
    except sqlite3.OperationalError:
        pass
    else:
        raise AssertionError("the broken index was built")
    assert (pragma("threads"), pragma("cache_size")) == before


def journal(store) -> str:
    return store.conn.execute("PRAGMA journal_mode").fetchone()[0].lower()


def test_a_bulk_write_alone_keeps_a_rollback_journal_and_the_log_comes_back(tmp_path):
    """Alone on the store, a bulk write leaves the write-ahead log (each new page then written once) and
    syncs its commits; with another connection open the log stays. Either way the log is back at the end,
    also after a failed bulk write, and what was committed is there."""
    with Store(tmp_path / "ws") as store:
        assert journal(store) == "wal"
        with store.bulk(["responses"]):
            assert journal(store) == "delete"
            assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            store.put_answer_columns(["r1"], ["i1"], ["m"], ["hi"], {}, "run")
        assert journal(store) == "wal" and store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        reader = sqlite3.connect(store.path)
        # another connection with the store open, in the middle of a read (its statement not finished): the
        # bulk write neither waits for it (the store's busy timeout is 30 s) nor leaves the log
        reading = reader.execute("SELECT id FROM responses UNION ALL SELECT 'x'")
        reading.fetchone()
        started = time.monotonic()
        try:
            with store.bulk(["responses"]):
                assert journal(store) == "wal"
                store.put_answer_columns(["r2"], ["i2"], ["m"], ["hi"], {}, "run")
        finally:
            reader.close()
        assert time.monotonic() - started < 10
        try:
            with store.bulk(["responses"]):
                store.put_answer_columns(["r3"], ["i3"], ["m"], ["hi"], {}, "run")
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        assert journal(store) == "wal" and indexes(store.path) == INDEXES
        assert [r[0] for r in store.conn.execute("SELECT id FROM responses ORDER BY rowid")] == ["r1", "r2",
                                                                                              "r3"]


def test_a_store_left_without_its_indexes_rebuilds_them_when_opened(tmp_path):
    with Store(tmp_path / "ws") as store:
        store.conn.execute("DROP INDEX verdicts_response")  # as a bulk import killed before its end leaves it
        path = store.path
    assert indexes(path) == INDEXES - {"verdicts_response"}
    with Store(tmp_path / "ws"):
        assert indexes(path) == INDEXES


def test_a_bulk_import_stores_what_a_row_by_row_one_does(tmp_path, monkeypatch):
    path = write(wide_rows(), tmp_path / "align.parquet")
    with Store(tmp_path / "rows") as rows:
        importer.import_corpus(rows, path)
        expected = dump(rows)
    monkeypatch.setattr(importer, "BULK_ROWS", 1)
    used = []
    monkeypatch.setattr(Store, "bulk", lambda self, tables, _orig=Store.bulk: used.append(tables) or
                        _orig(self, tables))
    with Store(tmp_path / "bulk") as bulk:
        importer.import_corpus(bulk, path)
        assert used == [["responses", "verdicts"]] and dump(bulk) == expected
        importer.import_corpus(bulk, path)  # a second import: nothing new, too small to go in bulk
        assert used == [["responses", "verdicts"]] and dump(bulk) == expected
    assert indexes(tmp_path / "bulk" / "mijabench.sqlite") == INDEXES


def _rows(store: Store, table: str) -> list[tuple]:
    """The table's rows in order, without their time stamps."""
    cur = store.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
    keep = [k for k, d in enumerate(cur.description) if d[0] != "created_at"]
    return [tuple(row[k] for k in keep) for row in cur]


def test_many_rows_per_statement_upsert_as_one_statement_per_row_would(tmp_path, monkeypatch):
    """Upserts go ROWS_PER_INSERT rows to a statement: a batch that is not a multiple of it, and a batch whose
    rows meet each other's conflict clause inside one statement, store what one statement per row stores."""
    item = "item-0"
    settings = SamplingSettings().to_dict()
    first = [Response(item_id=f"item-{n}", model="m", settings=settings, error="timeout") for n in range(40)]
    second = [Response(item_id=f"item-{n}", model="m", settings=settings, text=f"answer {n}")
              for n in range(0, 40, 3)]
    # in one batch: a failure, then its retry, then another answer that must not overwrite the retry
    again = [Response(item_id=item, model="m2", settings=settings, error="boom"),
             Response(item_id=item, model="m2", settings=settings, text="ok"),
             Response(item_id=item, model="m2", settings=settings, text="later")]
    verdicts = [Verdict(response_id=r.id, judge=j, label="safe", raw="{}", reasoning="r", fingerprint="a")
                for r in first for j in ("j1", "j2")]
    stored = {}
    for per in (1, upsert.ROWS_PER_INSERT, 7):
        monkeypatch.setattr(upsert, "ROWS_PER_INSERT", per)
        with Store(tmp_path / f"per{per}") as store:
            store.put_responses(first)
            store.put_responses(second + again)
            store.put_verdicts(verdicts)
            store.put_verdicts(verdicts[:5] + [dataclasses.replace(verdicts[0], fingerprint="b")])
            stored[per] = {t: _rows(store, t) for t in ("responses", "verdicts")}
            texts = {r.item_id + r.model: (r.text, r.error, r.attempts) for r in store.responses()}
    assert stored[1] == stored[upsert.ROWS_PER_INSERT] == stored[7]
    assert texts[item + "m2"] == ("ok", None, 2) and texts["item-3m"] == ("answer 3", None, 2)
    assert texts["item-4m"] == (None, "timeout", 1) and len(stored[1]["verdicts"]) == 80


def test_column_writes_inline_fixed_values_and_bind_those_that_cannot_be(tmp_path):
    """A value the same in every row goes into the SQL as a literal; text with a NUL (which would end the
    statement) or a quote is stored as given, as are the values bound per row."""
    with Store(tmp_path / "ws") as store:
        store.put_answer_columns(["r1", "r2"], ["i1", "i2"], ["m", "m"], ["hi", "  "], {}, "run 'quoted'")
        store.put_verdict_columns(["v1", "v2"], ["r1", "r2"], ["j\x00nul", "j"], ["safe", "unsafe"],
                                  ["raw", "raw"], ["", ""], ["fp", "fp"], "run\x00nul")
        responses = store.conn.execute("SELECT id, run_id, blank, attempts, error FROM responses "
                                       "ORDER BY rowid").fetchall()
        verdicts = store.conn.execute("SELECT id, judge, run_id, error FROM verdicts "
                                      "ORDER BY rowid").fetchall()
    assert responses == [("r1", "run 'quoted'", 0, 1, None), ("r2", "run 'quoted'", 1, 1, None)]
    assert verdicts == [("v1", "j\x00nul", "run\x00nul", None), ("v2", "j", "run\x00nul", None)]


@pytest.mark.parametrize("as_codes", [False, True])
def test_columns_with_few_values_are_coded_and_stored_as_given(tmp_path, monkeypatch, as_codes):
    """Columns with few distinct values are written as a CASE on one code per row (CodedColumn, or a list
    coded by the store): every row reads back as the same rows bound value by value. Quotes, NUL, None,
    unicode, and columns with too many values to code, are all kept."""
    rng = np.random.default_rng(7)
    n = 3 * upsert.ROWS_PER_INSERT + 5
    judges = ["j1", "it's", "ção", "j\x00nul"]
    labels = ["safe", "harmful", "unparsed"]
    raws = [f"output {i}" for i in range(upsert.CODED_VALUES + 10)]  # too many to code: stays bound
    pick = {"judge": rng.integers(0, 3, n), "label": rng.integers(0, 3, n), "raw": np.arange(n) % len(raws)}
    pick["judge"][0] = 3  # one NUL in the batch: that column is bound

    def column(name, values):
        if as_codes:
            return upsert.CodedColumn(pick[name], values)
        return [values[i] for i in pick[name]]

    def write(store, coded_values):
        monkeypatch.setattr(upsert, "CODED_VALUES", coded_values)
        ids = [f"v{i:03d}" for i in range(n)]
        store.put_answer_columns(ids, [f"i{i}" for i in range(n)], [f"m{i % 3}" for i in range(n)],
                                 ["hi" if i % 4 else " " for i in range(n)], {}, "run")
        store.put_verdict_columns(ids, ids, column("judge", judges), column("label", labels),
                                  column("raw", raws), column("label", ["", "why", "it's"]),
                                  column("judge", ["fp1", "fp2", "fp3", "fp4"]), "run")
        return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                for t in ("responses", "verdicts")}

    written = {}  # table -> the columns its first write coded
    real = core.upsert

    def spy(cur, table, *args):
        written.setdefault(table, set(args[-1] or ()))
        return real(cur, table, *args)

    monkeypatch.setattr(core, "upsert", spy)
    with Store(tmp_path / "coded") as coded, Store(tmp_path / "bound") as bound:
        coded_rows = write(coded, upsert.CODED_VALUES)
        assert written == {"responses": {"model", "blank"}, "verdicts": {"label", "reasoning", "fingerprint"}}
        bound_rows = write(bound, 0)
    stamp = {"responses": 13, "verdicts": 8}  # created_at: the time of each write
    for table, position in stamp.items():
        assert [r[:position] + r[position + 1:] for r in coded_rows[table]] == \
            [r[:position] + r[position + 1:] for r in bound_rows[table]]
    assert {r[2] for r in coded_rows["verdicts"]} == {"j1", "it's", "ção", "j\x00nul"}
    assert {r[5] for r in coded_rows["verdicts"]} == {"", "why", "it's"}
