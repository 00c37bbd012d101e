"""Bulk writes: secondary indexes dropped and built once; a store left without them (a bulk import killed
midway) builds them when next opened; a bulk import stores exactly what a row-by-row one does."""

import sqlite3

from mijabench.sources import importer
from mijabench.store import Store
from test_import import dump, wide_rows, write

INDEXES = {"responses_model", "verdicts_response", "verdicts_judge"}


def indexes(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")} & INDEXES


def test_a_bulk_write_drops_and_rebuilds_the_secondary_indexes(store):
    with store.bulk(["verdicts", "responses"]):
        assert indexes(store.path) == set()
    assert indexes(store.path) == INDEXES


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
