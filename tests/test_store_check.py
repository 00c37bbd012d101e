"""The damage check on opening a store (SQLite's quick_check) is remembered while the file is unchanged,
and any change to the file - even one that puts its modification time back - makes the next open check it
again."""

import os
import sqlite3
import time

import pytest

from mijabench.errors import MijaError
from mijabench.store import Store, core
from mijabench.store.core import CHECK_MARK_MARGIN_S
from test_store import _item


@pytest.fixture
def checks(monkeypatch):
    """How many times a store opened since the fixture ran its quick_check."""
    seen = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: seen.append(sql) if "quick_check" in sql else None)
        return conn

    monkeypatch.setattr(core.sqlite3, "connect", traced)
    return seen


def _aged_store(tmp_path):
    """A store with a few items whose file was last written well before the margin."""
    with Store(tmp_path / "ws") as store:
        store.put_items([_item(n) for n in range(200)], bench="b")
    past = time.time() - 10 * CHECK_MARK_MARGIN_S
    os.utime(store.path, (past, past))
    return store.path


def test_check_is_skipped_only_while_the_file_is_unchanged(tmp_path, checks):
    db = _aged_store(tmp_path)
    for _ in range(3):
        with Store(db) as store:
            assert len(store.items()) == 200
    assert len(checks) == 1  # checked once, then remembered
    with Store(db) as store:  # a write: the next open checks again
        store.put_items([_item(500)], bench="b")
    Store(db).close()
    assert len(checks) == 2


def test_damage_after_a_remembered_check_is_still_found(tmp_path, checks):
    db = _aged_store(tmp_path)
    Store(db).close()
    assert len(checks) == 1 and db.with_name(db.name + ".checked").exists()
    stat = db.stat()
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = b"\xde\xad\xbe\xef" * 750
    db.write_bytes(bytes(data))  # the same size, in place
    os.utime(db, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time put back
    with pytest.raises(MijaError, match="damaged"):
        Store(db)


def test_a_freshly_written_file_is_not_remembered(tmp_path, checks):
    with Store(tmp_path / "ws") as store:
        store.put_items([_item(1)], bench="b")
    Store(store.path).close()
    Store(store.path).close()
    assert len(checks) == 2 and not store.path.with_name(store.path.name + ".checked").exists()
