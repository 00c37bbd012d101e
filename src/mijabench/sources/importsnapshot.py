"""The judged-table snapshot of a store an import has just filled, made from the import's own columns.

A report reads the judged table from its snapshot (``analysis.snapshot``) when the store is unchanged, and
otherwise loads it from SQLite (2 to 3 s at paper scale) and writes the snapshot. An import into an empty
store knows every row of that table already: each response's item, model and text, and each verdict's
response, judge and label. So it builds the table for the report it expects next (every imported judge
voting, no benchmark or model selection, the default rule for empty replies) with ``analysis.table.assemble``,
the same code that assembles a loaded table, in a forked child while it writes the verdicts (SQLite on
one core, the table on the other: ``digests.Deferred``). Once the last write is done it moves the file to
the name the store's final state gives it, so the first report after an import reads it.

Only an import into an empty store does this (the table is then the import's alone), and only from the
column reader's columns; any failure just means the first report loads from SQLite, as before.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from ..store import Store
from ..store.core import is_blank
from .corpus import Corpus
from .corpuscolumns import LABEL_ORDER
from .digests import Deferred

# the analysis modules are imported when a table is made: an import that makes none does not load them
VOTE_DIGIT = {"safe": 0, "harmful": 1, "unparsed": 2}  # the order of a table's n_safe, n_harmful, n_unparsed


def empty_store(store: Store) -> bool:
    """Whether the store holds no item, response or verdict: an import's table is then the whole table."""
    return not store.query("SELECT (SELECT 1 FROM items LIMIT 1) OR (SELECT 1 FROM responses LIMIT 1) "
                           "OR (SELECT 1 FROM verdicts LIMIT 1)")[0][0]


class ImportSnapshot:
    """``start`` once the responses are written (their rowids are then known), ``finish`` after the last
    write. Does nothing for a corpus it cannot describe (``voters`` None)."""

    def __init__(self, store: Store, corpus: Corpus, run_id: str):
        self.store, self.corpus, self.run_id = store, corpus, run_id
        self.voters = _voters(corpus)  # an analysis.voters.Voters, or None
        self.job: Deferred | None = None
        self.file = None  # the table's file while it is made
        self.base: dict | None = None  # where the store will stand after the last write (analysis.delta)

    def start(self) -> None:
        from ..analysis import snapshot

        if self.voters is None:
            return
        store, n = self.store, self.corpus.response_count
        # the responses were the first in their table: rowids 1 to n, in the order they were written (the
        # import wrote n rows into the empty table, so n distinct rowids from 1 to n are all of them; MIN
        # and MAX come from the b-tree's ends, where COUNT(*) would read every row)
        if tuple(store.query("SELECT (SELECT MIN(rowid) FROM responses), (SELECT MAX(rowid) FROM responses)"
                             )[0]) != (1, n):
            return
        settings = store.query("SELECT settings_key, settings FROM responses WHERE rowid = 1")[0]
        items = store.query("SELECT rowid, id, pair_id, language, group_id, strategy, scenario_category "
                            "FROM items ORDER BY rowid")
        models = store.models()
        folder = snapshot.folder(store)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        self.file = folder / f"import-{os.getpid()}.arrow.part"  # its name once the last write is done
        voters, run_id, corpus, path = self.voters, self.run_id, self.corpus, self.file
        selection = _selection(voters)
        # the verdicts go into their empty table next: rowids 1 to their count, and no row changed in place
        # (``finish`` checks both); generation 0 ranks the table below any base a later load leaves
        verdicts = len(corpus.verdict_columns["response_id"])
        self.base = {"selection": selection, "generation": 0, "rewrites": store.change_marks()["rewrites"],
                     "responses": n, "verdicts": verdicts, "verdict_count": verdicts}
        base = self.base
        # the verdict columns are built here, before the fork: they wait for the child that hashes the
        # verdict ids, which is this process's child, not the one forked below (that would hash them again)
        corpus.verdict_columns["response_id"]

        def build() -> tuple[np.ndarray]:
            table = judged_table(corpus, items, tuple(settings), run_id, voters, models)
            snapshot.write_file(path, table, {**base, "rows": table.n})
            return (np.ones(1, np.int8),)

        # forked at paper scale (the verdicts are written meanwhile), built here when small
        self.job = Deferred(build, arrays=1, size=n)

    def finish(self) -> None:
        """Wait for the table and file it under the store's state now (no write may follow)."""
        from ..analysis import snapshot

        if self.job is None or self.file is None:
            return
        try:
            self.job.result()
            marks = self.store.change_marks()
            if (marks["rewrites"], marks["verdicts"]) == (self.base["rewrites"], self.base["verdicts"]):
                snapshot.place(self.file, snapshot.snapshot_path(self.store, self.base["selection"]))
        except Exception:  # the table only saves the first report a load: it never fails the import
            pass
        finally:
            self.file.unlink(missing_ok=True)


