"""Benchmark items from tabular data: the published benchmark's layout (``text, group, language,
scenario_category, scenario, jb_strategy, jb_prompt``) or our own export of the items table
(``mijabench store export --table items``).

    items = load_benchmark_file("mijabench.parquet")   # used by `mijabench run --bench FILE`
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import BenchmarkItem
from ..taxonomy import load_taxonomy
from .seedmap import check_columns, normalise_language
from .tables import RowSource, clean_value, open_table

# record field -> column
PUBLISHED_LAYOUT = {"seed_text": "text", "group": "group", "language": "language",
                    "scenario_category": "scenario_category", "scenario_text": "scenario",
                    "strategy": "jb_strategy", "prompt": "jb_prompt"}
EXPORT_LAYOUT = {"seed_text": "seed_text", "group": "group_id", "language": "language",
                 "scenario_category": "scenario_category", "scenario_text": "scenario_text",
                 "strategy": "strategy", "prompt": "prompt"}
# columns of an export that carry ids and provenance rather than content
_EXPORT_EXTRAS = ("id", "seed_id", "scenario_id", "pair_id", "provenance")
_REQUIRED = ("seed_text", "group", "scenario_category", "strategy", "prompt")


def detect_layout(source: RowSource) -> tuple[str, dict[str, str]]:
    """('published' | 'export', field -> column) for the columns ``source`` has."""
    cols = set(source.columns)
    if "jb_prompt" in cols:
        return "published", dict(PUBLISHED_LAYOUT)
    if {"prompt", "seed_text"} <= cols:
        layout = dict(EXPORT_LAYOUT)
        if "group_id" not in cols:  # records written with BenchmarkItem.to_dict() name it 'group'
            layout["group"] = "group"
        return "export", layout
    raise InputError("not a benchmark: expected the published columns (text, group, language, "
                     "scenario_category, scenario, jb_strategy, jb_prompt) or an export of the items table "
                     f"(columns found: {', '.join(source.columns)})", file=source.origin)


def load_benchmark_file(path: str | Path, mapping: dict[str, str] | None = None, *,
                        language: str | None = None) -> list[BenchmarkItem]:
    """Read a JSONL/CSV/Parquet benchmark. ``mapping`` overrides columns (record field -> column);
    ``language`` fixes the language of a file without a language column."""
    source = open_table(path)
    kind, layout = detect_layout(source)
    return list(iter_items(source, {**layout, **(mapping or {})}, export=kind == "export",
                           dataset=f"file:{Path(path).name}", language=language))


def iter_items(source: RowSource, layout: dict[str, str], *, export: bool = False, dataset: str = "",
               language: str | None = None) -> Iterator[BenchmarkItem]:
    """Map rows onto BenchmarkItems; raises InputError (file, row, field) on the first bad row. Rows of an
    ``export`` keep their ids and provenance; other rows keep their unmapped columns in provenance."""
    tax = load_taxonomy()
    fixed = normalise_language(language) if language else None
    needed = {f: c for f, c in layout.items() if not (f == "language" and fixed and c not in source.columns)}
    check_columns(source, needed)
    used = set(needed.values())
    for row_no, row in source.rows:
        loc = {"file": source.origin, "row": row_no}
        values = {}
        for name in _REQUIRED:
            value = row.get(layout[name])
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"empty {name.replace('_', ' ')}", field=layout[name], **loc)
            values[name] = value.strip()
        lang_col = needed.get("language")
        lang = normalise_language(row.get(lang_col), field=lang_col, **loc) if lang_col else fixed
        scenario = row.get(layout["scenario_text"])
        fields = dict(
            language=lang,
            group=tax.check_group(values["group"], field=layout["group"], **loc),
            seed_text=values["seed_text"],
            scenario_category=tax.check_scenario_category(values["scenario_category"],
                                                          field=layout["scenario_category"], **loc),
            scenario_text="" if scenario is None else str(scenario).strip(),
            strategy=tax.check_strategy(values["strategy"], field=layout["strategy"], **loc),
            prompt=values["prompt"],
        )
        if export:
            fields.update({k: str(row.get(k) or "") for k in ("id", "seed_id", "scenario_id", "pair_id")})
            fields["provenance"] = _provenance(row.get("provenance"), loc)
        else:
            extras = {k: clean_value(v) for k, v in row.items() if k not in used}
            fields["provenance"] = {"dataset": dataset, "row": row_no, **extras}
        yield BenchmarkItem(**fields)


def _provenance(value: Any, loc: dict[str, Any]) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise InputError("provenance is not a JSON object", field="provenance", **loc)
    return parsed
