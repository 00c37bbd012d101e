"""The judged table's response columns read from SQLite in a few large batches.

Fetching one row per response, and probing each response's verdicts through the index, is most of a report
on a changed store: 13 of 15 s at 600k responses and 1.8M verdicts. Here every column of a batch of responses
comes back as one string built inside SQLite (``group_concat``), and the verdicts are read in one pass over
their table and matched to their responses in numpy. That works because the ids mijabench writes are 16 hex
digits (``records.stable_id``): an id is then a 64-bit integer, and matching is a sorted search. A store
holding other ids (written by another tool) gets ``None`` here and is read row by row
(``table._response_rows``), with the same result.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from .arrowstrings import ArrowStrings, string_offsets

ID_LENGTH = 16
RECORD = ID_LENGTH + 1  # an id and the comma after it
COMMA = ord(",")
BATCH = 1_000_000  # rowids per query: bounds the strings SQLite builds (about 45 MB per batch of responses)
CASE_RUNS = 64  # runs in a selection up to which SQLite codes each response's run (``_run_codes``)
# a response's flags as one integer: failed 1, empty 2, cut by the token limit 4
FLAGS_SQL = ("(r.error IS NOT NULL) + 2 * (r.blank != 0) + "
             "4 * (r.error IS NULL AND r.finish_reason IS 'length')")
SEPARATOR = "\x1f"  # between run ids (the unit separator: never in an id mijabench writes)
# label -> digit, in the order of the counts returned (anything else is not a vote)
LABEL_DIGIT = "CASE label WHEN 'safe' THEN '0' WHEN 'harmful' THEN '1' WHEN 'unparsed' THEN '2' ELSE '3' END"

_UPPER_HEX = tuple(bytes([c]) for c in b"ABCDEF")  # fromhex reads them as the lower-case digits
_COMMAS_TO_SPACES = bytes.maketrans(b",", b" ")


def hex_keys(blob: bytes) -> np.ndarray | None:
    """The 64-bit integers of the ids in ``blob``, each 16 hex digits and each followed by a comma but the
    last (as ``group_concat(id, ',')`` gives them), or None if ``blob`` is not exactly that. Lower-case
    digits only (what ``stable_id`` writes), so two different ids never share a key. An id of another
    length moves a comma into a digit's place, or a digit into a comma's: the check is exact."""
    if (len(blob) + 1) % RECORD:
        return None
    records = np.frombuffer(blob + b",", np.uint8).reshape(-1, RECORD)
    if not (records[:, ID_LENGTH] == COMMA).all():
        return None
    return _packed_keys(blob.translate(_COMMAS_TO_SPACES), len(records))


def _packed_keys(digits: bytes, n: int) -> np.ndarray | None:
    """The 64-bit integers of ``n`` ids whose digits fill ``digits`` (16 each, spaces between them allowed),
    or None when any of those places is not a lower-case hex digit. ``bytes.fromhex`` decodes three times
    as fast as a table lookup per digit; it skips whitespace, so a space (or a comma made one) in a digit's
    place leaves an odd digit, or fewer bytes than the ids need."""
    if any(upper in digits for upper in _UPPER_HEX):
        return None
    try:
        packed = bytes.fromhex(digits.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if len(packed) != n * (ID_LENGTH // 2):
        return None
    return np.frombuffer(packed, ">u8").astype(np.uint64)


def arrow_keys(array) -> np.ndarray | None:
    """``hex_keys`` of the ids in an Arrow string array, read from its buffers, or None unless every id
    is 16 lower-case hex digits."""
    n = len(array)
    if array.null_count or not pa.types.is_string(array.type):
        return None
    offsets = string_offsets(array)
    if n == 0 or not (np.diff(offsets) == ID_LENGTH).all():
        return None if n else np.zeros(0, np.uint64)
    data = array.buffers()[2][offsets[0]:offsets[-1]].to_pybytes()
    return _packed_keys(data, n)


def _batches(query, table: str, since: int = 0) -> list[tuple[int, int]]:
    """Rowid ranges of at most ``BATCH`` rows covering the table's rows after rowid ``since``."""
    # two subqueries: SQLite answers MIN and MAX of a rowid from the b-tree's ends only when each is alone
    lo, hi = query(f"SELECT (SELECT MIN(rowid) FROM {table} WHERE rowid > ?), "
                   f"(SELECT MAX(rowid) FROM {table})", [since])[0]
    return [] if lo is None else [(a, min(a + BATCH - 1, hi)) for a in range(lo, hi + 1, BATCH)]


def _fixed_ids(blob: bytes | None, n: int) -> np.ndarray | None:
    """Keys of the ``n`` ids listed in ``blob`` when every one is 16 hex digits, else None (a NULL id,
    which ``group_concat`` leaves out, makes the count differ)."""
    if n == 0:
        return np.zeros(0, np.uint64)
    keys = hex_keys(blob) if blob is not None else None
    return keys if keys is not None and len(keys) == n else None


