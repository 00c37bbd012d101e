"""Export store tables to Parquet or JSONL. Files are written to a temporary name and renamed, so an
interrupted export never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MijaError
from ..paths import check_output
from .core import Store, iter_rows
from .schema import TABLES
from .secrets import scrub_text, secret_values

FORMATS = ("parquet", "jsonl")


def export_table(store: Store, table: str, out: str | Path, fmt: str = "parquet") -> Path:
    if table not in TABLES:
        raise MijaError(f"unknown table '{table}' (tables: {', '.join(TABLES)})")
    if fmt not in FORMATS:
        raise MijaError(f"unknown export format '{fmt}' (formats: {', '.join(FORMATS)})")
    out = check_output(out, folder=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    secrets = secret_values()  # the store masks what it writes; rows from an older version may predate it
    rows = [{k: scrub_text(v, secrets) if isinstance(v, str) else v for k, v in row.items()}
            for row in iter_rows(store, table)]
    if fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        names = [d[0] for d in store.conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
        columns = {n: [r[n] for r in rows] for n in names}
        pq.write_table(pa.table(columns) if rows else pa.table({n: pa.array([], pa.string()) for n in names}),
                       tmp)
    os.replace(tmp, out)
    return out


def export_all(store: Store, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
    check_output(out_dir, folder=True)
    if fmt not in FORMATS:
        raise MijaError(f"unknown export format '{fmt}' (formats: {', '.join(FORMATS)})")
    return [export_table(store, t, Path(out_dir) / f"{t}.{fmt}", fmt) for t in TABLES]
