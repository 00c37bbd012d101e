"""`mijabench store info | export`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..errors import MijaError
from ..store import export_all, export_table
from ..store.export import FORMATS
from .common import WorkspaceOption, command_group, console, open_store

app = command_group(help="Inspect and export the workspace store.", no_args_is_help=True)


@app.command()
def info(workspace: Path = WorkspaceOption) -> None:
    """Row counts per table, benchmarks, models and runs."""
    with open_store(workspace, create=False) as store:
        table = Table(title=Text(f"{store.path} (schema v{store.schema_version})"))
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in store.counts().items():
            table.add_row(name, f"{count:,}")
        console.print(table)
        # names and specs are the user's text: Text, so a bracket is printed, not read as markup
        for bench, n in store.benches().items():
            console.print(Text.assemble("benchmark ", (bench, "bold"), f": {n:,} items"), soft_wrap=True)
        for m in store.models():
            console.print(Text.assemble("model ", (m["name"], "bold"), f": {m['spec']}"), soft_wrap=True)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", "-o", help="Folder (all tables) or file (with --table)."),
    table: str = typer.Option(None, "--table", "-t", help="One table; all tables when omitted."),
    fmt: str = typer.Option("parquet", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Export tables to Parquet or JSONL."""
    from ..paths import check_output

    check_output(out, folder=not table)  # before the store is opened
    if fmt not in FORMATS:
        raise MijaError(f"unknown export format '{fmt}' (formats: {', '.join(FORMATS)})")
    with open_store(workspace, create=False) as store:
        paths = [export_table(store, table, out, fmt)] if table else export_all(store, out, fmt)
    for p in paths:
        console.print(Text(f"wrote {p}"), soft_wrap=True)
