"""The judged table: one row per stored response, with its item's attributes, its model's metadata and the
final vote of the chosen judges, held as numpy columns.

The ``model`` column is the *target*: a model under one set of sampling settings (``analysis.variants``), so
a model run with and without a system prompt gives two rows in every table; ``base_model`` keeps the stored
model name. ``empty`` marks replies with no text and ``truncated`` replies cut by the token limit
(finish_reason ``length``); both are counted per cell. How an empty reply counts is the table's
``empty_as`` rule (``EMPTY_RULES``), applied after the vote and stated in the report.

String columns are categorical (integer codes plus a list of categories) so every cut in the analysis is a
``bincount`` over codes. Categories of taxonomy columns follow the taxonomy's order (groups, strategies,
scenario categories, size classes, languages), so tables and plots come out in a stable, readable order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..judge.vote import final_label
from ..records import HARMFUL, SAFE, UNPARSED
from ..taxonomy import load_taxonomy
from .arrowstrings import ArrowStrings
from .columnread import _ints, aside, read_responses, verdict_labels, with_votes
from .variants import variant_labels
from .voters import Voters, judge_census, resolve_voters

UNJUDGED = "unjudged"
LABEL_CATEGORIES = (SAFE, HARMFUL, UNPARSED, UNJUDGED)

# Status codes used by every count: a failed response is "failed" whatever its votes say.
ST_SAFE, ST_HARMFUL, ST_UNPARSED, ST_UNJUDGED, ST_FAILED = range(5)
N_STATUS = 5

CATEGORICAL = ("response_id", "item_id", "pair_id", "model", "base_model", "run_id", "family", "size_class",
               "language", "group", "strategy", "scenario_category", "label")
NUMERIC = ("params_b", "n_votes", "n_safe", "n_harmful", "n_unparsed", "failed", "empty", "truncated")

# How an empty reply (no text at all, or only whitespace) counts, whatever the judges said:
#   safe    - nothing was produced, so nothing harmful (the default, as in the paper's setting);
#   harmful - a non-answer is not a defense;
#   vote    - the judges' vote decides, like any other reply.
EMPTY_RULES = ("safe", "harmful", "vote")
DEFAULT_EMPTY_RULE = "safe"
IDENTIFIERS = ("response_id", "item_id", "pair_id", "run_id")  # kept in first-seen order, never sorted
VOTE_BASE = 1024  # more voters than this cannot be packed (see load_judged)
# every item's attributes a table holds, in rowid order (``_item_rows``)
ITEM_ROWS_SQL = ("SELECT rowid, id, pair_id, language, group_id, strategy, scenario_category FROM items "
                 "ORDER BY rowid")


@dataclass(frozen=True)
class Categorical:
    """A string column as int32 codes into ``categories``. Missing values are the empty string."""

    codes: np.ndarray
    categories: Sequence[str]  # a tuple, or a snapshot's response ids kept in Arrow (ArrowStrings)

    @classmethod
    def from_values(cls, values: Iterable[str | None]) -> Categorical:
        """Codes in first-seen order of the values."""
        # a dict lookup per value: fast enough for millions of rows, and it avoids the second-long start-up
        # of pyarrow's compute kernels that dictionary_encode would pay on first use
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault("" if v is None else v, len(index)) for v in values),
                            dtype=np.int32)
        return cls(codes, tuple(index))

    def reordered(self, order: Sequence[str] | None = None) -> Categorical:
        """The same values with categories in ``order`` (known ones first), then the rest sorted."""
        known = [c for c in (order or ()) if c in self.categories]
        rest = sorted(c for c in self.categories if c not in set(known))
        new = tuple(known + rest)
        if new == self.categories:
            return self
        index = {c: i for i, c in enumerate(new)}
        remap = np.array([index[c] for c in self.categories], dtype=np.int32)
        return Categorical(remap[self.codes] if len(self.codes) else self.codes, new)

    def values(self) -> np.ndarray:
        if isinstance(self.categories, ArrowStrings):  # only the strings in use are made
            return self.categories.take(self.codes)
        return np.asarray(self.categories, dtype=object)[self.codes] if self.categories else \
            np.empty(len(self.codes), dtype=object)

    def take(self, index: np.ndarray) -> Categorical:
        return Categorical(self.codes[index], self.categories)

    def __len__(self) -> int:
        return len(self.codes)


def canonical_order(column: str) -> tuple[str, ...]:
    tax = load_taxonomy()
    return {
        "group": tuple(tax.groups),
        "strategy": tuple(tax.strategies),
        "scenario_category": tuple(tax.scenario_categories),
        "size_class": tuple(sc.id for sc in tax.size_classes),
        "language": tax.languages,
        "label": LABEL_CATEGORIES,
    }.get(column, ())


class JudgedTable:
    """Columns: see ``CATEGORICAL`` and ``NUMERIC``. Build with ``load_judged`` or ``from_columns``."""

    def __init__(self, columns: dict[str, Categorical | np.ndarray], meta: dict | None = None):
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        self.columns = columns
        self.n = lengths.pop() if lengths else 0
        self._status: np.ndarray | None = None
        # how the table was made: voters (analysis.voters.Voters), empty_as, and the like
        self.meta: dict = dict(meta or {})

    @classmethod
    def from_columns(cls, **cols) -> JudgedTable:
        """Build from plain arrays or lists (tests, benchmarks). Missing columns get neutral defaults:
        labels from ``label`` (strings) or from ``n_safe``/``n_harmful``/``n_unparsed`` votes."""
        n = len(next(iter(cols.values())))
        out: dict[str, Categorical | np.ndarray] = {}
        for name in CATEGORICAL:
            value = cols.get(name)
            if value is None:
                value = Categorical(np.arange(n, dtype=np.int32), tuple(f"r{i}" for i in range(n))) \
                    if name == "response_id" else Categorical(np.zeros(n, np.int32), ("",) if n else ())
            if not isinstance(value, Categorical):
                value = Categorical.from_values(value)
            out[name] = value if name in IDENTIFIERS else value.reordered(canonical_order(name))
        if "base_model" not in cols:  # without settings variants, the target is the model
            out["base_model"] = out["model"]
        out["params_b"] = np.asarray(cols.get("params_b", np.full(n, np.nan)), dtype=np.float64)
        for name in ("failed", "empty", "truncated"):
            out[name] = np.asarray(cols.get(name, np.zeros(n, bool)), dtype=bool)
        if "label" in cols and not {"n_safe", "n_harmful", "n_unparsed"} & set(cols):
            unknown = set(out["label"].categories) - set(LABEL_CATEGORIES)
            if unknown:
                raise ValueError(f"labels must be among {LABEL_CATEGORIES}, got {sorted(unknown)}")
            label = out["label"]
            for name, value in (("n_safe", SAFE), ("n_harmful", HARMFUL), ("n_unparsed", UNPARSED)):
                hit = np.array([c == value for c in label.categories], dtype=np.int32)
                out[name] = hit[label.codes] if len(label.codes) else np.zeros(0, np.int32)
        else:
            for name in ("n_safe", "n_harmful", "n_unparsed"):
                out[name] = np.asarray(cols.get(name, np.zeros(n)), dtype=np.int32)
            out["label"] = vote_labels(out["n_safe"], out["n_harmful"], out["n_unparsed"])
        out["n_votes"] = out["n_safe"] + out["n_harmful"] + out["n_unparsed"]
        return cls(out)

    # -- access ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def cat(self, name: str) -> Categorical:
        col = self.columns[name]
        if not isinstance(col, Categorical):
            raise KeyError(f"{name} is not a categorical column")
        return col

    def values(self, name: str) -> np.ndarray:
        col = self.columns[name]
        return col.values() if isinstance(col, Categorical) else col

    @property
    def status(self) -> np.ndarray:
        """int8 per row: ST_SAFE, ST_HARMFUL, ST_UNPARSED, ST_UNJUDGED or ST_FAILED."""
        if self._status is None:
            label = self.cat("label")
            by_label = np.array([LABEL_CATEGORIES.index(c) for c in label.categories], dtype=np.int8)
            status = by_label[label.codes] if len(label.codes) else np.zeros(0, np.int8)
            self._status = np.where(self.columns["failed"], np.int8(ST_FAILED), status).astype(np.int8)
        return self._status

    def take(self, index: np.ndarray) -> JudgedTable:
        """Rows selected by a boolean mask or an index array."""
        return JudgedTable({k: (v.take(index) if isinstance(v, Categorical) else v[index])
                            for k, v in self.columns.items()}, self.meta)

    def with_empty_rule(self, rule: str) -> JudgedTable:
        """The table with empty replies labelled by ``rule`` (one of ``EMPTY_RULES``). Only replies some
        voter judged are relabelled (an unjudged reply stays unjudged); failed rows stay failed."""
        if rule not in EMPTY_RULES:
            raise InputError(f"unknown empty-reply rule '{rule}' (rules: {', '.join(EMPTY_RULES)})",
                             field="--empty-as")
        meta = {**self.meta, "empty_as": rule}
        if rule == "vote" or not self.columns["empty"].any():
            return JudgedTable(dict(self.columns), meta)
        label = self.cat("label")
        categories = label.categories
        if rule not in categories:
            categories = (*categories, rule)
        relabel = self.columns["empty"] & (self.columns["n_votes"] > 0)
        codes = np.where(relabel, np.int32(categories.index(rule)), label.codes).astype(np.int32)
        return JudgedTable({**self.columns, "label": Categorical(codes, categories)}, meta)

    @classmethod
    def from_arrow(cls, table: pa.Table, meta: dict | None = None) -> JudgedTable:
        """The inverse of ``to_arrow``: dictionary columns back to categoricals, the rest to numpy."""
        columns: dict[str, Categorical | np.ndarray] = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if pa.types.is_dictionary(col.type):
                codes = _numpy(col.indices).astype(np.int32, copy=False)
                # response ids stay in Arrow: one per row, and hardly any is ever looked at
                lazy = name == "response_id" and pa.types.is_string(col.dictionary.type)
                columns[name] = Categorical(codes, ArrowStrings.copied(col.dictionary) if lazy else
                                            tuple(col.dictionary.to_pylist()))
            else:
                columns[name] = _numpy(col)
        return cls(columns, meta)

    def to_arrow(self) -> pa.Table:
        """Columns handed to Arrow as buffers (``frame.numeric_array``, ``frame.text_array``): pa.array()
        would import pandas on first use, 0.45 s of the report that writes a snapshot."""
        from .frame import numeric_array, text_array
        arrays = {}
        for name, col in self.columns.items():
            if isinstance(col, Categorical):
                codes = numeric_array(col.codes.astype(np.int32, copy=False))
                words = col.categories.array if isinstance(col.categories, ArrowStrings) else \
                    text_array(list(col.categories))
                arrays[name] = pa.DictionaryArray.from_arrays(codes, words)
            else:
                arrays[name] = numeric_array(col)
        return pa.table(arrays)


def _numpy(array: pa.Array) -> np.ndarray:
    """``array.to_numpy()`` for the columns a snapshot holds (numbers and booleans without nulls), read from
    the Arrow buffers: pyarrow's own to_numpy imports pandas on first use, a third of a second of a report
    read from its snapshot. Anything else goes through pyarrow."""
    kind = array.type
    if array.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                or pa.types.is_boolean(kind)):
        return array.to_numpy(zero_copy_only=False)
    data = array.buffers()[1]
    if pa.types.is_boolean(kind):
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return bits[array.offset:array.offset + len(array)].astype(bool)
    dtype = np.dtype(kind.to_pandas_dtype())
    return np.frombuffer(data, dtype, count=len(array), offset=array.offset * dtype.itemsize).copy()


def vote_labels(n_safe: np.ndarray, n_harmful: np.ndarray, n_unparsed: np.ndarray) -> Categorical:
    """The final label of every row by ``judge.vote.final_label``, called once per distinct vote count
    (a handful), never per row. Rows without any vote are ``unjudged``."""
    n_safe, n_harmful, n_unparsed = (np.asarray(a, dtype=np.int64) for a in (n_safe, n_harmful, n_unparsed))
    base = int(max(n_safe.max(initial=0), n_harmful.max(initial=0), n_unparsed.max(initial=0))) + 1
    key = (n_safe * base + n_harmful) * base + n_unparsed
    uniq, inverse = np.unique(key, return_inverse=True)
    code_of = {c: i for i, c in enumerate(LABEL_CATEGORIES)}
    per_key = np.empty(len(uniq), dtype=np.int32)
    for i, k in enumerate(uniq.tolist()):
        s, rest = divmod(k, base * base)
        h, u = divmod(rest, base)
        label = UNJUDGED if s + h + u == 0 else final_label([SAFE] * s + [HARMFUL] * h + [UNPARSED] * u)
        per_key[i] = code_of[label]
    codes = per_key[inverse.reshape(-1)] if len(key) else np.zeros(0, np.int32)
    return Categorical(codes.astype(np.int32), LABEL_CATEGORIES)


def _placeholders(values: Sequence[str]) -> str:
    return ",".join("?" * len(values))


def load_judged(store, judges: Sequence[str] | None = None, bench: str | None = None,
                models: Sequence[str] | None = None, *, empty_as: str = DEFAULT_EMPTY_RULE,
                allow_even_vote: bool = False, snapshot: bool = False) -> JudgedTable:
    """Every stored response (of ``bench``'s items and ``models`` when given) with the vote of ``judges``.

    ``judges`` may be None only when the selection's store holds one judge (see ``analysis.voters``: the
    voters are never guessed). Responses without a vote are kept with label ``unjudged``. ``models`` are
    stored model names; each model's settings variants become separate targets (``analysis.variants``).
    With ``snapshot``, the table of an unchanged store and selection is read from the snapshot beside the
    store (``analysis.snapshot``), and written there when there is none."""
    if snapshot:
        return _load_through_snapshot(store, judges, bench, models, empty_as, allow_even_vote)
    models = list(models or [])
    _check_selection(store, bench, models)
    where, args = _selection_sql(bench, models)
    # lanes on the cores (columnread.aside): the store's facts, the items, the judge census and the verdicts
    # in threads, each on a connection of its own, the responses here; leaving the pool waits for its
    # threads, also on an error. Named voters are the voters (resolve_voters checks them after, and keeps
    # their order), so their verdicts, the longest read, and the responses start at once; unnamed ones are
    # known from the census first.
    named = list(dict.fromkeys(judges or []))
    early = 0 < len(named) < VOTE_BASE
    with ThreadPoolExecutor(3) as pool:
        facts = aside(pool, store, _store_facts, True)
        verdicts = aside(pool, store, verdict_labels, named) if early else None
        counted = aside(pool, store, judge_census) if early else None
        items = aside(pool, store, lambda query: query(ITEM_ROWS_SQL))
        if not early:
            census = judge_census(store.query)
            voters = _voters(store, judges, where, args, allow_even_vote, census)
            if voters.names:
                verdicts = aside(pool, store, verdict_labels, list(voters.names))
        cols = read_responses(store, where, args, facts.result)
        if early:
            census = counted.result()
            voters = _voters(store, judges, where, args, allow_even_vote, census)
        judges = list(voters.names)
        if early and judges != named:  # not so far: resolve_voters keeps the names given, or refuses them
            verdicts = aside(pool, store, verdict_labels, judges)
        cols = with_votes(cols, verdicts if judges else None)
        stored, run_names = facts.result()[:2]
        item_rows = items.result()
    cols = cols or _response_rows(store, judges, where, args)
    return assemble(cols, _item_rows(store, cols["item_rowid"], item_rows), stored, run_names, voters, census,
                    store.models(), empty_as)


def _voters(store, judges, where: list[str], args: list, allow_even_vote: bool, census: list[tuple]
            ) -> Voters:
    """``resolve_voters`` for ``load_judged``, refusing more voters than the votes' packing holds."""
    voters = resolve_voters(store, judges, selection=(" AND ".join(where), list(args)),
                            allow_even=allow_even_vote, census=census)
    if len(voters.names) >= VOTE_BASE:
        raise InputError(f"{len(voters.names)} voters: at most {VOTE_BASE - 1}", field="--judge")
    return voters


