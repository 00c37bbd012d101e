"""The damage check on opening a store (SQLite's quick_check) is remembered while the file is unchanged,
and any change to the file - even one that puts its modification time back - makes the next open check it
again."""

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from mijabench.errors import MijaError
from mijabench.store import Store, core
from mijabench.store.health import CHECK_MARK_MARGIN_S
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


def _damaged(db):
    """The file with garbage over its middle, its size and modification time as before."""
    stat = db.stat()
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = b"\xde\xad\xbe\xef" * 750
    db.write_bytes(bytes(data))
    os.utime(db, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_check_run_aside_runs_in_another_thread_and_is_remembered(tmp_path, monkeypatch):
    threads = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(
            lambda sql: threads.append(threading.current_thread().name) if "quick_check" in sql else None)
        return conn

    monkeypatch.setattr(core.sqlite3, "connect", traced)
    db = _aged_store(tmp_path)
    with Store(db, check_aside=True) as store:
        assert len(store.items()) == 200  # reads go on while the check runs
        store.wait_checked()
    assert threads == ["mijabench-quick-check"]
    assert db.with_name(db.name + ".checked").exists()
    Store(db, check_aside=True).close()
    assert threads == ["mijabench-quick-check"]  # remembered: not checked again


def test_damage_found_aside_stops_the_report_before_it_writes(tmp_path):
    db = _aged_store(tmp_path)
    _damaged(db)
    with Store(db, check_aside=True) as store, pytest.raises(MijaError, match="damaged"):
        store.wait_checked()
    out = tmp_path / "report"
    command = [sys.executable, "-m", "mijabench", "report", "-w", str(db.parent), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "damaged" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.rglob("*"))  # nothing written


def test_a_store_that_opening_writes_to_is_checked_first(tmp_path, checks):
    db = _aged_store(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX verdicts_judge")  # opening builds it again: a write
    past = time.time() - 10 * CHECK_MARK_MARGIN_S
    os.utime(db, (past, past))
    _damaged(db)
    with pytest.raises(MijaError, match="damaged"):
        Store(db, check_aside=True)  # refused in the opening, before the index is written
    assert len(checks) == 1


def test_a_report_waits_for_the_check_before_its_first_write(tmp_path, monkeypatch):
    """Damage the report's own reads do not meet (the check's verdict made up here) still stops it before
    it writes a table, a plot, the page or a snapshot."""
    from mijabench.report import write_report
    from mijabench.store import health
    from test_analysis import put_rows

    rows = [(m, "en", g, "persona_assignment", o, "") for m in ("m-a", "m-b") for g in ("women", "black")
            for o in ("safe", "harmful", "safe")]
    with Store(tmp_path / "ws") as store:
        put_rows(store, rows)
    past = time.time() - 10 * CHECK_MARK_MARGIN_S
    os.utime(store.path, (past, past))

    def damaged(self, conn):
        time.sleep(0.5)  # still running while the report reads
        self.rows = [("*** in database main *** Page 7: btreeInitPage() returns error code 11",)]

    monkeypatch.setattr(health.HealthCheck, "_run", damaged)
    out = tmp_path / "out"
    with Store(store.path, check_aside=True) as opened, pytest.raises(MijaError, match="damaged"):
        write_report(opened, out, resamples=20, snapshot=True)
    assert not out.exists() or not any(out.rglob("*"))
    folder = store.path.with_name(store.path.name + ".judged")
    assert not folder.exists() or not any(folder.iterdir())
