"""The workspace store: one SQLite database (WAL mode) that every stage reads and writes.

Writes are transactions: a batch either lands whole or not at all, so a process killed mid-write leaves the
database as it was before that batch. Readers get records back, never rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

from ..errors import MijaError
from ..records import BenchmarkItem, Response, SamplingSettings, Scenario, Seed, Verdict
from .health import HealthCheck
from .schema import MIGRATIONS, SCHEMA_VERSION
from .secrets import redact, scrub_text, secret_values
from .upsert import coded_columns, scrub_all, sql_literals, upsert

DEFAULT_WORKSPACE = "mijabench-workspace"
DB_NAME = "mijabench.sqlite"
# Indexes that are not a primary key, as the schema makes them: a bulk write drops them and builds them again
# once (``Store.bulk``); opening a store builds any that an interrupted bulk write left missing.
SECONDARY_INDEXES = {
    "responses": ("CREATE INDEX IF NOT EXISTS responses_model ON responses(model, settings_key)",),
    "verdicts": ("CREATE INDEX IF NOT EXISTS verdicts_response ON verdicts(response_id)",
                 "CREATE INDEX IF NOT EXISTS verdicts_judge ON verdicts(judge, fingerprint)"),
}
BULK_CACHE_KIB = 262144  # page cache of a bulk write: the primary-key indexes of a paper-scale import fit
# SQLite's sorter while a bulk write builds its indexes: with runs of this size in memory and helper threads,
# it sorts the runs on every core and merges them (2.4-3.9 s to 1.2-1.4 s for the verdicts' response index at
# paper scale, 2 cores); one large in-memory run (the bulk page cache) sorts on one thread only.
INDEX_SORT_CACHE_KIB = 4096
# bytes per page of a new store (SQLite's default is 4096; a store keeps the size it was made with). At paper
# scale with replies of about 120 words, 16 KiB pages made the import 1.3 s faster (17.1 to 17.7 s against
# 18.4 to 19.1 s in process), a full load's report 0.2 to 0.5 s faster, and the file 7% smaller
PAGE_SIZE = 16384


def workspace_path(given: str | Path | None = None) -> Path:
    """The workspace folder: ``given`` (a -w option, a ``Workspace(path)``, a task parameter), else
    ``$MIJABENCH_WORKSPACE``, else ``./mijabench-workspace``; an empty value counts as not given."""
    return Path(given or os.environ.get("MIJABENCH_WORKSPACE") or DEFAULT_WORKSPACE)




# the columns a response and a verdict row are written with, in the order of the tuples both write paths build
RESPONSE_FIELDS = ("id", "item_id", "model", "settings_key", "settings", "text", "prompt_tokens",
                   "completion_tokens", "latency_s", "finish_reason", "error", "attempts", "run_id",
                   "created_at", "blank")
_RESPONSE_CONFLICT = (
    "ON CONFLICT(id) DO UPDATE SET text=excluded.text, prompt_tokens=excluded.prompt_tokens, "
    "completion_tokens=excluded.completion_tokens, latency_s=excluded.latency_s, "
    "finish_reason=excluded.finish_reason, error=excluded.error, blank=excluded.blank, "
    "attempts=responses.attempts+excluded.attempts, run_id=excluded.run_id, "
    "created_at=excluded.created_at WHERE responses.error IS NOT NULL")
VERDICT_FIELDS = ("id", "response_id", "judge", "label", "raw", "reasoning", "error", "run_id", "created_at",
                  "fingerprint")
_VERDICT_CONFLICT = (
    "ON CONFLICT(id) DO UPDATE SET label=excluded.label, raw=excluded.raw, reasoning=excluded.reasoning, "
    "error=excluded.error, run_id=excluded.run_id, created_at=excluded.created_at, "
    "fingerprint=excluded.fingerprint WHERE verdicts.error IS NOT NULL OR "
    "verdicts.fingerprint != excluded.fingerprint")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)



def is_blank(text: str) -> bool:
    """An answer with nothing but white space (the ``blank`` column; ``--empty-as`` decides how it counts)."""
    return not text or text.isspace()  # what strip() leaves empty, without making the stripped copy

class Store:
    """A workspace database. Open with ``Store(path)`` where path is a folder or a ``.sqlite`` file."""

    def __init__(self, path: str | Path = DEFAULT_WORKSPACE, *, create: bool = True,
                 check_aside: bool = False):
        path = Path(path)
        self.path = path if path.suffix in (".sqlite", ".db") else path / DB_NAME
        if not self.path.exists() and not create:
            raise MijaError(f"no workspace at {self.path} (run a build or pass --workspace)")
        if self.path.is_dir():
            raise MijaError(f"{self.path}: is a folder, not a workspace database")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MijaError(f"cannot create the workspace folder {self.path.parent} "
                            f"({exc.strerror or exc})") from None
        self._lock = threading.RLock()
        self._after_check: list[threading.Thread] = []  # work waiting for the check (``after_check``)
        self.conn = None
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            # the damage check (store.health): here, or with check_aside in a thread until wait_checked()
            # (not when opening writes: a schema to migrate, an index to build again)
            self._health = HealthCheck(self.path, self.conn, aside=check_aside and not self._opening_writes())
            # the timeout first: a bulk write elsewhere may hold the store (``bulk``) while the log is set
            self.conn.execute("PRAGMA busy_timeout=30000")
            if self.conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: before its first page
                self.conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            for statements in SECONDARY_INDEXES.values():
                for statement in statements:
                    self.conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            if self.conn is not None:
                self.conn.close()
            raise MijaError(f"{self.path}: not a usable mijabench database ({exc})") from None
        except MijaError:
            self.conn.close()
            raise

    def _opening_writes(self) -> bool:
        """Whether opening will write: an older schema to migrate, or a secondary index missing."""
        if self.conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            return True
        names = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        return any(statement.split()[5] not in names for statements in SECONDARY_INDEXES.values()
                   for statement in statements)

    def wait_checked(self) -> None:
        """Wait for a damage check run aside (``check_aside``); MijaError when it found the file damaged.
        A command that opened the store so calls this before its first write."""
        self._health.wait()

    def after_check(self, work: Callable[[], None]) -> None:
        """Run ``work`` (a write beside the store, never into it) once the damage check has passed: now when
        none runs aside, else in a thread that ``close`` waits for, so the command goes on meanwhile. Nothing
        runs when the check finds damage (the command meets it at its own ``wait_checked``)."""
        check = self._health.thread
        if check is None:
            work()
            return

        def run() -> None:
            check.join()
            if self._health.rows == [("ok",)]:
                work()

        thread = threading.Thread(target=run, name="mijabench-after-check")
        thread.start()
        self._after_check.append(thread)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        for thread in getattr(self, "_after_check", ()):
            thread.join()
        health = getattr(self, "_health", None)
        if health is not None and health.thread is not None:
            health.thread.join()  # a check still running aside: not left behind, its verdict unused
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise MijaError(f"{self.path}: schema version {version} is newer than this mijabench "
                            f"({SCHEMA_VERSION}); upgrade mijabench")
        for number in range(version, SCHEMA_VERSION):
            with self.transaction() as cur:
                for statement in MIGRATIONS[number]:
                    cur.execute(statement)
                cur.execute(f"PRAGMA user_version={number + 1}")
                cur.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number + 1),))

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def transaction(self):
        return _Transaction(self)

    @contextmanager
    def bulk(self, tables: Iterable[str]) -> Iterator[None]:
        """For writes of many rows into ``tables``: their secondary indexes are dropped and built once at
        the end (one sort beats millions of random index inserts), under a larger page cache. Rows are
        written and committed as usual; killed midway, the store builds the missing indexes when next
        opened, so a bulk write never leaves it wrong, only briefly slower to read.

        While no other connection has the store open, a bulk write also keeps a rollback journal instead of
        the write-ahead log: pages the store did not have before are then written once, where the log
        writes every page twice (into the log, then back into the database): 10 to 15% of an import at
        paper scale. Commits then sync (``synchronous=FULL``), as the log's own mode needs none to stay
        whole. The log comes back at the end, or when the store is next opened."""
        tables = [t for t in tables if t in SECONDARY_INDEXES]
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        temp_store = self.conn.execute("PRAGMA temp_store").fetchone()[0]
        self.conn.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        # Each statement of a transaction keeps the pages it changes that the transaction changed before (a
        # statement journal, to undo that statement alone); past 64 KB SQLite spills it to a temporary file.
        # Responses keep the corpus's order, so each statement's rows land on pages of their id index all
        # over it: at paper scale 3 GB went through such files for 600k responses. In memory, a statement's
        # pages are copied and dropped when it ends.
        self.conn.execute("PRAGMA temp_store=MEMORY")
        journal = self._rollback_journal()
        try:
            with self.transaction() as cur:
                for table in tables:
                    for statement in SECONDARY_INDEXES[table]:
                        cur.execute(f"DROP INDEX IF EXISTS {statement.split()[5]}")
            yield
        finally:
            # the index builds below sort in temporary files again: in memory, a sort of millions of keys
            # would hold them all
            self.conn.execute(f"PRAGMA temp_store={int(temp_store)}")
            threads = self.conn.execute("PRAGMA threads").fetchone()[0]
            self.conn.execute(f"PRAGMA cache_size=-{INDEX_SORT_CACHE_KIB}")
            self.conn.execute(f"PRAGMA threads={min(8, os.cpu_count() or 1)}")
            try:
                with self.transaction() as cur:
                    for table in tables:
                        for statement in SECONDARY_INDEXES[table]:
                            cur.execute(statement)
            finally:
                self.conn.execute(f"PRAGMA threads={threads}")
                self.conn.execute(f"PRAGMA cache_size={cache}")
            if journal:
                self._write_ahead_log()

    def _rollback_journal(self) -> bool:
        """Switch to a rollback journal; False (the log stays) when another connection has the store open,
        as SQLite then refuses to leave the log."""
        mode = self._journal_mode("DELETE")
        if mode != "delete":
            return False
        self.conn.execute("PRAGMA synchronous=FULL")
        return True

    def _write_ahead_log(self) -> None:
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._journal_mode("WAL")  # refused while a reader is there: the next open restores it

    def _journal_mode(self, mode: str) -> str:
        """Ask for ``mode``; the mode the store is in after. Another connection's open read makes SQLite
        refuse, and it is not waited for (the busy timeout would hold the write up for 30 s)."""
        with self._not_waiting():
            try:
                return str(self.conn.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]).lower()
            except sqlite3.OperationalError:  # locked by another connection
                return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    @contextmanager
    def _not_waiting(self) -> Iterator[None]:
        """The connection's statements fail at once, instead of waiting, while another connection holds
        the store."""
        with self._lock:
            timeout = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
            self.conn.execute("PRAGMA busy_timeout=0")
            try:
                yield
            finally:
                self.conn.execute(f"PRAGMA busy_timeout={timeout}")

    # -- runs and events ---------------------------------------------------------------------------------
    def new_run(self, kind: str, config: dict[str, Any]) -> str:
        """Record a run's full configuration (secrets removed) and return its id."""
        run_id = f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        with self.transaction() as cur:
            cur.execute("INSERT INTO runs VALUES (?,?,?,?)", (run_id, kind, now(), _dumps(redact(config))))
        return run_id

    def put_run(self, run_id: str, kind: str, config: dict[str, Any], created_at: str | None = None) -> None:
        """Record a run under a given id (an imported one keeps its own), once: a second import of the same
        content finds it there."""
        with self.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO runs VALUES (?,?,?,?)",
                        (run_id, kind, created_at or now(), _dumps(redact(config))))

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT id, kind, created_at, config FROM runs", ()
        if kind:
            sql, args = sql + " WHERE kind=?", (kind,)
        rows = self.conn.execute(sql + " ORDER BY created_at", args).fetchall()
        return [{"id": r[0], "kind": r[1], "created_at": r[2], "config": json.loads(r[3])} for r in rows]

    def log_events(self, run_id: str, stage: str, events: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Store (ref, kind, detail) events: dropped rows, refusals of a rewriter, and the like."""
        stamp = now()
        rows = [(run_id, stage, ref, kind, _dumps(redact(detail)), stamp) for ref, kind, detail in events]
        with self.transaction() as cur:
            cur.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows)

    def events(self, stage: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT run_id, stage, ref, kind, detail, created_at FROM events WHERE 1=1", []
        if stage:
            sql += " AND stage=?"
            args.append(stage)
        if run_id:
            sql += " AND run_id=?"
            args.append(run_id)
        return [{"run_id": r[0], "stage": r[1], "ref": r[2], "kind": r[3], "detail": json.loads(r[4]),
                 "created_at": r[5]} for r in self.conn.execute(sql, args)]

    # -- seeds and scenarios -----------------------------------------------------------------------------
    def put_seeds(self, seeds: Iterable[Seed]) -> int:
        rows = [(s.id, s.language, s.group, s.text, s.source, _dumps(s.meta)) for s in seeds]
        with self.transaction() as cur:
            cur.executemany("INSERT OR IGNORE INTO seeds VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    def seeds(self, language: str | None = None) -> list[Seed]:
        sql, args = "SELECT id, language, group_id, text, source, meta FROM seeds", ()
        if language:
            sql, args = sql + " WHERE language=?", (language,)
        return [Seed(id=r[0], language=r[1], group=r[2], text=r[3], source=r[4], meta=json.loads(r[5]))
                for r in self.conn.execute(sql + " ORDER BY rowid", args)]

    def put_scenarios(self, scenarios: Iterable[Scenario]) -> int:
        rows = [(s.id, s.language, s.category, s.text, _dumps(redact(s.provenance))) for s in scenarios]
        with self.transaction() as cur:
            cur.executemany("INSERT OR IGNORE INTO scenarios VALUES (?,?,?,?,?)", rows)
        return len(rows)

    def scenarios(self, language: str | None = None, category: str | None = None) -> list[Scenario]:
        sql, args = "SELECT id, language, category, text, provenance FROM scenarios WHERE 1=1", []
        if language:
            sql += " AND language=?"
            args.append(language)
        if category:
            sql += " AND category=?"
            args.append(category)
        return [Scenario(id=r[0], language=r[1], category=r[2], text=r[3], provenance=json.loads(r[4]))
                for r in self.conn.execute(sql + " ORDER BY rowid", args)]

    # -- benchmark items ---------------------------------------------------------------------------------
    def put_items(self, items: Iterable[BenchmarkItem], bench: str = "default") -> int:
        items = list(items)
        secrets = secret_values()
        rows = [(i.id, i.language, i.group, i.seed_id, i.seed_text, i.scenario_id, i.scenario_category,
                 i.scenario_text, i.strategy, i.prompt, i.pair_id, _dumps(redact(i.provenance, secrets)))
                for i in items]
        with self.transaction() as cur:
            cur.executemany("INSERT OR IGNORE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            cur.executemany("INSERT OR IGNORE INTO bench_items VALUES (?,?)", [(bench, i.id) for i in items])
        return len(rows)

    # the SELECT list that item_from_row reads (and judge.runner joins to the responses)
    ITEM_COLUMNS = ("i.id, i.language, i.group_id, i.seed_id, i.seed_text, i.scenario_id, "
                    "i.scenario_category, i.scenario_text, i.strategy, i.prompt, i.pair_id, i.provenance")

    @staticmethod
    def item_from_row(r) -> BenchmarkItem:
        return BenchmarkItem(id=r[0], language=r[1], group=r[2], seed_id=r[3], seed_text=r[4],
                             scenario_id=r[5], scenario_category=r[6], scenario_text=r[7], strategy=r[8],
                             prompt=r[9], pair_id=r[10], provenance=json.loads(r[11]))

    def items(self, bench: str | None = None) -> list[BenchmarkItem]:
        if bench:
            sql = (f"SELECT {self.ITEM_COLUMNS} FROM items i JOIN bench_items b ON b.item_id=i.id "
                   "WHERE b.bench=? ORDER BY i.rowid")
            rows = self.conn.execute(sql, (bench,))
        else:
            rows = self.conn.execute(f"SELECT {self.ITEM_COLUMNS} FROM items i ORDER BY i.rowid")
        return [self.item_from_row(r) for r in rows]

    def get_items(self, ids: Iterable[str]) -> dict[str, BenchmarkItem]:
        ids = list(ids)
        out: dict[str, BenchmarkItem] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            sql = f"SELECT {self.ITEM_COLUMNS} FROM items i WHERE i.id IN ({','.join('?' * len(chunk))})"
            out.update((r[0], self.item_from_row(r)) for r in self.conn.execute(sql, chunk))
        return out

    def benches(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT bench, COUNT(*) FROM bench_items GROUP BY bench ORDER BY bench")
        return dict(rows.fetchall())

    # -- models ------------------------------------------------------------------------------------------
    def put_model(self, name: str, spec: str, family: str | None = None, params_b: float | None = None,
                  meta: dict[str, Any] | None = None) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO models VALUES (?,?,?,?,?)",
                        (name, scrub_text(spec), family, params_b, _dumps(redact(meta or {}))))

    def models(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT name, spec, family, params_b, meta FROM models ORDER BY name")
        return [{"name": r[0], "spec": r[1], "family": r[2], "params_b": r[3], "meta": json.loads(r[4])}
                for r in rows]

    # -- responses ---------------------------------------------------------------------------------------
    def put_responses(self, responses: Iterable[Response]) -> int:
        """Store responses. A good answer is never overwritten; an error row is replaced by a newer try."""
        stamp = now()
        secrets = secret_values()  # once per batch: reading the environment per row was the hot spot
        seen: dict[int, tuple[Any, str, str]] = {}  # id(settings dict) -> (it, key, json): runs share one
        rows = []
        for r in responses:
            cached = seen.get(id(r.settings))
            if cached is None or cached[0] is not r.settings:
                settings = SamplingSettings.from_dict(r.settings)
                cached = seen[id(r.settings)] = (r.settings, settings.key, _dumps(settings.to_dict()))
            # in RESPONSE_FIELDS order
            rows.append((r.id, r.item_id, r.model, cached[1], cached[2],
                         None if r.text is None else scrub_text(r.text, secrets), r.prompt_tokens,
                         r.completion_tokens, r.latency_s, r.finish_reason,
                         None if r.error is None else scrub_text(r.error, secrets), r.attempts, r.run_id,
                         stamp, int(r.error is None and is_blank(r.text or ""))))
        return self._upsert_responses(rows)

    def put_answer_columns(self, ids: list[str], item_ids: list[str], models: list[str], texts: list[str],
                           settings: dict[str, Any], run_id: str) -> int:
        """Answered responses (no error, one attempt, no token counts, one settings for all) given as
        columns: what ``put_responses`` writes for such records, without a Response per row (an import's
        path). The row's fields are named in RESPONSE_FIELDS, so both paths fill the same columns."""
        stamp = now()
        sampling = SamplingSettings.from_dict(settings)
        fixed = {"settings_key": sampling.key, "settings": _dumps(sampling.to_dict()), "prompt_tokens": None,
                 "completion_tokens": None, "latency_s": None, "finish_reason": None, "error": None,
                 "attempts": 1, "run_id": run_id, "created_at": stamp}
        given = {"id": ids, "item_id": item_ids, "model": models, "text": scrub_all(texts, secret_values()),
                 "blank": [int(is_blank(t)) for t in texts]}
        return self._upsert_columns("responses", RESPONSE_FIELDS, _RESPONSE_CONFLICT, given, fixed,
                                    categorical=("model", "blank"))

    def _upsert_responses(self, rows: list[tuple]) -> int:
        with self.transaction() as cur:
            return upsert(cur, "responses", RESPONSE_FIELDS, _RESPONSE_CONFLICT, {}, rows)

    def _upsert_columns(self, table: str, fields: tuple[str, ...], conflict: str, given: dict[str, list],
                        fixed: dict[str, Any], categorical: tuple[str, ...] = ()) -> int:
        """Upsert rows given as columns (``given``) plus values the same in every row (``fixed``). The fixed
        values go into the SQL as literals, so each row binds only its own: at paper scale, binding
        the same run id, time stamp and settings into millions of rows was a good part of the writing.
        Columns named in ``categorical`` with few distinct values are coded (``CODED_VALUES``)."""
        literals = sql_literals(self.conn, fixed)
        coded, codes = coded_columns(self.conn, given, categorical, literals)
        columns = [given[f] if f in given else repeat(fixed[f]) for f in fields
                   if f not in literals and f not in coded]
        if coded:
            columns.append(codes)
        with self.transaction() as cur:  # the repeats are endless
            return upsert(cur, table, fields, conflict, literals, zip(*columns, strict=False), coded)

    RESPONSE_COLUMNS = ("id, item_id, model, settings, text, prompt_tokens, completion_tokens, latency_s, "
                        "finish_reason, error, attempts, run_id")

    @staticmethod
    def _response(r) -> Response:
        return Response(id=r[0], item_id=r[1], model=r[2], settings=json.loads(r[3]), text=r[4],
                        prompt_tokens=r[5], completion_tokens=r[6], latency_s=r[7], finish_reason=r[8],
                        error=r[9], attempts=r[10], run_id=r[11])

    def responses(self, model: str | None = None, ok_only: bool = False) -> list[Response]:
        sql, args = f"SELECT {self.RESPONSE_COLUMNS} FROM responses WHERE 1=1", []
        if model:
            sql += " AND model=?"
            args.append(model)
        if ok_only:
            sql += " AND error IS NULL"
        return [self._response(r) for r in self.conn.execute(sql + " ORDER BY rowid", args)]

    def answered_response_ids(self, model: str, settings: SamplingSettings) -> set[str]:
        """Ids of responses already answered (not errors) for this model and settings: the resume set."""
        rows = self.conn.execute(
            "SELECT id FROM responses WHERE model=? AND settings_key=? AND error IS NULL",
            (model, settings.key))
        return {r[0] for r in rows}

    # -- verdicts ----------------------------------------------------------------------------------------
    def put_verdicts(self, verdicts: Iterable[Verdict]) -> int:
        """Store verdicts. A stored verdict is replaced only when it failed (``error`` set) or when the new
        one comes from another fingerprint of its judge (a changed prompt, phrase list or setting)."""
        stamp = now()
        secrets = secret_values()
        # in VERDICT_FIELDS order
        rows = [(v.id, v.response_id, v.judge, v.label, scrub_text(v.raw, secrets),
                 scrub_text(v.reasoning, secrets), None if v.error is None else scrub_text(v.error, secrets),
                 v.run_id, stamp, v.fingerprint) for v in verdicts]
        return self._upsert_verdicts(rows)

    def put_verdict_columns(self, ids: list[str], response_ids: list[str], judges: list[str],
                            labels: list[str], raws: list[str], reasonings: list[str],
                            fingerprints: list[str], run_id: str) -> int:
        """Verdicts without an error given as columns: what ``put_verdicts`` writes for such records,
        without a Verdict per row. Labels are trusted: the caller took them from ``LABELS``."""
        secrets = secret_values()
        given = {"id": ids, "response_id": response_ids, "judge": judges, "label": labels,
                 "raw": scrub_all(raws, secrets), "reasoning": scrub_all(reasonings, secrets),
                 "fingerprint": fingerprints}
        fixed = {"error": None, "run_id": run_id, "created_at": now()}
        return self._upsert_columns("verdicts", VERDICT_FIELDS, _VERDICT_CONFLICT, given, fixed,
                                    categorical=("judge", "label", "raw", "reasoning", "fingerprint"))

    def _upsert_verdicts(self, rows: list[tuple]) -> int:
        with self.transaction() as cur:
            return upsert(cur, "verdicts", VERDICT_FIELDS, _VERDICT_CONFLICT, {}, rows)

    def verdicts(self, judge: str | None = None) -> list[Verdict]:
        sql, args = ("SELECT id, response_id, judge, label, raw, reasoning, error, run_id, fingerprint "
                     "FROM verdicts"), ()
        if judge:
            sql, args = sql + " WHERE judge=?", (judge,)
        return [Verdict(id=r[0], response_id=r[1], judge=r[2], label=r[3], raw=r[4], reasoning=r[5],
                        error=r[6], run_id=r[7], fingerprint=r[8])
                for r in self.conn.execute(sql + " ORDER BY rowid", args)]

    def judged_response_ids(self, judge: str, fingerprint: str | None = None) -> set[str]:
        """Responses ``judge`` has a verdict on (failed ones excluded); with ``fingerprint``, only verdicts
        from that configuration of the judge."""
        sql, args = "SELECT response_id FROM verdicts WHERE judge=? AND error IS NULL", [judge]
        if fingerprint is not None:
            sql += " AND fingerprint=?"
            args.append(fingerprint)
        return {r[0] for r in self.conn.execute(sql, args)}

    def judge_fingerprints(self, judge: str | None = None) -> dict[str, dict[str, int]]:
        """judge -> {fingerprint: verdicts}, over verdicts that did not fail."""
        sql, args = "SELECT judge, fingerprint, COUNT(*) FROM verdicts WHERE error IS NULL", []
        if judge:
            sql += " AND judge=?"
            args.append(judge)
        out: dict[str, dict[str, int]] = {}
        for name, fingerprint, n in self.conn.execute(sql + " GROUP BY judge, fingerprint", args):
            out.setdefault(name, {})[fingerprint] = n
        return out

    # -- summaries ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        from .schema import TABLES
        return {t: self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}

    def state(self) -> tuple:
        """Changes whenever the store's content does: the generation every write transaction moves on, and
        the last rowid of the tables analysis reads (rows added by a tool other than mijabench)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT (SELECT value FROM meta WHERE key='generation'), (SELECT MAX(rowid) FROM responses), "
                "(SELECT MAX(rowid) FROM verdicts), (SELECT MAX(rowid) FROM items)").fetchone()
        return (str(self.path.resolve()), *row)

    def change_marks(self) -> dict[str, int]:
        """Where the tables a judged table is read from stand: the generation, the last entry of the log of
        their rows changed in place (the schema's triggers log every update or delete, whoever writes), and
        the last rowid of responses and verdicts. Rows a later write adds get larger rowids: the rows up to
        these rowids are still there as they were, but those logged after ``rewrites``
        (``analysis.delta``)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT (SELECT value FROM meta WHERE key='generation'), (SELECT MAX(seq) FROM rewritten), "
                "(SELECT MAX(rowid) FROM responses), (SELECT MAX(rowid) FROM verdicts)").fetchone()
        return dict(zip(("generation", "rewrites", "responses", "verdicts"), (int(v or 0) for v in row),
                        strict=True))

    def forget_rewrites(self, upto: int) -> int:
        """Drop the entries of the log of rows changed in place up to ``upto`` (a ``change_marks``
        ``rewrites``), but the last one, which numbers the next: a table kept of the store reads only the
        entries after its own mark, so these are read by none kept at ``upto`` or later. The generation
        stays, as no row changed. Returns the entries dropped: none while another connection writes (not
        waited for: a report calls this) or when the store cannot be written."""
        with self._not_waiting():
            oldest, last = self.conn.execute("SELECT MIN(seq), MAX(seq) FROM rewritten").fetchone()
            if oldest is None or oldest > upto or oldest == last:
                return 0  # nothing to drop: no write
            try:
                return self.conn.execute(
                    "DELETE FROM rewritten WHERE seq <= ? AND seq < (SELECT MAX(seq) FROM rewritten)",
                    (int(upto),)).rowcount
            except sqlite3.OperationalError:  # locked, or a read-only file
                return 0

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        """Read-only escape hatch for analysis code that needs a join. Under the store's lock: a judge run
        reads in batches from a worker thread while other judges write."""
        with self._lock:
            return self.conn.execute(sql, tuple(args)).fetchall()


class _Transaction:
    """``with store.transaction() as cur:`` runs its statements in one IMMEDIATE transaction."""

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> sqlite3.Cursor:
        self.store._lock.acquire()
        self.cur = self.store.conn.cursor()
        self.cur.execute("BEGIN IMMEDIATE")
        return self.cur

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not exc_type:  # every write moves the generation on: what a snapshot of the store keys on
                self.cur.execute("INSERT INTO meta VALUES ('generation', '1') ON CONFLICT(key) DO UPDATE SET "
                                 "value = CAST(value AS INTEGER) + 1")
            self.cur.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()


def iter_rows(store: Store, table: str) -> Iterator[dict[str, Any]]:
    cur = store.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row, strict=True))