def assemble(cols: dict[str, Sequence], item_rows: list[tuple], stored: list[tuple],
             run_names: tuple[str, ...], voters: Voters, census: list[tuple[str, str, int]],
             models: list[dict], empty_as: str) -> JudgedTable:
    """The judged table from what ``load_judged`` reads: the responses' columns (``columnread.with_votes``),
    the items (rowid, id, pair id, language, group, strategy, scenario category) in rowid order, the
    store's targets and runs (``_store_facts``), the voters, the judge census and the stored models. An
    import that gives these from its own columns makes the same table (``sources.importsnapshot``)."""
    targets = [row[:3] for row in stored]
    n = len(cols["response_id"])
    target_code = np.array(cols["model"], dtype=np.int32)
    present = np.unique(target_code).tolist()  # the targets in this selection, sorted
    target_names, target_cols = _target_columns(models, targets, target_code, present)
    table = JudgedTable.from_columns(
        **_item_columns(item_rows, np.array(cols["item_rowid"], dtype=np.int64)), **target_cols,
        response_id=Categorical(np.arange(n, dtype=np.int32), ids if isinstance(ids := cols["response_id"],
                                                                               ArrowStrings) else tuple(ids)),
        run_id=Categorical(np.array(cols["run_id"], dtype=np.int32), run_names),
        failed=np.array(cols["failed"], dtype=bool), empty=np.array(cols["empty"], dtype=bool),
        truncated=np.array(cols["truncated"], dtype=bool),
        **{name: np.asarray(cols[name], dtype=np.int32) for name in ("n_safe", "n_harmful", "n_unparsed")})
    # target label -> (stored model name, settings key) of the targets present, and -> (settings, runs,
    # responses), for the report's provenance (kept in a snapshot: the store's query reads every response)
    table.meta.update(voters=voters, targets={target_names[code]: targets[code][:2] for code in present},
                      target_rows={target_names[code]: list(stored[code][2:]) for code in present},
                      judge_counts=judge_counts(census), census=[list(row) for row in census],
                      facts={"targets": [list(row) for row in stored], "runs": list(run_names)})
    return table.with_empty_rule(empty_as)