def aside(pool: ThreadPoolExecutor, store, work: Callable, *args) -> Future:
    """``work(query, *args)`` in one of ``pool``'s threads, on a read-only connection of its own: SQLite
    leaves Python's lock while it works, so such queries share the cores with the caller's. On the store's
    own connection when a second one cannot be opened (a folder the user may not write to, say)."""
    def run():
        try:
            connection = _read_only(store.path)
        except sqlite3.Error:
            return work(store.query, *args)
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            return work(lambda sql, params=(): connection.execute(sql, tuple(params)).fetchall(), *args)
        except sqlite3.OperationalError:
            return work(store.query, *args)
        finally:
            connection.close()
    return pool.submit(run)


def _read_only(path) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def with_votes(columns: dict | None, verdicts: Future | None) -> dict | None:
    """``read_responses``'s columns with each response's votes counted from ``verdicts`` (a future of
    ``verdict_labels``, read in a thread meanwhile; None: no voter), its keys dropped: the columns
    ``table._response_rows`` gives, same values, same order (responses by rowid). None for None."""
    if columns is None:
        return None
    votes = count_votes(verdicts.result() if verdicts is not None else [], columns.pop("keys"))
    columns.update(n_safe=votes[:, 0], n_harmful=votes[:, 1], n_unparsed=votes[:, 2])
    return columns


def read_responses(store, where: list[str], args: list, facts: Callable[[], tuple], since: int = 0
                   ) -> dict | None:
    """The selected responses' columns after rowid ``since``, without their votes (``with_votes``), with each
    response's id key (``keys``), or None when an id in the selection is not one mijabench writes.
    ``facts()``: every (model, settings key, ...) of the store and every run id, each in code order
    (``table._store_facts``, read in another thread), and optionally each target's rowids and runs."""
    also = "".join(f" AND {w}" for w in where)
    parts: dict[str, list] = {k: [] for k in ("ids", "keys", "items", "flags", "rowid", "run_bounds")}
    for lo, hi in _batches(store.query, "responses", since):
        n, ids, items, flags, rowids, *run_bounds = store.query(
            "SELECT COUNT(*), CAST(group_concat(r.id, ',') AS BLOB), "
            "CAST(group_concat(r.item_id, ',') AS BLOB), "
            # the flags as one digit each: an integer is its digit in group_concat (char() cost 0.2 s more)
            f"CAST(group_concat({FLAGS_SQL}, '') AS BLOB), group_concat(r.rowid), "
            f"MIN(r.run_id), MAX(r.run_id) FROM responses r WHERE r.rowid BETWEEN ? AND ?{also}",
            [lo, hi, *args])[0]
        if not n:
            continue
        keys, item_keys = _fixed_ids(ids, n), _fixed_ids(items, n)
        if keys is None or item_keys is None:
            return None
        parts["ids"].append(ids)
        parts["keys"].append(keys)
        parts["items"].append(item_keys)
        parts["flags"].append(np.frombuffer(flags, np.uint8) - 48)
        parts["rowid"].append(_ints(rowids))
        parts["run_bounds"].extend(run_bounds)  # the batch's MIN and MAX run id
    rowid = _join(parts["rowid"], np.int64)
    # a selection read through an index comes back in that index's order: put responses in rowid order
    order = None if np.all(rowid[1:] > rowid[:-1]) else np.argsort(rowid, kind="stable")
    keys, item_keys, flags = (_join(parts[k], dt) for k, dt in (("keys", np.uint64), ("items", np.uint64),
                                                                 ("flags", np.uint8)))
    ids = _id_strings(parts["ids"])  # in Arrow, no Python string per id
    if order is not None:
        rowid, keys, item_keys, flags = (a[order] for a in (rowid, keys, item_keys, flags))
        ids = ids.take(pa.array(order))
    item_rowid = _item_rowids(store, item_keys)
    if item_rowid is None:
        return None
    known = item_rowid >= 0  # a response whose item is not stored is left out, as the inner join leaves it
    if not known.all():
        rowid, keys, flags, item_rowid = (a[known] for a in (rowid, keys, flags, item_rowid))
        ids = ids.filter(pa.array(known))
    targets, runs, *listing = facts()
    model, run = _listed_codes(rowid, runs, listing[0]) if listing and not since else (None, None)
    if model is None:
        model = _target_codes(store, rowid, targets, since)
    if model is None:
        return None
    if run is None:
        run = _run_codes(store, where, args, rowid, set(parts["run_bounds"]), runs, since)
    return {"response_id": ArrowStrings(ids), "keys": keys, "item_rowid": item_rowid, "model": model,
            "run_id": run,
            "failed": (flags & 1).astype(bool), "empty": (flags & 2).astype(bool),
            "truncated": (flags & 4).astype(bool)}


