"""The report: a self-contained HTML page, CSV/Parquet tables and SVG plots drawn from what ``analysis``
computed, plus a Rich terminal summary. Start with ``write_report(store, out_dir)``.

The names are imported on first use: importing ``mijabench.report`` loads no analysis library."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .writer import ReportResult, write_report

__all__ = ["ReportResult", "write_report"]


def __getattr__(name: str):
    if name in __all__:
        from . import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