def _selection(voters) -> dict:
    """The selection of the report this table is for (``analysis.snapshot.selection``)."""
    from ..analysis import snapshot
    from ..analysis.table import DEFAULT_EMPTY_RULE

    return snapshot.selection(voters.names if voters.named else [], None, None, DEFAULT_EMPTY_RULE, False)


def _voters(corpus: Corpus):
    """The voters a report names for this corpus when every imported judge votes (none named when there
    is one), or None when there are none, or an even number, which a report refuses by default."""
    from ..analysis.voters import Voters, check_vote_size

    judges = corpus.column_judges
    if corpus.response_columns is None or corpus.verdict_columns is None or not judges:
        return None
    names = sorted(judges)
    try:
        check_vote_size(names, allow_even=False)
    except InputError:
        return None
    return Voters(tuple(names), {name: judges[name] for name in names}, len(names) > 1)


def judged_table(corpus: Corpus, items: list[tuple], settings: tuple[str, str], run_id: str, voters,
                 models: list[dict]):
    """The table ``load_judged`` gives for a store that holds only this corpus, written by ``write_import``
    (responses in column order, one settings and one run), with ``voters`` (all its judges) voting."""
    from ..analysis.table import DEFAULT_EMPTY_RULE, assemble

    responses = corpus.response_columns
    n = len(responses["id"])
    rowid_of = {row[1]: row[0] for row in items}
    names = sorted(set(responses["model"]))
    code = {name: i for i, name in enumerate(names)}
    # map() over the columns, not a generator: a second less at paper scale, in a child beside the writes
    model = np.array(list(map(code.__getitem__, responses["model"])), np.int32)
    counts = np.bincount(model, minlength=len(names))
    stored = [(name, settings[0], settings[1], run_id, int(c)) for name, c in zip(names, counts, strict=True)]
    verdicts = corpus.verdict_columns
    position, label = verdicts["response_id"].codes.astype(np.int64), verdicts["label"].codes.astype(np.int64)
    digit = np.array([VOTE_DIGIT[name] for name in LABEL_ORDER], np.int64)[label]
    votes = np.bincount(position * 3 + digit, minlength=3 * n).reshape(n, 3).astype(np.int32)
    judge = verdicts["judge"]
    per_judge = np.bincount(judge.codes.astype(np.int64), minlength=len(judge.values))
    by_name: dict[str, int] = {}
    for name, c in zip(judge.values.tolist(), per_judge.tolist(), strict=True):
        by_name[name] = by_name.get(name, 0) + c
    census = sorted((name, corpus.column_judges[name], c) for name, c in by_name.items() if c)
    cols = {"response_id": responses["id"],
            "item_rowid": np.array(list(map(rowid_of.__getitem__, responses["item_id"])), np.int64),
            "model": model, "run_id": np.zeros(n, np.int32), "failed": np.zeros(n, bool),
            "empty": np.array(list(map(is_blank, responses["text"])), bool),
            "truncated": np.zeros(n, bool),
            "n_safe": votes[:, 0], "n_harmful": votes[:, 1], "n_unparsed": votes[:, 2]}
    return assemble(cols, items, stored, (run_id,), voters, census, models, DEFAULT_EMPTY_RULE)
