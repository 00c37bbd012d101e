"""The damage check a store runs when it is opened: SQLite's quick_check, which reads every page (about a
second per GB), so that a damaged file is refused before anything reads or writes it rather than noticed
by the query that reaches the bad page, possibly after the command has written.

A passed check is remembered beside the database (``<db>.checked``), keyed on the file's identity, size
and times, and not repeated while those are unchanged. After a write (an import, a judge run) the next
command checks again. A command that only reads and then writes its own files (``mijabench report``) may
run the check on the other core while it works (``aside``), and waits for it before its first write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from ..errors import MijaError

# a file written less than this many seconds before the check is not remembered: file times tick coarsely,
# so a write right after the check could leave them unchanged (git's "racily clean" problem)
CHECK_MARK_MARGIN_S = 2.0


def checked_path(db: Path) -> Path:
    return db.with_name(db.name + ".checked")


def _read_mark(db: Path) -> list | None:
    try:
        return json.loads(checked_path(db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_mark(db: Path, key: list) -> None:
    """Remember a passed check (written whole, then renamed); a workspace that cannot be written to costs
    the next command a check, never a result."""
    path = checked_path(db)
    tmp = path.with_name(path.name + f".{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps(key), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _file_key(db: Path) -> tuple[list | None, int]:
    """What changes whenever the database's bytes can have (the main file's and the WAL's device, inode,
    size, modification and change times), and the last modification time in ns. (None, 0) when they cannot
    be read."""
    try:
        main = os.stat(db)
        wal = db.with_name(db.name + "-wal")
        wal_stat = os.stat(wal) if wal.exists() else None
    except OSError:
        return None, 0
    key = [main.st_dev, main.st_ino, main.st_size, main.st_mtime_ns, main.st_ctime_ns]
    written = main.st_mtime_ns
    if wal_stat is not None and wal_stat.st_size:  # an empty WAL is what any reader leaves
        key += [wal_stat.st_ino, wal_stat.st_size, wal_stat.st_mtime_ns, wal_stat.st_ctime_ns]
        written = max(written, wal_stat.st_mtime_ns)
    return key, written


def _damage(db: Path, rows: list) -> MijaError:
    detail = str(rows[0][0]) if rows else "no answer"
    return MijaError(f"{db}: the workspace database is damaged ({detail[:120]}); restore it from a copy (or "
                     "export what `store export` can still read)")


class HealthCheck:
    """The check of the database at ``db``, run at once on ``conn`` or, with ``aside``, in a thread on a
    connection of its own; ``wait()`` raises MijaError when it found damage."""

    def __init__(self, db: Path, conn: sqlite3.Connection, aside: bool = False):
        self.db = db
        self.rows: list | None = [("ok",)]
        self.ran = False  # a check ran (not skipped for a new or remembered file)
        self.thread: threading.Thread | None = None
        if not db.exists() or db.stat().st_size == 0:
            return  # a new database
        self.started = time.time()
        self.key, self.written_ns = _file_key(db)
        if self.key is not None and _read_mark(db) == self.key:
            return  # checked before, and not written since
        self.rows, self.ran = None, True
        if not aside:
            self._run(conn)
            self.wait()
            return
        self.thread = threading.Thread(target=self._aside, name="mijabench-quick-check", daemon=True)
        self.thread.start()

    def _run(self, conn: sqlite3.Connection) -> None:
        self.rows = conn.execute("PRAGMA quick_check(1)").fetchall()

    def _aside(self) -> None:
        # a connection of its own, which only reads (not opened read-only: such a connection cannot make
        # the write-ahead log's index file when it is the first to open the database)
        try:
            conn = sqlite3.connect(self.db, timeout=30.0)
        except sqlite3.Error as exc:
            self.rows = [(str(exc),)]
            return
        try:
            self._run(conn)
        except sqlite3.DatabaseError as exc:  # not a database at all, say: the damage as SQLite met it
            self.rows = [(str(exc),)]
        finally:
            conn.close()

    def wait(self) -> None:
        """Wait for a check run aside; raise MijaError when it found damage, else remember that it passed
        (not for a file written within ``CHECK_MARK_MARGIN_S`` of the check)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if not self.ran:
            return
        if self.rows != [("ok",)]:
            raise _damage(self.db, self.rows or [])
        self.ran = False  # remembered once
        if self.key is not None and self.started - self.written_ns / 1e9 > CHECK_MARK_MARGIN_S:
            _write_mark(self.db, self.key)
