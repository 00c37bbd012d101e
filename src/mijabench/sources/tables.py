"""Read tabular inputs (JSONL, CSV/TSV, Parquet, a `datasets.Dataset`, a list of dicts) as numbered rows.

Every reader yields ``(row, dict)`` pairs where ``row`` is the 1-based data row a person would look for:
the line number in a JSONL file, the record number under the header in a CSV file, the position in a
Parquet file or dataset. Problems surface as ``InputError`` naming the file and row, never as a traceback.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES

Row = tuple[int, dict[str, Any]]


@dataclass
class RowSource:
    """Rows of one input plus what is known before reading them: its name and its columns."""

    origin: str
    columns: list[str]
    rows: Iterable[Row]
    # the whole input as one Arrow table (Parquet; JSONL and CSV when the table is exactly the rows, else
    # None), for readers that work by column
    arrow: Callable[[], Any] | None = None


def open_table(path: str | Path) -> RowSource:
    """Open a local JSONL, CSV/TSV or Parquet file. Raises InputError for a missing, empty or unknown file."""
    path = Path(path)
    origin = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(f"unknown file type '{path.suffix or '(none)'}' "
                         f"(supported: {', '.join(SUPPORTED_SUFFIXES)})", file=origin)
    if not path.is_file():
        raise InputError("no such file", file=origin)
    if suffix in JSONL_SUFFIXES:
        source = _with_columns(origin, _jsonl_rows(path))
        source.arrow = lambda: _jsonl_table(path, source.columns)
        return source
    if suffix in CSV_SUFFIXES:
        delimiter = "\t" if suffix == ".tsv" else ","
        source = _with_columns(origin, _csv_rows(path, delimiter))
        source.arrow = lambda: _csv_table(path, source.columns, delimiter)
        return source
    return RowSource(origin, _parquet_columns(path), _parquet_rows(path), lambda: _parquet_table(path))


def rows_of(data: Any, origin: str) -> RowSource:
    """Number the rows of a `datasets.Dataset` (or anything iterable over dicts) the same way files are."""
    columns = list(getattr(data, "column_names", None) or [])
    if columns and hasattr(data, "__len__") and len(data) == 0:
        raise InputError("is empty (no data rows)", file=origin)
    rows = ((n, dict(r)) for n, r in enumerate(data, start=1))
    if columns:
        return RowSource(origin, columns, rows, _dataset_table(data))
    return _with_columns(origin, rows)


def _dataset_table(data: Any) -> Callable[[], Any] | None:
    """A `datasets.Dataset`'s rows as one Arrow table (its own, in row order), when every feature is a plain
    value: a decoded feature (an image, a sound) reads differently row by row, and is left to the rows."""
    features = getattr(data, "features", None)
    if not hasattr(data, "with_format") or not features:
        return None
    from datasets import Value  # loaded already: ``data`` is a Dataset

    if not all(isinstance(f, Value) for f in features.values()):
        return None
    return lambda: data.with_format("arrow")[:]


def _with_columns(origin: str, rows: Iterator[Row]) -> RowSource:
    """Peek at the first row to learn the columns (and to report an empty input at once)."""
    first = next(rows, None)
    if first is None:
        raise InputError("is empty (no data rows)", file=origin)
    return RowSource(origin, list(first[1]), itertools.chain([first], rows))


def clean_value(value: Any) -> Any:
    """NaN (Parquet, pandas) becomes None so it is stored as JSON null rather than an invalid token."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# -- JSONL -------------------------------------------------------------------------------------------------
def _jsonl_rows(path: Path) -> Iterator[Row]:
    origin = str(path)
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"bytes that are not UTF-8 at byte {exc.start} of the line",
                                 file=origin, row=line_no) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON ({exc.msg} at column {exc.colno})",
                                 file=origin, row=line_no) from None
            if not isinstance(obj, dict):
                raise InputError(f"expected a JSON object, found {type(obj).__name__}",
                                 file=origin, row=line_no)
            yield line_no, obj


JSONL_MARK = b"mijabench.jsonl"  # schema metadata of a table read from JSONL
ARROW_BLOCK = 16 * 2**20  # bytes Arrow parses at a time: a longer line or record leaves the file to rows
_LINE_SCAN = 2**22


