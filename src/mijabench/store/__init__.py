"""The SQLite workspace every stage reads and writes."""

from .core import DEFAULT_WORKSPACE, Store, workspace_path
from .export import export_all, export_table

__all__ = ["DEFAULT_WORKSPACE", "Store", "export_table", "export_all", "workspace_path"]