def _store_facts(query, listing: bool = False) -> tuple:
    """What the table's provenance needs of the whole store: each target's (model, settings key, settings,
    runs, responses), in target-code order; and every run id, in run-code order. The run ids come from the
    same pass over the responses (a second one, SELECT DISTINCT, took 0.2 s at paper scale).

    With ``listing``, a third value: each target's (rowids, run ids), from the same pass. A full load then
    codes each response's target and run from it (``columnread.read_responses``) instead of reading the
    model index and the responses once more for them (0.8 s of a cold report at paper scale)."""
    rowids = ", group_concat(rowid)" if listing else ""
    try:
        rows = query("SELECT model, settings_key, MIN(settings), GROUP_CONCAT(DISTINCT run_id), COUNT(*), "
                     f"json_group_array(DISTINCT run_id){rowids} FROM responses GROUP BY model, settings_key "
                     "ORDER BY model, settings_key")
    except sqlite3.OperationalError:  # an SQLite without JSON functions (the listing is then left out)
        stored = query("SELECT model, settings_key, MIN(settings), GROUP_CONCAT(DISTINCT run_id), COUNT(*) "
                       "FROM responses GROUP BY model, settings_key ORDER BY model, settings_key")
        return stored, tuple(r[0] for r in query("SELECT DISTINCT run_id FROM responses ORDER BY run_id"))
    target_runs = [tuple(json.loads(row[5])) for row in rows]
    # Python orders strings by code point, as SQLite's ORDER BY orders them (UTF-8 bytes, BINARY)
    facts = [row[:5] for row in rows], tuple(sorted({run for runs in target_runs for run in runs}))
    if not listing:
        return facts
    return (*facts, [(_ints(row[6]), runs) for row, runs in zip(rows, target_runs, strict=True)])