def _jsonl_table(path: Path, columns: list[str]):
    """The JSONL file as one Arrow table, or None where that table could differ from what ``_jsonl_rows``
    yields: a blank line (row numbers would shift), a key the first line lacks, a value Arrow would change
    (numbers that mix ints and floats become floats, text that looks like a date becomes a timestamp, objects
    get every key of every row), or anything Arrow cannot parse. Only text, whole numbers, booleans and nulls
    pass, and they come back from Arrow as ``json.loads`` gives them."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(path, read_options=pj.ReadOptions(block_size=ARROW_BLOCK))
    except (pa.ArrowException, OSError):
        return None
    plain = (pa.types.is_string, pa.types.is_large_string, pa.types.is_int64, pa.types.is_boolean,
             pa.types.is_null)
    if table.column_names != columns or not all(any(t(f.type) for t in plain) for f in table.schema):
        return None
    if table.num_rows != _line_count(path):
        return None
    return table.replace_schema_metadata({JSONL_MARK: b"1"})  # a null may be a key the line lacks


def _line_count(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(_LINE_SCAN):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


# -- CSV ---------------------------------------------------------------------------------------------------
class _Position:
    """Shared between the line decoder and the record loop, so a decoding error can name its record."""

    header_read = False
    records = 0


def _decoded_lines(fh, origin: str, pos: _Position) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    for raw in fh:
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as exc:
            # the bad line belongs to the record being read: the header, or the data row after the last one
            where = {"row": pos.records + 1} if pos.header_read else {"field": "(header)"}
            raise InputError(f"bytes that are not UTF-8 at byte {exc.start} of the line",
                             file=origin, **where) from None


def _csv_rows(path: Path, delimiter: str) -> Iterator[Row]:
    origin = str(path)
    pos = _Position()
    with open(path, "rb") as fh:
        reader = csv.reader(_decoded_lines(fh, origin, pos), delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return
            pos.header_read = True
            header = [h.strip() for h in header]
            for record in reader:
                pos.records += 1
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    raise InputError(f"expected {len(header)} fields as in the header, found {len(record)}",
                                     file=origin, row=pos.records)
                yield pos.records, dict(zip(header, record, strict=True))
        except csv.Error as exc:
            raise InputError(f"malformed CSV ({exc})", file=origin, row=pos.records + 1) from None


# Python's str.isspace characters, for a record the row reader would skip as blank
_BLANK = r"^[\s\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]*$"


def _csv_table(path: Path, columns: list[str], delimiter: str):
    """The CSV file as one Arrow table of text columns, or None where it could differ from what
    ``_csv_rows`` yields: a header Arrow could split otherwise (a repeated name, a line break in a name), a
    blank record (the row reader skips it, so record numbers would shift), or anything Arrow cannot parse
    (an unclosed quote, a short record: the row reader names it). Both read RFC 4180 quoting the same way,
    doubled quotes and line breaks inside quotes included."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    if len(set(columns)) != len(columns) or any("\n" in c or "\r" in c for c in columns):
        return None
    names = [f"c{i}" for i in range(len(columns))]
    try:
        table = pcsv.read_csv(
            path, read_options=pcsv.ReadOptions(skip_rows=1, column_names=names, block_size=ARROW_BLOCK),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                            ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowException, OSError):
        return None
    if table.num_rows:
        blank = None
        for column in table.columns:
            empty = pc.match_substring_regex(column, _BLANK)
            blank = empty if blank is None else pc.and_(blank, empty)
        if pc.any(blank).as_py():
            return None
    return table.rename_columns(columns)


# -- Parquet -----------------------------------------------------------------------------------------------
def _parquet_columns(path: Path) -> list[str]:
    """The columns as the file's footer declares them: no data page is decoded (a reader that works by
    column reads the whole table next, and never touches the rows). An empty file is refused here, as a
    text file is on its first row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    origin = str(path)
    try:  # the footer holds both the schema (what pq.read_schema returns) and the row count: one read
        footer = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", file=origin) from None
    if footer.num_rows == 0:
        raise InputError("is empty (no data rows)", file=origin)
    return footer.schema.to_arrow_schema().names


def _parquet_table(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    origin = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", file=origin) from None
    row_no = 0
    batches = parquet.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:  # a damaged page further into the file
            raise InputError(f"unreadable Parquet data ({exc})", file=origin, row=row_no + 1) from None
        if batch is None:
            return
        # column by column: a NaN can only sit in a float column, so only those pass through clean_value
        # (per cell, row dicts cost most of the reading at paper scale)
        names = batch.schema.names
        columns = [[clean_value(v) for v in col.to_pylist()] if pa.types.is_floating(col.type)
                   else col.to_pylist() for col in batch.columns]
        for values in zip(*columns, strict=True):
            row_no += 1
            yield row_no, dict(zip(names, values, strict=True))
