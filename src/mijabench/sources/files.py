"""Seeds from local JSONL, CSV/TSV and Parquet files, through a column mapping and row filters.

    seeds = load_seed_file("annotated.jsonl", SeedColumns(language="en"), where=["toxicity_human >= 4"])
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import MijaError
from ..records import Seed
from .filters import RowFilter, parse_filter
from .seedmap import LoadStats, SeedColumns, iter_seeds
from .tables import open_table


def load_seed_file(path: str | Path, columns: SeedColumns = SeedColumns(),
                   where: Iterable[str | RowFilter] = (), *, source_name: str | None = None,
                   stats: LoadStats | None = None) -> list[Seed]:
    """Read every seed of a file. Raises InputError (file, row, field) on the first bad row, so a caller
    never receives half a file."""
    filters = [w if isinstance(w, RowFilter) else parse_filter(w) for w in where]
    table = open_table(path)
    name = source_name or f"file:{Path(path).name}"
    return list(iter_seeds(table, columns, filters, source_name=name, stats=stats))


def write_seeds_jsonl(seeds: Iterable[Seed], out: str | Path) -> Path:
    """Write seeds as JSONL atomically: a temporary file in the same folder, renamed over ``out`` only once
    it is complete, so a failure leaves any earlier file untouched."""
    out = Path(out)
    if out.is_dir():
        raise MijaError(f"{out}: is a folder; give a file name such as {out / 'seeds.jsonl'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as exc:
        raise MijaError(f"{out}: cannot write here ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a seed file is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for seed in seeds:
                fh.write(json.dumps(seed.to_dict(), ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
