"""A long-layout corpus that is one Arrow table (Parquet) read column by column, to the same records.

The row reader (``corpus.RowReader``) spends most of a paper-scale import in per-row Python, though a long
table repeats each prompt once per model and each label on nearly every row. Here every check and every
mapping runs once per distinct value: an item per distinct item cells (checked and hashed by the row reader's
own ``item``), a model per distinct name, a label per distinct (judge output, language). What stays per row
is the ids (one hash each) and the output lists, which the store writes without building records.

The result is that of the row reader, record for record, and the store is written in the same order (the
corpus's for responses, the ids' for verdicts; tests/test_import_columns.py compares them). Where this
reader meets anything it does not handle, or bad input, it gives up (returns None) and the caller reads the
rows one by one, which then names the first bad row exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..records import LABELS
from ..store.upsert import CodedColumn
from .digests import Deferred

if TYPE_CHECKING:
    from .corpus import RowReader


class GiveUp(Exception):
    """The table has something only the row reader handles (or reports): read it row by row."""


def read_columns(table: pa.Table, reader: RowReader) -> bool:
    """Fill ``reader.corpus`` from ``table``; False when the row reader must read it instead. A wide table
    is read as the long table of its (row, model) cells, in the order the row reader goes."""
    cols = reader.columns
    if cols.votes:
        return False
    per_row = 1
    if cols.layout == "wide":
        per_model = [*cols.responses.values(), *cols.wide_judges.values()]
        if not cols.responses or any(not _is_text(table.schema.field(n).type) for n in per_model):
            return False
        table, reader = _as_long(table, reader)
        per_row = len(cols.responses)
        cols = reader.columns
    names = [*reader.item_columns, cols.roles["model"], cols.roles["response"], *cols.judges.values()]
    if any(not _is_text(table.schema.field(n).type) for n in set(names)):
        return False
    try:
        _read(table, reader, per_row)
    except (GiveUp, InputError):
        return False
    return True


def _as_long(table: pa.Table, reader: RowReader) -> tuple[pa.Table, RowReader]:
    """A wide table as its long table, row by row and within a row model by model (the row reader's order),
    with a reader of that table that fills the same corpus. Item columns and extras are repeated per model;
    a model without a column for some judge gets nulls there (no verdict, as the row reader has it)."""
    from .corpus import RowReader
    from .corpuscols import CorpusColumns

    cols = reader.columns
    models = list(cols.responses)
    judges = list(dict.fromkeys(judge for judge, _ in cols.wide_judges))
    n, m = table.num_rows, len(models)
    per_model = set(cols.responses.values()) | set(cols.wide_judges.values())
    kept = [c for c in table.column_names if c not in per_model]

    def fresh(name: str) -> str:  # a column name the kept columns do not use
        while name in kept:
            name = "_" + name
        return name

    # cell (row r, model j) goes to position r * m + j; the per-model columns are concatenated model by model
    order = pa.array((np.arange(n)[:, None] + np.arange(m)[None, :] * n).reshape(-1))

    def interleaved(columns: list[pa.ChunkedArray | pa.Array]) -> pa.Array:
        return pa.concat_arrays([c.combine_chunks().cast(pa.large_string()) if isinstance(c, pa.ChunkedArray)
                                 else c for c in columns]).take(order)

    model_col, response_col = fresh("model"), fresh("jb_response")
    judge_cols = {judge: fresh(f"jb_cls_{judge}") for judge in judges}
    columns = {name: table.column(name).take(pa.array(np.repeat(np.arange(n), m))) for name in kept}
    columns[model_col] = pa.array(np.tile(np.array(models, dtype=object), n), pa.large_string())
    columns[response_col] = interleaved([table.column(cols.responses[model]) for model in models])
    for judge, name in judge_cols.items():
        columns[name] = interleaved([table.column(cols.wide_judges[(judge, model)])
                                     if (judge, model) in cols.wide_judges else pa.nulls(n, pa.large_string())
                                     for model in models])
    long_cols = CorpusColumns("long", {**cols.roles, "model": model_col, "response": response_col},
                              judges=judge_cols)
    return pa.table(columns), RowReader(reader.corpus, long_cols, reader.language, reader.judge_prefix,
                                        reader.run_id, reader.origin)


def _rows(column, kept: np.ndarray):
    """``column.take(kept)`` for ``kept``, row numbers in ascending order without repeats: the column itself
    when they are all of its rows (every row answered once), as they usually are. Arrow's take copies the
    strings: 1.2 s for the replies of 600k rows of about 120 words."""
    return column if len(kept) == len(column) else column.take(kept)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Each cell's index into the column's distinct values (None among them when there are nulls)."""
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _dense(key: np.ndarray) -> np.ndarray:
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def _read(table: pa.Table, reader: RowReader, per_row: int = 1) -> None:
    """``per_row``: rows of ``table`` per row of the file (a wide file's models), for the row numbers."""
    corpus, cols, origin = reader.corpus, reader.columns, reader.origin
    n = table.num_rows
    corpus.rows = n // per_row

    # items: one per distinct tuple of raw item cells, checked and built on its first row, as the row reader
    key = np.zeros(n, np.int64)
    for column in reader.item_columns:
        codes, values = _codes(table.column(column))
        key = _dense(key * len(values) + codes)
    _, first, cell_of_row = np.unique(key, return_index=True, return_inverse=True)
    cell_of_row = cell_of_row.reshape(-1)
    by_first = np.argsort(first)
    item_of_cell = np.empty(len(first), np.int64)
    index: dict[str, int] = {}
    item_ids: list[str] = []
    languages: dict[str, int] = {}
    language_of_item: list[int] = []
    for cell, row in zip(by_first.tolist(), table.take(first[by_first]).to_pylist(), strict=True):
        item = reader.item(row, {"file": origin, "row": int(first[cell]) // per_row + 1})
        if item.id not in index:
            index[item.id] = len(item_ids)
            item_ids.append(item.id)
            language_of_item.append(languages.setdefault(item.language, len(languages)))
            corpus.items[item.id] = item
        item_of_cell[cell] = index[item.id]
    item_of_row = item_of_cell[cell_of_row]
    language_names = list(languages)

    # models: each distinct cell checked (and stripped) once, on its first row
    model_column = cols.roles["model"]
    codes, values = _codes(table.column(model_column))
    firsts = np.unique(codes, return_index=True)[1]
    model_names: list[str] = []
    model_of_code = np.empty(len(values), np.int64)
    for code, value in enumerate(values):
        loc = {"file": origin, "row": int(firsts[code]) // per_row + 1}
        name = reader.text({model_column: value}, model_column, loc, required=True)
        model_of_code[code] = model_names.index(name) if name in model_names else len(model_names)
        if model_of_code[code] == len(model_names):
            model_names.append(name)
    model_of_row = model_of_code[codes]

    # responses: the first reply of each (item, model); a repeat must say the same, and adds nothing
    # in its chunks: combining them copied every reply (0.5 s at 600k rows of about 120 words)
    texts = table.column(cols.roles["response"])
    answered = np.flatnonzero(~np.asarray(texts.is_null().to_numpy(), bool))
    corpus.no_response = n - len(answered)
    pair = item_of_row[answered] * len(model_names) + model_of_row[answered]
    _, first_of_pair, pair_of = np.unique(pair, return_index=True, return_inverse=True)
    origin_row = answered[first_of_pair[pair_of.reshape(-1)]]
    repeats = np.flatnonzero(origin_row != answered)
    if len(repeats) and not pc.all(pc.equal(texts.take(answered[repeats]), texts.take(origin_row[repeats]))
                                   ).as_py():
        raise GiveUp("a second, different response")  # the row reader names the row
    kept = np.sort(answered[first_of_pair])
    r_items = np.array(item_ids, dtype=object)[item_of_row[kept]].tolist()
    r_models = np.array(model_names, dtype=object)[model_of_row[kept]].tolist()
    r_ids = reader.ids.responses(r_items, r_models)
    corpus.response_columns = {"id": r_ids, "item_id": r_items, "model": r_models,
                                "text": Texts(_rows(texts, kept))}

    # verdicts: each judge's distinct outputs read once per item language
    _verdicts(table, reader, kept, np.array(language_of_item, np.int64)[item_of_row[kept]], language_names,
              np.array(r_ids, dtype=object))


def _verdicts(table: pa.Table, reader: RowReader, kept: np.ndarray, language: np.ndarray,
              language_names: list[str], response_ids: np.ndarray) -> None:
    corpus, cols = reader.corpus, reader.columns
    # each column as codes into a list of its values (``coded``), per judge first: the verdicts' judge, label,
    # judge output and fingerprint repeat on nearly every row, and each one's response is a position
    parts: dict[str, list] = {k: [] for k in ("response", "judge", "label", "raw", "reasoning")}
    hashed: list[tuple[np.ndarray, str]] = []  # per judge: its verdicts (their responses' positions), name
    values_of: dict[str, list] = {"judge": [], "raw": [], "reasoning": [], "fingerprint": []}
    corpus.column_judges = {}
    for judge, column in cols.judges.items():
        codes, values = _codes(_rows(table.column(column), kept))
        key = codes * len(language_names) + language
        distinct, of_cell = np.unique(key, return_inverse=True)
        of_cell = of_cell.reshape(-1)
        labels, reasonings = np.empty(len(distinct), object), np.empty(len(distinct), object)
        for k, value in enumerate(distinct.tolist()):
            raw = values[value // len(language_names)]
            if raw is None or not raw.strip():
                continue  # no verdict, as in the row reader
            labels[k], reasonings[k] = reader.label(raw, language_names[value % len(language_names)])
        of_distinct = np.array([-1 if v is None else LABEL_CODE[v] for v in labels.tolist()], np.int64)
        label_code = of_distinct[of_cell]
        judged = np.flatnonzero(label_code >= 0)
        name = f"{reader.judge_prefix}{judge}"
        label_code = label_code[judged]
        unparsed = int(np.count_nonzero(label_code == LABEL_CODE["unparsed"]))
        if unparsed:
            corpus.unparsed[name] += unparsed
        fingerprint = reader.fingerprint(judge)
        if len(judged):
            corpus.column_judges[name] = fingerprint
        hashed.append((judged, name))
        parts["response"].append(judged)
        parts["judge"].append(np.full(len(judged), len(values_of["judge"]), np.int64))
        values_of["judge"].append(name)
        values_of["fingerprint"].append(fingerprint)
        parts["label"].append(label_code)
        parts["raw"].append(codes[judged] + len(values_of["raw"]))
        values_of["raw"].extend(values)
        parts["reasoning"].append(of_cell[judged] + len(values_of["reasoning"]))
        values_of["reasoning"].extend(reasonings.tolist())

    def ids_in_order() -> tuple[np.ndarray, np.ndarray]:
        """The verdict ids in id order (bytes: 16 a verdict, not a 65-byte string object; 1.8M at paper
        scale), and the order itself."""
        ids = np.concatenate([reader.ids.verdict_keys(response_ids[judged].tolist(), name)
                              for judged, name in hashed]) if hashed else np.zeros(0, "S16")
        by_id = id_order(ids)
        return ids[by_id], by_id

    def columns(ids: np.ndarray, by_id: np.ndarray) -> dict[str, Any]:
        joined = {name: np.concatenate(pieces)[by_id] if pieces else np.zeros(0, np.int64)
                  for name, pieces in parts.items()}
        return {"id": Ids(ids), "response_id": coded(joined["response"], response_ids),
                "judge": coded(joined["judge"], values_of["judge"]),
                "label": coded(joined["label"], LABEL_ORDER), "raw": coded(joined["raw"], values_of["raw"]),
                "reasoning": coded(joined["reasoning"], values_of["reasoning"]),
                "fingerprint": coded(joined["judge"], values_of["fingerprint"])}

    # every check is done: the ids are hashed in another process while the items and responses are written
    count = sum(len(judged) for judged, _ in hashed)
    corpus.verdict_columns = VerdictColumns(count, Deferred(ids_in_order, arrays=2, size=count), columns)


class VerdictColumns(Mapping):
    """The verdicts' columns in the order of their ids, built when first read, once the ids are hashed
    (``digests.Deferred``); ``count`` is known before."""

    def __init__(self, count: int, ids: Deferred, build: Callable[[np.ndarray, np.ndarray], dict]):
        self.count, self._ids, self._build = count, ids, build
        self._columns: dict[str, Any] | None = None

    def _built(self) -> dict[str, Any]:
        if self._columns is None:
            self._columns = self._build(*self._ids.result())
        return self._columns

    def __getitem__(self, name: str) -> Any:
        return self._built()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


LABEL_ORDER = tuple(LABELS)  # the labels a judge output reads as
LABEL_CODE = {label: i for i, label in enumerate(LABEL_ORDER)}


def coded(codes: np.ndarray, values) -> CodedColumn:
    """A column as integer codes into its values: a corpus then holds a small integer a row (often fewer
    bytes than the 8 of a reference), and no row holds its own copy of a value; nor does the SQL that
    writes it, when it has few values (``store.upsert.coded_columns``)."""
    return CodedColumn(codes.astype(_code_type(len(values)), copy=False),
                       values if isinstance(values, np.ndarray) else np.array(values, dtype=object))


class Texts:
    """Strings kept in their Arrow column; a slice comes back as a list of Python strings, made then: all at
    once, the replies of 600k rows of about 120 words were 500 MB of them for the whole import."""

    def __init__(self, column: pa.Array | pa.ChunkedArray):
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, index: slice) -> list[str | None]:
        start, stop, step = index.indices(len(self.column))
        part = self.column.slice(start, max(0, stop - start)).to_pylist()
        return part if step == 1 else part[::step]

    def __iter__(self) -> Iterator[str | None]:
        for chunk in getattr(self.column, "chunks", [self.column]):
            yield from chunk.to_pylist()


class Ids:
    """Ids kept as bytes (ASCII hex); a slice comes back as a list of strings."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: slice) -> list[str]:
        return self.ids[index].astype(str).tolist()


def _code_type(n: int):
    return np.int8 if n <= 127 else np.int16 if n <= 32767 else np.int32


def id_order(ids: np.ndarray) -> np.ndarray:
    """The positions of ``ids`` in id order. An import writes verdicts in the order of their ids, the key
    of their table's primary-key index: its B-tree then grows at one end, where in the order of a corpus
    (random hashes) every page of it is touched again and again. Responses keep the corpus's order: the
    reads that go model by model or item by item (a cold report, the judge's selection) find them together,
    and there are three times fewer of them."""
    if not len(ids):
        return np.zeros(0, np.int64)
    try:  # hex ids: bytes sort faster than text, in the same order for ASCII
        keys = ids.astype(bytes)
    except UnicodeEncodeError:
        keys = ids.astype(str)
    return np.argsort(keys, kind="stable")

