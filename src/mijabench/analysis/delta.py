"""The judged table of a store that has mostly grown since a snapshot was taken: the snapshot's rows, then the
responses and verdicts added since, instead of every response and verdict read from SQLite again.

A judge run, a run of one more model or an import into a workspace that held something changes the store,
so the next report's snapshot key no longer matches (``analysis.snapshot``). At paper scale the full load
then takes 2 to 2.5 s of a 4 to 5 s report, though most rows are the same as before. Such writes add rows:
new responses and verdicts get rowids past the old last ones. Rows changed in place are logged by triggers
in the schema (the ``rewritten`` table), whoever writes: a failed reply answered on a retry is read again
here; anything else (a verdict judged again, a delete) means the store is read whole.

A snapshot written after a load records where the store stood (``Store.change_marks``) and the selection.
A later load takes the newest such base of this store that is still valid: of the same selection, or with
fewer voters when each voter it lacks had no verdict then (a judge run of a new judge, now voting), or of
the whole store, narrowed to the benchmark and models selected. Valid means:

- nothing logged since but retried replies, whose flags and runs are read again;
- the responses up to the base's last rowid that its selection holds are as many as the base's rows (a
  benchmark that gained old items, or an item stored for a response that had none, adds rows among them);
- the verdicts up to the base's last rowid are as many as the base counted.

Then the table is the base's rows, with their votes plus the votes added since, and the new responses after
them, in rowid order: the rows a full load gives, assembled by the same ``table.assemble`` (targets, runs,
items and models are read whole, as a full load reads them). Tests compare both, column by column.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from .arrowstrings import ArrowStrings
from .columnread import (
    FLAGS_SQL,
    _lookup,
    arrow_keys,
    aside,
    count_votes,
    hex_keys,
    read_responses,
    verdict_labels,
)
from .table import (
    ITEM_ROWS_SQL,
    VOTE_BASE,
    JudgedTable,
    _check_selection,
    _selection_sql,
    _store_facts,
    assemble,
)
from .voters import judge_census, resolve_voters

PATCH_BATCH = 10_000  # retried rowids per query (SQLite's limit on bound values is far above)


def base(selection: dict, marks: dict[str, int], table: JudgedTable) -> dict:
    """What a snapshot of ``table``, loaded with ``selection`` while the store stood at ``marks``, records
    so a later load can start from it."""
    return {"selection": selection, **marks, "rows": table.n,
            "verdict_count": sum(n for _, n in table.meta["judge_counts"])}


def load(store, selection: dict, marks: dict[str, int], judges, bench, models, empty_as: str,
         allow_even_vote: bool) -> JudgedTable | None:
    """The table ``load_judged`` gives for the selection, from a valid base snapshot and the rows added
    since, or None when there is none (the caller then loads in full)."""
    from . import snapshot

    found = snapshot.newest_base(store, selection, marks)
    if found is None:
        return None
    old, info = found
    retried = _retried(store.query, info, marks)
    if retried is None:
        return None
    models = list(models or [])
    _check_selection(store, bench, models)
    where, args = _selection_sql(bench, models)
    # the base's rows are those of its selection: this one, or the whole store (narrowed at the end)
    narrow = (info["selection"]["bench"], info["selection"]["models"]) != (bench, models)
    read_where, read_args = ([], []) if narrow else (where, args)
    also = "".join(f" AND {w}" for w in read_where)
    # the store's facts, the judge census and the items in threads, each on a connection of its own (SQLite
    # leaves Python's lock while it reads), the checks and the new responses here
    with ThreadPoolExecutor(4) as pool:
        # a retried reply may have moved to another run: the targets' runs are then read whole
        facts = aside(pool, store, _facts, None if retried else old.meta.get("facts"), info["responses"])
        counted = aside(pool, store, _census, old.meta.get("census"), info["verdicts"])
        item_rows = aside(pool, store, lambda query: query(ITEM_ROWS_SQL))
        census = counted.result()
        voters = resolve_voters(store, judges, selection=(" AND ".join(where), list(args)),
                                allow_even=allow_even_vote, census=census)
        if len(voters.names) >= VOTE_BASE or not _same_or_more_voters(old.meta, voters):
            return None  # (leaving the pool waits for the facts) a full load says what is wrong
        added = aside(pool, store, verdict_labels, list(voters.names), info["verdicts"])
        # the whole store: its count from the smallest index, less the rows after the base's (a count up to
        # a rowid walks every page of the table up to it)
        kept = store.query(
            f"SELECT COUNT(*) FROM responses r WHERE r.rowid <= ?{also}" if read_where else
            "SELECT (SELECT COUNT(*) FROM responses) - (SELECT COUNT(*) FROM responses WHERE rowid > ?)",
            [info["responses"], *read_args])[0][0]
        verdicts, new_verdicts = store.query("SELECT (SELECT COUNT(*) FROM verdicts), "
                                             "(SELECT COUNT(*) FROM verdicts WHERE rowid > ?)",
                                             [info["verdicts"]])[0]
        if kept != info["rows"] or verdicts != info["verdict_count"] + new_verdicts:
            return None
        new = read_responses(store, read_where, read_args, facts.result, since=info["responses"])
        stored, run_names = facts.result()
        added_votes = added.result()
        items = item_rows.result()
    if new is None:
        return None
    cols = _old_columns(old, items, stored, run_names)
    if cols is None or (retried and not _patch(store, cols, retried, run_names)):
        return None
    fresh = len(new["response_id"])  # the new rows' votes are all among the verdicts added since
    cols = {name: _concat(cols[name], new[name] if name in new else np.zeros(fresh, np.int32))
            for name in cols}
    keys = cols.pop("keys")
    votes = count_votes(added_votes, keys)
    for i, name in enumerate(("n_safe", "n_harmful", "n_unparsed")):
        cols[name] = cols[name] + votes[:, i]
    if narrow:
        cols = _narrowed(store, cols, items, stored, bench, models)
    return assemble(cols, items, stored, run_names, voters, census, store.models(), empty_as)


def _retried(query, info: dict, marks: dict[str, int]) -> list[int] | None:
    """The rowids of the base's responses changed in place since it was taken (failed replies answered on
    a retry), or None when anything else was (a verdict, a delete), or when the log no longer holds all
    that was: the store is then read whole."""
    if marks["rewrites"] == info["rewrites"]:
        return []
    logged = query("SELECT tbl, event, row FROM rewritten WHERE seq > ?", [info["rewrites"]])
    # entries are numbered one after the other and dropped oldest first (``snapshot.keep``): those after
    # the base's mark are all there when the oldest left comes right after it or earlier (read after them)
    if query("SELECT MIN(seq) FROM rewritten")[0][0] > info["rewrites"] + 1:
        return None
    if any((table, event) != ("responses", "UPDATE") for table, event, _ in logged):
        return None
    return sorted({row for _, _, row in logged if row <= info["responses"]})


def _patch(store, cols: dict, retried: list[int], run_names: tuple[str, ...]) -> bool:
    """Give the base's rows that were retried their flags and run as they are now; False when one of them
    cannot be placed (an id that is not 16 hex digits)."""
    rows = []
    for start in range(0, len(retried), PATCH_BATCH):
        chunk = retried[start:start + PATCH_BATCH]
        rows += store.query(f"SELECT r.id, {FLAGS_SQL}, r.run_id FROM responses r WHERE r.rowid IN "
                            f"({','.join('?' * len(chunk))})", chunk)
    if not rows:
        return True
    wanted = hex_keys(",".join(row[0] for row in rows).encode("utf-8"))
    run_code = {name: code for code, name in enumerate(run_names)}
    if wanted is None or len(wanted) != len(rows) or any(row[2] not in run_code for row in rows):
        return False
    position = _lookup(cols["keys"], np.arange(len(cols["keys"])), wanted)
    hit = position >= 0  # rows outside the base's selection have no place in it
    position = position[hit]
    flags = np.array([row[1] for row in rows], np.int64)[hit]
    runs = np.array([run_code[row[2]] for row in rows], np.int64)[hit]
    for name, bit in (("failed", 1), ("empty", 2), ("truncated", 4)):
        cols[name] = np.array(cols[name], dtype=bool)
        cols[name][position] = (flags & bit).astype(bool)
    cols["run_id"] = np.array(cols["run_id"], dtype=np.int64)
    cols["run_id"][position] = runs
    return True


def _narrowed(store, cols: dict, items: list[tuple], stored: list[tuple], bench: str | None,
              models: list[str]) -> dict:
    """The rows of the whole store's ``cols`` that the benchmark and models select, as a load of that
    selection reads them (in rowid order)."""
    keep = np.ones(len(cols["item_rowid"]), bool)
    if models:
        wanted = set(models)
        keep &= np.array([target[0] in wanted for target in stored] or [False], bool)[cols["model"]]
    if bench:
        in_bench = {row[0] for row in store.query("SELECT item_id FROM bench_items WHERE bench=?", [bench])}
        rowids = np.array([row[0] for row in items if row[1] in in_bench], np.int64)
        keep &= np.isin(cols["item_rowid"], rowids)
    return {name: _take(values, keep) for name, values in cols.items()}


def _take(values, keep: np.ndarray):
    if isinstance(values, ArrowStrings):
        return ArrowStrings(values.array.filter(pa.array(keep)))
    if isinstance(values, (list, tuple)):
        return [v for v, k in zip(values, keep.tolist(), strict=True) if k]
    return np.asarray(values)[keep]


def _same_or_more_voters(meta: dict, voters) -> bool:
    """Whether the base's votes are a part of ``voters``' votes: its voters are among them, with the same
    configurations, and every voter it lacks had no verdict when it was taken (so all of that judge's
    verdicts are among those added since)."""
    before, then = meta["voters"], dict(meta["judge_counts"])
    return set(before.names) <= set(voters.names) and all(
        voters.fingerprints.get(judge) == before.fingerprints.get(judge) for judge in before.names) and all(
        not then.get(judge) for judge in voters.names if judge not in before.names)


def _facts(query, old: dict | None, since: int) -> tuple[list[tuple], tuple[str, ...]]:
    """``table._store_facts`` of the store: the base's, with the responses after rowid ``since`` added to
    their targets (counts summed, run ids in the order of their first response, as
    GROUP_CONCAT(DISTINCT) lists them), or read whole for a base without them or with a run id that holds
    the list's comma."""
    if old is None or any("," in run for run in old["runs"]):
        return _store_facts(query)
    targets = {(model, key): [settings, listed.split(","), n]
               for model, key, settings, listed, n in old["targets"]}
    runs = set(old["runs"])
    for model, key, settings, run_id, n in query(
            "SELECT model, settings_key, MIN(settings), run_id, COUNT(*) FROM responses NOT INDEXED "
            "WHERE rowid > ? GROUP BY model, settings_key, run_id ORDER BY MIN(rowid)", [since]):
        target = targets.setdefault((model, key), [settings, [], 0])  # a settings key is its settings'
        target[1] += [] if run_id in target[1] else [run_id]
        target[2] += n
        runs.add(run_id)
    stored = [(model, key, settings, ",".join(listed), n)
              for (model, key), (settings, listed, n) in sorted(targets.items())]
    return stored, tuple(sorted(runs))


