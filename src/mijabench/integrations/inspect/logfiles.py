"""Whether a path given to `mijabench import` is an Inspect log, or a folder of them. Decided from names
alone, so the core can ask without importing Inspect."""

from __future__ import annotations

from pathlib import Path

LOG_SUFFIXES = (".eval", ".json")  # Inspect's two log formats; corpus tables are never .json


def is_inspect_source(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in LOG_SUFFIXES
    if path.is_dir():
        return any(p.suffix.lower() in LOG_SUFFIXES for p in path.rglob("*") if p.is_file())
    return False