def _run_codes(store, where: list[str], args: list, rowid: np.ndarray, seen: set[str],
               runs: Sequence[str], since: int = 0) -> np.ndarray:
    """Each response's run code (its run id's rank in ``runs``). One run in the selection (an import, a
    single ``run``) is known from the batches' MIN and MAX; with more, each response's run id is read
    again, with its rowid to place it."""
    if not len(rowid):
        return np.zeros(0, np.int32)
    code = {name: i for i, name in enumerate(runs)}
    if len(seen) == 1:
        return np.full(len(rowid), code[seen.pop()], np.int32)
    also = "".join(f" AND {w}" for w in where)
    # a few runs: SQLite gives each row its run's code (a CASE over them), as digits numpy parses; many: the
    # run ids themselves, coded here (a Python step per row)
    coded = len(runs) <= CASE_RUNS
    listing = (f"group_concat(CASE r.run_id {' '.join(f'WHEN ? THEN {i}' for i in range(len(runs)))} END)"
               if coded else f"group_concat(r.run_id, '{SEPARATOR}')")
    rowids, codes = [], []
    for lo, hi in _batches(store.query, "responses", since):
        n, listed, names = store.query(
            f"SELECT COUNT(*), group_concat(r.rowid), {listing} FROM responses r "
            f"WHERE r.rowid BETWEEN ? AND ?{also}", [*(runs if coded else ()), lo, hi, *args])[0]
        if n:
            rowids.append(_ints(listed))
            codes.append(_ints(names).astype(np.int32) if coded else
                         np.fromiter((code[name] for name in names.split(SEPARATOR)), np.int32, n))
    return _lookup(_join(rowids, np.int64), _join(codes, np.int32), rowid).astype(np.int32)


def _id_strings(blobs: list[bytes]) -> pa.Array:
    """The ids of ``group_concat(id, ',')`` blobs (every id 16 characters, as ``_fixed_ids`` checked) as one
    Arrow string array, made from their bytes without a Python string per id."""
    if not blobs:
        return pa.array([], pa.string())
    data = np.concatenate([np.frombuffer(b + b",", np.uint8).reshape(-1, RECORD)[:, :ID_LENGTH]
                           for b in blobs])
    offsets = np.arange(len(data) + 1, dtype=np.int64) * ID_LENGTH
    small = offsets[-1] < 2**31  # 32-bit offsets up to 134M ids
    buffers = [None, pa.py_buffer(offsets.astype(np.int32) if small else offsets),
               pa.py_buffer(np.ascontiguousarray(data))]
    return pa.Array.from_buffers(pa.string() if small else pa.large_string(), len(data), buffers)


def _ints(listed: str) -> np.ndarray:
    """The integers of ``group_concat(rowid)`` (numpy's text parser: a tenth of the time of a split)."""
    return np.fromstring(listed, dtype=np.int64, sep=",")


