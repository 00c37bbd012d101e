"""Turn numbered rows (from a file or a hub dataset) into ``Seed`` records through a column mapping.

One code path serves every seed source, so a ToxiGen row from the hub and the same row in a local JSONL
file are checked by the same rules: the columns exist, the row passes the filters, the text is not empty,
the group is one the taxonomy knows (through its aliases) and the language is English or Portuguese.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ..errors import InputError
from ..records import Seed
from ..taxonomy import load_taxonomy
from .filters import RowFilter
from .tables import RowSource, clean_value


@dataclass(frozen=True)
class SeedColumns:
    """Where a seed's fields live. ``language_column`` None means: use a 'language' column when the input
    has one. ``language`` fixes the language for inputs without a language column and, for inputs with
    one, keeps only rows in that language."""

    text: str = "text"
    group: str = "group"
    language_column: str | None = None
    language: str | None = None


@dataclass
class LoadStats:
    read: int = 0
    filtered_out: int = 0
    other_language: int = 0
    kept: int = 0
    notes: list[str] = field(default_factory=list)


_LANGUAGE_NAMES = {"english": "en", "portuguese": "pt", "português": "pt", "portugues": "pt"}


def normalise_language(value: Any, **where) -> str:
    """'en', 'EN', 'en-US', 'English', 'pt_BR', 'Português' -> a taxonomy language code, else InputError."""
    text = str(value if value is not None else "").strip().lower()
    code = _LANGUAGE_NAMES.get(text, text.replace("_", "-").split("-")[0])
    tax = load_taxonomy()
    if code not in tax.languages:
        raise InputError(f"unknown language '{value}' (known: {', '.join(tax.languages)})", **where)
    return code


@cache
def known_layouts() -> tuple[dict[str, Any], ...]:
    text = resources.files(__package__).joinpath("data", "layouts.yaml").read_text(encoding="utf-8")
    return tuple(yaml.safe_load(text)["layouts"])


def recognise_layout(source: RowSource) -> dict[str, Any] | None:
    """The known published layout ``source`` is in (ToxiGen, ToxSyn-PT), judged by its columns and, for
    layouts that need it, its first row; None when it matches none. Peeking keeps the row for the reader."""
    cols = set(source.columns)
    candidates = [lay for lay in known_layouts() if set(lay["columns"]) <= cols]
    if not candidates:
        return None
    rows = iter(source.rows)
    first = next(rows, None)
    source.rows = rows if first is None else itertools.chain([first], rows)
    row = first[1] if first else {}
    for layout in candidates:
        if all(str(row.get(col) or "").lower().startswith(str(prefix).lower())
               for col, prefix in (layout.get("values") or {}).items()):
            return layout
    return None


def check_columns(source: RowSource, needed: dict[str, str]) -> None:
    """File-level check: every mapped column exists. ``needed`` maps a role (text, group...) to a column."""
    missing = [(role, col) for role, col in needed.items() if col not in source.columns]
    if missing:
        role, col = missing[0]
        raise InputError(f"missing column '{col}' (needed for the {role}; columns: "
                         f"{', '.join(source.columns) or 'none'})", file=source.origin, field=col)


def iter_seeds(source: RowSource, columns: SeedColumns = SeedColumns(), where: list[RowFilter] = (),
               source_name: str = "", stats: LoadStats | None = None) -> Iterator[Seed]:
    """Yield one Seed per row that passes the filters (and the language, when fixed); raise InputError on the
    first bad row."""
    tax = load_taxonomy()
    stats = stats if stats is not None else LoadStats()
    fixed = normalise_language(columns.language) if columns.language else None
    lang_col = columns.language_column or ("language" if "language" in source.columns else None)
    needed = {"text": columns.text, "group": columns.group}
    if lang_col:
        needed["language"] = lang_col
    needed.update({f"filter '{f.expression}'": f.column for f in where})
    check_columns(source, needed)
    if not lang_col and not fixed:
        layout = recognise_layout(source)
        if layout is not None:
            fixed = normalise_language(layout["language"])
            stats.notes.append(f"recognised {layout['name']}: language {fixed}")
    if not lang_col and not fixed:
        raise InputError("no language: the input has no 'language' column; pass --language (en or pt) "
                         "or --language-col", file=source.origin)
    used = {columns.text, columns.group, lang_col}
    for row_no, row in source.rows:
        stats.read += 1
        loc = {"file": source.origin, "row": row_no}
        if not all(f.matches(row, **loc) for f in where):
            stats.filtered_out += 1
            continue
        language = normalise_language(row.get(lang_col), field=lang_col, **loc) if lang_col else fixed
        if lang_col and fixed and language != fixed:
            stats.other_language += 1
            continue
        text = row.get(columns.text)
        if not isinstance(text, str) or not text.strip():
            bad_type = text is not None and not isinstance(text, str)
            raise InputError(f"text is a {type(text).__name__}, not a string" if bad_type else "empty text",
                             field=columns.text, **loc)
        label = row.get(columns.group)
        group = tax.check_group("" if label is None else str(label), field=columns.group, **loc)
        # a file written by `seeds build` carries its own meta: merge it rather than nest it
        meta = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
        meta.update({k: clean_value(v) for k, v in row.items() if k not in used and k not in ("id", "meta")})
        meta["row"] = row_no
        stats.kept += 1
        yield Seed(language=language, group=group, text=text.strip(),
                   source=source_name or source.origin, meta=meta)
