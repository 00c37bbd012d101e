"""Schema of the workspace database and the migrations that reach it.

Each migration is a list of SQL statements applied in one transaction; ``PRAGMA user_version`` records how
far a database has come. Add a migration at the end; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [  # 1: the first schema
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at TEXT NOT NULL, config TEXT NOT NULL)""",
        """CREATE TABLE seeds (
            id TEXT PRIMARY KEY, language TEXT NOT NULL, group_id TEXT NOT NULL, text TEXT NOT NULL,
            source TEXT NOT NULL, meta TEXT NOT NULL)""",
        """CREATE TABLE scenarios (
            id TEXT PRIMARY KEY, language TEXT NOT NULL, category TEXT NOT NULL, text TEXT NOT NULL,
            provenance TEXT NOT NULL)""",
        """CREATE TABLE items (
            id TEXT PRIMARY KEY, language TEXT NOT NULL, group_id TEXT NOT NULL, seed_id TEXT NOT NULL,
            seed_text TEXT NOT NULL, scenario_id TEXT NOT NULL, scenario_category TEXT NOT NULL,
            scenario_text TEXT NOT NULL, strategy TEXT NOT NULL, prompt TEXT NOT NULL, pair_id TEXT NOT NULL,
            provenance TEXT NOT NULL)""",
        """CREATE TABLE bench_items (
            bench TEXT NOT NULL, item_id TEXT NOT NULL REFERENCES items(id), PRIMARY KEY (bench, item_id))""",
        """CREATE TABLE models (
            name TEXT PRIMARY KEY, spec TEXT NOT NULL, family TEXT, params_b REAL, meta TEXT NOT NULL)""",
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY, item_id TEXT NOT NULL, model TEXT NOT NULL, settings_key TEXT NOT NULL,
            settings TEXT NOT NULL, text TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
            latency_s REAL, finish_reason TEXT, error TEXT, attempts INTEGER NOT NULL, run_id TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        """CREATE INDEX responses_model ON responses(model, settings_key)""",
        """CREATE TABLE verdicts (
            id TEXT PRIMARY KEY, response_id TEXT NOT NULL, judge TEXT NOT NULL, label TEXT NOT NULL,
            raw TEXT NOT NULL, reasoning TEXT NOT NULL, error TEXT, run_id TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        """CREATE INDEX verdicts_response ON verdicts(response_id)""",
        """CREATE TABLE events (
            run_id TEXT NOT NULL, stage TEXT NOT NULL, ref TEXT NOT NULL, kind TEXT NOT NULL,
            detail TEXT NOT NULL, created_at TEXT NOT NULL)""",
    ],
    [  # 2: human annotation of judged responses (mijabench.annotate)
        """CREATE TABLE annotation_sets (
            name TEXT PRIMARY KEY, run_id TEXT NOT NULL, seed INTEGER NOT NULL, per_cell INTEGER NOT NULL,
            created_at TEXT NOT NULL)""",
        """CREATE TABLE annotation_samples (
            sample_id TEXT NOT NULL REFERENCES annotation_sets(name), response_id TEXT NOT NULL,
            language TEXT NOT NULL, group_id TEXT NOT NULL, strategy TEXT NOT NULL, model TEXT NOT NULL,
            vote_label TEXT NOT NULL, PRIMARY KEY (sample_id, response_id))""",
        """CREATE TABLE annotations (
            sample_id TEXT NOT NULL, response_id TEXT NOT NULL, annotator TEXT NOT NULL, label TEXT NOT NULL,
            note TEXT NOT NULL, created_at TEXT NOT NULL,
            PRIMARY KEY (sample_id, response_id, annotator))""",
    ],
    [  # 3: what produced each verdict (mijabench.judge.identity); empty replies marked once, at write time,
        # so analysis need not read every reply's text to count them
        """ALTER TABLE verdicts ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''""",
        """CREATE INDEX verdicts_judge ON verdicts(judge, fingerprint)""",
        """ALTER TABLE responses ADD COLUMN blank INTEGER NOT NULL DEFAULT 0""",
        """UPDATE responses SET blank = 1 WHERE error IS NULL
           AND TRIM(COALESCE(text, ''), ' ' || char(9, 10, 13)) = ''""",
    ],
    [  # 4: a log of the rows changed in place (an upsert that updates, a delete) in the tables a judged table
        # is read from, by any writer: a judged table kept from before holds every row that is still there
        # as it was, but those logged since (analysis.delta reads the rows added since, and the retried ones)
        """CREATE TABLE rewritten (
            seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, event TEXT NOT NULL, row INTEGER NOT NULL)""",
        *(f"""CREATE TRIGGER {table}_{event.lower()} AFTER {event} ON {table} BEGIN
              INSERT INTO rewritten (tbl, event, row) VALUES ('{table}', '{event}', OLD.rowid);
              END""" for table in ("responses", "verdicts") for event in ("UPDATE", "DELETE")),
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

# Tables a user can export, in pipeline order.
TABLES = ("seeds", "scenarios", "items", "bench_items", "runs", "models", "responses", "verdicts", "events",
          "annotation_sets", "annotation_samples", "annotations")