def _join(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


def _item_rowids(store, item_keys: np.ndarray) -> np.ndarray | None:
    """Each response's item rowid (-1 where no item has its id), or None when item ids are not hex."""
    n, blob, rowids = store.query(
        "SELECT COUNT(*), CAST(group_concat(id, ',') AS BLOB), group_concat(rowid) FROM items")[0]
    keys = _fixed_ids(blob, n)
    if keys is None:
        return None
    rowid = _ints(rowids) if n else np.zeros(0, np.int64)
    return _lookup(keys, rowid, item_keys)


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[keys == w] for each w of ``wanted`` (keys unique), -1 where absent."""
    order = np.argsort(keys)
    sorted_keys = keys[order]
    at = np.searchsorted(sorted_keys, wanted)
    at[at == len(sorted_keys)] = 0
    found = sorted_keys[at] == wanted if len(sorted_keys) else np.zeros(len(wanted), bool)
    return np.where(found, values[order][at] if len(sorted_keys) else -1, -1)


def _listed_codes(rowid: np.ndarray, runs: Sequence[str], listing: list[tuple[np.ndarray, tuple[str, ...]]]
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each response's target and run codes from the rowids and run ids ``table._store_facts`` lists per
    target. The targets' codes are None when a response is not listed (written after the facts were read:
    ``_target_codes`` reads them again); the runs' when a response's target had several runs (or that
    response is not listed): then each response's own run id is read (``_run_codes``)."""
    if not len(rowid):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    code = {name: i for i, name in enumerate(runs)}
    model = _code_by_rowid([(rowids, i) for i, (rowids, _) in enumerate(listing)], rowid)
    if (model < 0).any():
        return None, None
    # a target's only run, or -1 when it had several
    single = np.array([code[names[0]] if len(names) == 1 else -1 for _, names in listing], np.int32)
    run = single[model]
    return model, (None if (run < 0).any() else run)


def _target_codes(store, rowid: np.ndarray, targets: Sequence[tuple], since: int = 0) -> np.ndarray | None:
    """Each response's target code: the rank of its (model, settings key) in ``targets``, from the rowids
    the model index lists per target (those after ``since``). None when the index lists a target
    ``targets`` lacks (a run of a new model wrote it between the two reads): no response is then given
    another target's name."""
    rank = {(model, key): i for i, (model, key, *_) in enumerate(targets)}
    # after a rowid, NOT INDEXED reads only the rows after it (the model index would be scanned whole)
    lists = store.query(f"SELECT model, settings_key, group_concat(rowid) FROM responses"
                        f"{' NOT INDEXED' if since else ''} WHERE rowid > ? GROUP BY model, settings_key",
                        [since])
    if any((model, key) not in rank for model, key, _ in lists):
        return None
    return _code_by_rowid([(_ints(ids), rank[(model, key)]) for model, key, ids in lists], rowid)


def _code_by_rowid(groups: list[tuple[np.ndarray, int]], rowid: np.ndarray) -> np.ndarray:
    """For each of ``rowid``, the code of the group (rowids, code) that lists it, -1 where none does."""
    listed = _join([rowids for rowids, _ in groups], np.int64)
    codes = _join([np.full(len(rowids), code, np.int32) for rowids, code in groups], np.int32)
    return _lookup(listed, codes, rowid).astype(np.int32)


def verdict_labels(query, judges: Sequence[str], since: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(response keys, label digits) of the verdicts by ``judges`` after rowid ``since``, batch by batch,
    keys sorted (searchsorted then walks the responses' keys in order: a third of the time of random
    needles)."""
    stored = stored_judges(query)
    filter_sql, filter_args = "", []
    if not stored <= set(judges):  # the filter costs a second at paper scale: left out when all vote
        filter_sql, filter_args = f" AND judge IN ({','.join('?' * len(judges))})", list(judges)
    out = []
    for lo, hi in _batches(query, "verdicts", since):
        n, blob, digits = query(
            f"SELECT COUNT(*), CAST(group_concat(response_id, ',') AS BLOB), "
            f"CAST(group_concat({LABEL_DIGIT}, '') AS BLOB) FROM verdicts "
            f"WHERE rowid BETWEEN ? AND ?{filter_sql}", [lo, hi, *filter_args])[0]
        keys = _fixed_ids(blob, n)
        if keys is None:  # some verdict is on a response of another tool's ids: it cannot match
            keys, label = _hex_only(query, lo, hi, filter_sql, filter_args)
        else:
            label = np.frombuffer(digits, np.uint8).astype(np.int64) - 48 if n else np.zeros(0, np.int64)
        by_key = np.argsort(keys)
        out.append((keys[by_key], label[by_key]))
    return out


def stored_judges(query) -> set[str]:
    """Every judge with a verdict, each found by one seek in the (judge, fingerprint) index (a loose index
    scan): SELECT DISTINCT judge reads the whole index, 0.1 s at paper scale."""
    found: list[str] = []
    while True:
        after = " WHERE judge > ?" if found else ""
        judge = query(f"SELECT MIN(judge) FROM verdicts{after}", found[-1:])[0][0]
        if judge is None:
            return set(found)
        found.append(judge)


def count_votes(batches: list[tuple[np.ndarray, np.ndarray]], keys: np.ndarray) -> np.ndarray:
    """(n, 3) int32: each response's count of safe, harmful and unparsed verdicts in ``batches``."""
    counts = np.zeros(len(keys) * 4, np.int64)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    for wanted, label in batches:
        if not len(sorted_keys):
            break
        at = np.searchsorted(sorted_keys, wanted)
        at[at == len(sorted_keys)] = 0
        hit = sorted_keys[at] == wanted
        counts += np.bincount(order[at[hit]] * 4 + label[hit], minlength=len(counts))
    return counts.reshape(-1, 4)[:, :3].astype(np.int32)


def _hex_only(query, lo: int, hi: int, filter_sql: str, filter_args: list) -> tuple[np.ndarray, np.ndarray]:
    """The batch's verdicts whose response id is 16 hex digits (the only ones that can match), row by row."""
    rows = query(f"SELECT response_id, {LABEL_DIGIT} FROM verdicts WHERE rowid BETWEEN ? AND ?"
                 f"{filter_sql} AND length(response_id) = {ID_LENGTH}", [lo, hi, *filter_args])
    keys, labels = [], []
    for response_id, digit in rows:
        key = hex_keys(response_id.encode("utf-8")) if "," not in response_id else None
        if key is not None and len(key) == 1:
            keys.append(key[0])
            labels.append(int(digit))
    return np.array(keys, dtype=np.uint64), np.array(labels, dtype=np.int64)
