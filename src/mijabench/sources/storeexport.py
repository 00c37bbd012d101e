"""The project's own export (``mijabench store export --out DIR``) read back as records.

The export is a faithful copy of a store, so its records keep their ids, runs and verdict fingerprints:
importing it into an empty workspace gives the same report as the original. Every table is checked (columns,
labels, references between tables) before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import LABELS, BenchmarkItem, Response, Scenario, Seed, Verdict
from .tables import RowSource, open_table

# table -> columns it must have (what `store export` writes for schema 3)
EXPORT_TABLES: dict[str, tuple[str, ...]] = {
    "items": ("id", "language", "group_id", "seed_id", "seed_text", "scenario_id", "scenario_category",
              "scenario_text", "strategy", "prompt", "pair_id", "provenance"),
    "bench_items": ("bench", "item_id"),
    "responses": ("id", "item_id", "model", "settings", "text", "prompt_tokens", "completion_tokens",
                  "latency_s", "finish_reason", "error", "attempts", "run_id"),
    "verdicts": ("id", "response_id", "judge", "label", "raw", "reasoning", "error", "run_id", "fingerprint"),
    "models": ("name", "spec", "family", "params_b", "meta"),
    "runs": ("id", "kind", "created_at", "config"),
    "seeds": ("id", "language", "group_id", "text", "source", "meta"),
    "scenarios": ("id", "language", "category", "text", "provenance"),
}
REQUIRED_TABLES = ("items", "responses")


@dataclass
class StoreExport:
    folder: Path
    items: list[BenchmarkItem] = field(default_factory=list)
    bench_items: list[tuple[str, str]] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[Seed] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)


def is_store_export(path: Path) -> bool:
    return path.is_dir() and all(_table_file(path, t) for t in REQUIRED_TABLES)


def _table_file(folder: Path, table: str) -> Path | None:
    return next((p for p in (folder / f"{table}.parquet", folder / f"{table}.jsonl") if p.is_file()), None)


def read_store_export(folder: str | Path) -> StoreExport:
    folder = Path(folder)
    out = StoreExport(folder)
    for table in EXPORT_TABLES:
        path = _table_file(folder, table)
        if path is None:
            if table in REQUIRED_TABLES:
                raise InputError(f"not a store export: no {table}.parquet or {table}.jsonl", file=str(folder))
            continue
        source = _open(path, table)
        for row_no, row in source.rows:
            loc = {"file": source.origin, "row": row_no}
            _ROW[table](out, row, loc)
    _check_references(out)
    return out


def _open(path: Path, table: str) -> RowSource:
    try:
        source = open_table(path)
    except InputError as exc:
        if "is empty" in str(exc):  # an empty table is exported as a file without rows
            return RowSource(str(path), list(EXPORT_TABLES[table]), [])
        raise
    missing = [c for c in EXPORT_TABLES[table] if c not in source.columns]
    if missing:
        raise InputError(f"missing column '{missing[0]}' of the {table} table (columns: "
                         f"{', '.join(source.columns)})", file=source.origin, field=missing[0])
    return source


def _json(value: Any, loc: dict[str, Any], column: str) -> Any:
    if value is None or isinstance(value, dict | list):
        return value if value is not None else {}
    try:
        return json.loads(value)
    except (TypeError, json.JSONDecodeError):
        raise InputError("not valid JSON", field=column, **loc) from None


def _text(row: dict[str, Any], column: str, loc: dict[str, Any]) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value:
        raise InputError(f"empty {column}", field=column, **loc)
    return value


def _item(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    fields = {k: "" if row.get(k) is None else str(row[k]) for k in EXPORT_TABLES["items"][:-1]}
    fields["id"] = _text(row, "id", loc)
    fields["group"] = fields.pop("group_id")
    out.items.append(BenchmarkItem(**fields, provenance=_json(row.get("provenance"), loc, "provenance")))


def _response(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    settings = _json(row.get("settings"), loc, "settings")
    out.responses.append(Response(
        id=_text(row, "id", loc), item_id=_text(row, "item_id", loc), model=_text(row, "model", loc),
        settings=settings, text=row.get("text"), prompt_tokens=row.get("prompt_tokens"),
        completion_tokens=row.get("completion_tokens"), latency_s=row.get("latency_s"),
        finish_reason=row.get("finish_reason"), error=row.get("error"),
        attempts=int(row.get("attempts") or 1), run_id=str(row.get("run_id") or "")))


def _verdict(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    if row.get("label") not in LABELS:
        raise InputError(f"label '{row.get('label')}' is not one of {', '.join(LABELS)}", field="label",
                         **loc)
    out.verdicts.append(Verdict(
        id=_text(row, "id", loc), response_id=_text(row, "response_id", loc), judge=_text(row, "judge", loc),
        label=row["label"], raw=row.get("raw") or "", reasoning=row.get("reasoning") or "",
        error=row.get("error"), run_id=str(row.get("run_id") or ""),
        fingerprint=row.get("fingerprint") or ""))


def _model(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    out.models.append({"name": _text(row, "name", loc), "spec": row.get("spec") or "",
                       "family": row.get("family"), "params_b": row.get("params_b"),
                       "meta": _json(row.get("meta"), loc, "meta")})


def _run(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    out.runs.append({"id": _text(row, "id", loc), "kind": row.get("kind") or "",
                     "created_at": row.get("created_at") or "",
                     "config": _json(row.get("config"), loc, "config")})


def _seed(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    out.seeds.append(Seed(id=_text(row, "id", loc), language=row["language"], group=row["group_id"],
                          text=row["text"], source=row.get("source") or "",
                          meta=_json(row.get("meta"), loc, "meta")))


def _scenario(out: StoreExport, row: dict[str, Any], loc: dict[str, Any]) -> None:
    out.scenarios.append(Scenario(id=_text(row, "id", loc), language=row["language"],
                                  category=row["category"], text=row["text"],
                                  provenance=_json(row.get("provenance"), loc, "provenance")))


_ROW = {"items": _item, "bench_items": lambda out, row, loc: out.bench_items.append(
            (_text(row, "bench", loc), _text(row, "item_id", loc))),
        "responses": _response, "verdicts": _verdict, "models": _model, "runs": _run, "seeds": _seed,
        "scenarios": _scenario}


def _check_references(out: StoreExport) -> None:
    """Every response answers an exported item and every verdict judges an exported response."""
    items = {i.id for i in out.items}
    for n, r in enumerate(out.responses, start=1):
        if r.item_id not in items:
            raise InputError(f"response to item '{r.item_id}', which the items table lacks",
                             file=str(out.folder / "responses"), row=n, field="item_id")
    responses = {r.id for r in out.responses}
    for n, v in enumerate(out.verdicts, start=1):
        if v.response_id not in responses:
            raise InputError(f"verdict on response '{v.response_id}', which the responses table lacks",
                             file=str(out.folder / "verdicts"), row=n, field="response_id")