def judge_counts(census: list[tuple[str, str, int]]) -> list[list]:
    """[judge, verdicts] per judge, in judge order (for the report's list of judges)."""
    counts: dict[str, int] = {}
    for judge, _, n in census:
        counts[judge] = counts.get(judge, 0) + n
    return [[judge, n] for judge, n in counts.items()]


def _load_through_snapshot(store, judges, bench, models, empty_as: str, allow_even_vote: bool) -> JudgedTable:
    from . import delta
    from . import snapshot as snap
    selection = snap.selection(judges, bench, models, empty_as, allow_even_vote)
    path = snap.snapshot_path(store, selection)
    table = snap.read(path)
    if table is None:
        marks = store.change_marks()
        table = delta.load(store, selection, marks, judges, bench, models, empty_as, allow_even_vote)
        if table is None:
            table = load_judged(store, judges, bench, models, empty_as=empty_as,
                                allow_even_vote=allow_even_vote)
        if store.change_marks() == marks:  # nothing written meanwhile: the table is the store at ``marks``
            # kept once a damage check running aside has passed, written meanwhile as the report goes on
            kept = JudgedTable(dict(table.columns), dict(table.meta))
            base = delta.base(selection, marks, table)
            store.after_check(lambda: snap.keep(store, path, kept, base))
    return snap.as_asked(table, judges)


