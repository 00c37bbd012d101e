"""Rows written many to a statement: the upserts of the store's writes, and the SQL of a write by columns
(values the same in every row as literals, columns with few values coded, the rest bound)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from .secrets import scrub_text

# rows per INSERT statement of the upserts below: SQLite steps one statement per row of ``executemany``,
# which at paper scale cost more than storing the rows (1.8M verdicts: about 9 s one per statement, 5.5 s 32
# per statement); well under SQLite's limit of 32,766 parameters
ROWS_PER_INSERT = 32


# A column of a write by columns with at most this many distinct values in a batch (a judge, a label, a model)
# is written as a CASE on one integer per row that codes all such columns together. Binding each value was a
# third of a paper-scale import's writing: 1.8M verdicts took 5.1 to 5.3 s with every value bound, 3.3 to
# 3.8 s with judge, label and fingerprint coded.
CODED_VALUES = 32


def upsert(cur: sqlite3.Cursor, table: str, fields: tuple[str, ...], conflict: str, literals: dict[str, str],
           rows: Iterable[tuple], coded: dict[str, tuple[int, int, str]] | None = None) -> int:
    """Upsert ``rows`` (each one value per field of ``fields`` that has no entry in ``literals`` or
    ``coded``, in order, then the row's code when ``coded`` has entries), ``ROWS_PER_INSERT`` rows to a
    statement. ``coded``: field -> (divisor, count, its CASE's "WHEN i THEN literal" list): the field's value
    is the one of ``(code / divisor) % count``. Within a statement SQLite inserts row after row, each meeting
    the conflict clause as it would in a statement of its own, so the result is that of one per row."""
    coded = coded or {}
    bound = [f for f in fields if f not in literals and f not in coded]
    width = len(bound) + bool(coded)

    def row(k: int) -> str:
        place = {f: f"?{k * width + i + 1}" for i, f in enumerate(bound)}
        code = f"?{k * width + width}"
        return "(" + ",".join(literals[f] if f in literals else place[f] if f in place else
                              f"CASE ({code} / {coded[f][0]}) % {coded[f][1]} {coded[f][2]} END"
                              for f in fields) + ")"

    head = f"INSERT INTO {table} ({', '.join(fields)}) VALUES "
    values = list(chain.from_iterable(rows))
    n = len(values) // width
    whole = n - n % ROWS_PER_INSERT
    step = width * ROWS_PER_INSERT
    cur.executemany(f"{head}{','.join(map(row, range(ROWS_PER_INSERT)))} {conflict}",
                    (values[k:k + step] for k in range(0, whole * width, step)))
    if n > whole:
        cur.execute(f"{head}{','.join(map(row, range(n - whole)))} {conflict}", values[whole * width:])
    return n


def sql_literals(conn: sqlite3.Connection, values: dict[str, Any]) -> dict[str, str]:
    """Each value as an SQL literal, made by SQLite's own quote(); text, integers and NULL only (a REAL
    would be rounded), and no text with a NUL character (that ends the statement): those stay bound."""
    return {name: conn.execute("SELECT quote(?)", (value,)).fetchone()[0]
            for name, value in values.items()
            if value is None or type(value) is int or (type(value) is str and "\x00" not in value)}


def coded_columns(conn: sqlite3.Connection, given: dict[str, list | CodedColumn], names: tuple[str, ...],
                  literals: dict[str, str]) -> tuple[dict[str, tuple[int, int, str]], list[int]]:
    """``upsert``'s ``coded`` for the columns of ``names`` with at most ``CODED_VALUES`` distinct values,
    each one a literal (``sql_literals``), and each row's code; a column of one value becomes a literal
    (added to ``literals``). Other columns stay bound (a CodedColumn as the list of its values)."""
    import numpy as np

    coded: dict[str, tuple[int, int, str]] = {}
    code = None
    divisor = 1
    for name in names:
        column = given[name]
        values = _categories(column)
        if not values or divisor * len(values) > 2 ** 40:
            continue
        quoted = sql_literals(conn, dict(enumerate(values)))
        if len(quoted) < len(values):  # a value SQL cannot hold as a literal (NUL): bound
            continue
        if len(values) == 1:
            literals[name] = quoted[0]
            continue
        codes = np.asarray(column.codes, np.int64) if isinstance(column, CodedColumn) else np.fromiter(
            map({value: i for i, value in enumerate(values)}.__getitem__, column), np.int64, len(column))
        code = codes * divisor if code is None else code + codes * divisor
        cases = " ".join(f"WHEN {i} THEN {quoted[i]}" for i in range(len(values)))
        coded[name] = (divisor, len(values), cases)
        divisor *= len(values)
    for name, column in given.items():  # the coded columns left bound: their values, row by row
        if isinstance(column, CodedColumn) and name not in coded and name not in literals:
            given[name] = column.tolist()
    return coded, code.tolist() if code is not None else []


def _categories(column: list | CodedColumn) -> list | None:
    """The distinct values of a column (a CodedColumn's own list), or None when it has none or more than
    ``CODED_VALUES`` of them (a look at its first rows first: a column of replies is not gone through)."""
    if not len(column):
        return None
    if isinstance(column, CodedColumn):
        values = list(column.values)
    elif len(dict.fromkeys(column[:1000])) > CODED_VALUES:
        return None
    else:
        values = list(dict.fromkeys(column))
    return values if len(values) <= CODED_VALUES else None


class CodedColumn:
    """A column of a write by columns given as integer codes into its values (an importer keeps its
    repeated columns so): the store codes it into its SQL without a Python value per row
    (``coded_columns``). Indexing gives values, as a list's would."""

    __slots__ = ("codes", "values")

    def __init__(self, codes, values: Sequence):
        self.codes, self.values = codes, values

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return CodedColumn(self.codes[index], self.values)
        return self.values[int(self.codes[index])]

    def tolist(self) -> list:
        if hasattr(self.values, "take"):  # a numpy array: one vectorized step
            return self.values.take(self.codes).tolist()
        return [self.values[i] for i in self.codes.tolist()]


REMEMBERED = 256  # characters: a value up to this long is scrubbed once however often it repeats


def scrub_all(values: list[str] | CodedColumn, secrets: list[str]) -> list[str] | CodedColumn:
    """``scrub_text`` of each value, once per distinct short one (labels and stock replies repeat)."""
    if isinstance(values, CodedColumn):
        # its values, not only those in use (another slice's), some perhaps None
        return CodedColumn(values.codes, [scrub_text(v, secrets) if isinstance(v, str) else v
                                          for v in values.values])
    done: dict[str, str] = {}
    # long values (replies) are scrubbed one by one: they rarely repeat, and hashing them costs as much
    return [scrub_text(v, secrets) if len(v) > REMEMBERED else
            done[v] if v in done else done.setdefault(v, scrub_text(v, secrets)) for v in values]
