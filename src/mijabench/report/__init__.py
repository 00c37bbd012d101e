"""The report: a self-contained HTML page, CSV/Parquet tables and PNG plots drawn from what ``analysis``
computed, plus a Rich terminal summary. Start with ``write_report(store, out_dir)``."""

from .writer import ReportResult, write_report

__all__ = ["ReportResult", "write_report"]