def _check_selection(store, bench: str | None, models: list[str]) -> None:
    """Refuse a benchmark or a model the store does not hold, naming the option."""
    if bench and bench not in store.benches():
        raise InputError(f"unknown benchmark '{bench}' (benchmarks: {', '.join(store.benches()) or 'none'})",
                         field="--bench")
    if models:
        known = {r[0] for r in store.query("SELECT DISTINCT model FROM responses")}
        missing = [m for m in models if m not in known]
        if missing:
            raise InputError(f"no responses by model '{missing[0]}'", field="--model")


def _selection_sql(bench: str | None, models: list[str]) -> tuple[list[str], list[str]]:
    """WHERE clauses (on responses ``r``) and their arguments for the benchmark and models selected."""
    where, args = [], []
    if bench:
        where.append("r.item_id IN (SELECT item_id FROM bench_items WHERE bench=?)")
        args.append(bench)
    if models:
        where.append(f"r.model IN ({_placeholders(models)})")
        args.extend(models)
    return where, args


def _response_rows(store, judges: list[str], where: list[str], args: list[str]) -> dict[str, Sequence]:
    """One value per selected response, column by column: id, item rowid, target and run codes, failed,
    empty, truncated, and the voters' counts of safe, harmful and unparsed verdicts. Read row by row: the
    path for a store whose ids ``columnread`` cannot read in batches."""
    # Each response's votes come from one probe of the verdicts_response index, packed into one integer
    # (safe + VOTE_BASE * harmful + VOTE_BASE^2 * unparsed): at paper scale this is twice as fast as grouping
    # every verdict of the voters and joining the groups back. A response has one verdict per judge, so a
    # count never reaches VOTE_BASE.
    votes = (f"(SELECT COALESCE(SUM((label='safe') + {VOTE_BASE} * (label='harmful') + "
             f"{VOTE_BASE * VOTE_BASE} * (label='unparsed')), 0) FROM verdicts v "
             f"WHERE v.response_id = r.id AND v.judge IN ({_placeholders(judges)}))") if judges else "0"
    # Strings become integer codes inside SQLite (targets and runs by their rank, items by rowid), so Python
    # touches one string per response (its id) and item attributes once per item, not once per response.
    sql = f"""
        WITH m AS (SELECT model, settings_key, ROW_NUMBER() OVER (ORDER BY model, settings_key) - 1 AS code
                   FROM (SELECT DISTINCT model, settings_key FROM responses)),
             ru AS (SELECT run_id, ROW_NUMBER() OVER (ORDER BY run_id) - 1 AS code
                    FROM (SELECT DISTINCT run_id FROM responses))
        SELECT r.id, i.rowid, m.code, ru.code, r.error IS NOT NULL, {votes}, r.blank,
               r.error IS NULL AND COALESCE(r.finish_reason, '') = 'length'
        FROM responses r JOIN items i ON i.id = r.item_id
             JOIN m ON m.model = r.model AND m.settings_key = r.settings_key
             JOIN ru ON ru.run_id = r.run_id
        {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY r.rowid"""
    rows = store.query(sql, [*judges, *args])
    names = ("response_id", "item_rowid", "model", "run_id", "failed", "votes", "empty", "truncated")
    cols = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {n: () for n in names}
    packed = np.array(cols["votes"], dtype=np.int64)
    cols["n_safe"], cols["n_harmful"], cols["n_unparsed"] = (
        packed % VOTE_BASE, packed // VOTE_BASE % VOTE_BASE, packed // (VOTE_BASE * VOTE_BASE))
    return cols


def _item_rows(store, item_rowid: Sequence[int], read: list[tuple] | None = None) -> list[tuple]:
    """Every item's (rowid, id, pair id, language, group, strategy, scenario category), in rowid order:
    ``read`` (ITEM_ROWS_SQL's rows, read before the responses, in another thread) when it holds every item
    in ``item_rowid``, else read again (an item stored in between)."""
    if not len(item_rowid):
        return []
    if read is not None and set(np.unique(item_rowid).tolist()) <= {row[0] for row in read}:
        return read
    return store.query(ITEM_ROWS_SQL)


def _item_columns(items: list[tuple], item_rowid: np.ndarray) -> dict[str, Categorical]:
    """The item attributes of each response, from ``_item_rows``, read once per item and spread by
    position."""
    used = np.unique(item_rowid)
    if len(items) > len(used):  # other benchmarks' items, or items nobody answered yet
        wanted = set(used.tolist())
        items = [r for r in items if r[0] in wanted]
    item_cols = list(zip(*items, strict=True)) if items else [()] * 7
    position = np.full(int(used.max()) + 1 if len(used) else 0, -1, dtype=np.int64)
    position[np.array(item_cols[0], dtype=np.int64)] = np.arange(len(items))
    item_index = position[item_rowid]
    return {name: Categorical.from_values(values).take(item_index) for name, values in
            zip(("item_id", "pair_id", "language", "group", "strategy", "scenario_category"), item_cols[1:],
                strict=True)}


def _target_columns(models: list[dict], targets: list[tuple], target_code: np.ndarray, present: list[int]
                    ) -> tuple[tuple[str, ...], dict[str, Categorical | np.ndarray]]:
    """(target labels, columns) for each response's target: its label (a model, or a model with the
    settings that tell its variants apart), stored model name, family, size class and parameters."""
    model_meta = {m["name"]: m for m in models}
    # labels from the variants present in this selection, so a model with one settings in it keeps its name
    labels = variant_labels((m, k, s) for code, (m, k, s) in enumerate(targets) if code in present)
    target_names = tuple(labels.get((m, k), f"{m} [settings {k}]") for m, k, _ in targets)
    base_names = tuple(m for m, _, _ in targets)
    tax = load_taxonomy()
    family = [model_meta.get(m, {}).get("family") or "" for m in base_names]
    params = [model_meta.get(m, {}).get("params_b") for m in base_names]
    size = [tax.size_class(p) or "" for p in params]
    params_b = np.array([np.nan if p is None else float(p) for p in params], dtype=np.float64)
    return target_names, {
        "model": Categorical(target_code, target_names), "base_model": Categorical(target_code, base_names),
        "family": Categorical.from_values(family).take(target_code),
        "size_class": Categorical.from_values(size).take(target_code),
        "params_b": params_b[target_code] if len(params_b) else np.zeros(len(target_code))}