def _census(query, old: list | None, since: int) -> list[tuple[str, str, int]]:
    """``voters.judge_census`` of the store: the base's census plus that of the verdicts after rowid
    ``since`` (the rows up to it are the base's, as ``load`` checks), or read whole for a base without one."""
    if old is None:
        return judge_census(query)
    counts = {(judge, fingerprint): n for judge, fingerprint, n in old}
    # NOT INDEXED: the rows after ``since`` by rowid, not a scan of the whole (judge, fingerprint) index
    added = query("SELECT judge, fingerprint, COUNT(*) FROM verdicts NOT INDEXED WHERE rowid > ? "
                  "GROUP BY judge, fingerprint", [since])
    for judge, fingerprint, n in added:
        counts[(judge, fingerprint)] = counts.get((judge, fingerprint), 0) + n
    # in the census's order: SQLite's ORDER BY compares UTF-8 bytes, as Python compares code points
    return [(judge, fingerprint, n) for (judge, fingerprint), n in sorted(counts.items())]


def _old_columns(old: JudgedTable, items: list[tuple], stored: list[tuple], run_names: tuple[str, ...]
                 ) -> dict | None:
    """The base table's rows as ``columnread.response_columns`` gives them, coded against the store as it
    is now (targets and runs are ranked by name: a new one moves the codes of those after it), with the
    response id keys. None when a row's item, target or run is no longer known."""
    n = old.n
    ids = old.cat("response_id")
    if not np.array_equal(ids.codes, np.arange(n)):  # each row's own id, in row order, as a load makes it
        return None
    response_id = ids.categories  # a snapshot's ids stay in Arrow: their keys come from its buffers
    keys = arrow_keys(response_id.array) if isinstance(response_id, ArrowStrings) else None
    if keys is None:  # ids another tool wrote: a full load reads them row by row
        return None
    targets = old.meta["targets"]
    target_code = {tuple(target[:2]): code for code, target in enumerate(stored)}
    codes = {
        "item_rowid": _recode(old.cat("item_id"), {row[1]: row[0] for row in items}.get),
        "model": _recode(old.cat("model"), lambda label: target_code.get(tuple(targets.get(label, ())))),
        "run_id": _recode(old.cat("run_id"), {name: code for code, name in enumerate(run_names)}.get)}
    if any(c is None for c in codes.values()):
        return None
    return {"response_id": response_id, "keys": keys, **codes,
            **{name: old.columns[name] for name in ("failed", "empty", "truncated", "n_safe", "n_harmful",
                                                    "n_unparsed")}}


def _recode(column, code_of) -> np.ndarray | None:
    """Each row's code by ``code_of(value)``, or None when a value in use has none (categories no row uses,
    such as the store's other targets, need none)."""
    used = np.zeros(len(column.categories), bool)
    used[column.codes] = True
    mapped = [code_of(value) if use else -1
              for value, use in zip(column.categories, used.tolist(), strict=True)]
    if any(code is None for code in mapped):
        return None
    return np.array(mapped, np.int64)[column.codes] if len(column.codes) else np.zeros(0, np.int64)


def _concat(first, second):
    if isinstance(first, ArrowStrings):
        return ArrowStrings.join(first, second)
    if isinstance(first, (list, tuple)):
        return list(first) + list(second)
    return np.concatenate([np.asarray(first), np.asarray(second, dtype=np.asarray(first).dtype)])
