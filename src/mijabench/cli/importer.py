"""`mijabench import`: a judged corpus (the published MiJaBench-Align layouts, a generic long table, or a
store export) into the workspace as items, responses and verdicts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..sources.importer import prepare_import, write_import
from .common import WorkspaceOption, console, err_console, open_store

COLUMNS_HELP = ("ROLE=COLUMN for a column the tool cannot guess (repeatable). Roles: prompt, group, "
                "language, strategy, seed_text, scenario_category, scenario_text, model, response, "
                "judge:NAME; "
                "in a wide table response:MODEL and judge:NAME:MODEL.")


def import_(
    source: str = typer.Argument(..., help="A Parquet/JSONL/CSV file, a folder written by `store export`, "
                                           "or with --hub a Hugging Face dataset id."),
    hub: bool = typer.Option(False, "--hub", help="SOURCE is a dataset on the Hugging Face hub."),
    split: str = typer.Option("train", "--split", help="With --hub: the split to import."),
    config: str = typer.Option(None, "--config", help="With --hub: the dataset configuration."),
    from_disk: Path = typer.Option(None, "--from-disk",
                                   help="With --hub: a local copy saved by save_to_disk."),
    bench: str = typer.Option(None, "--bench", "-b", help="Benchmark to file the items under (default: the "
                                                         "source's name; a store export keeps its own)."),
    columns: list[str] = typer.Option(None, "--columns", "-c", help=COLUMNS_HELP),
    language: str = typer.Option(None, "--language", "-l", help="en or pt, for a table without a language "
                                                                "column."),
    judge_prefix: str = typer.Option("", "--judge-prefix", help="Prepended to every imported judge name, "
                                     "e.g. 'paper:', to keep them apart from live judges of the same name."),
    judge_name: str = typer.Option("imported", "--judge-name", help="Name of the judge behind a single "
                                   "'label' column or a jb_cls_<model> column that names no judge."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Import a judged corpus. Everything is checked before the first write; importing again adds nothing,
    and an interrupted import is finished by running it again."""
    # read and check the whole source first: bad input leaves no trace, not even a new workspace
    prepared = prepare_import(source, hub=hub, split=split, config=config, from_disk=from_disk, bench=bench,
                              columns=columns or None, language=language, judge_prefix=judge_prefix,
                              default_judge=judge_name)
    with open_store(workspace) as store:
        result = write_import(store, prepared)
    console.print(f"{result.source}: {result.layout} layout, run {result.run_id}")
    table = Table(title="imported")
    for col in ("records", "in the source", "added to the store"):
        table.add_column(col, justify="left" if col == "records" else "right")
    for name, n in result.read.items():
        added = result.added.get(name)
        table.add_row(name, f"{n:,}", "" if added is None else f"{added:,}")
    console.print(table)
    for note in result.notes:
        err_console.print(Text.assemble(("note:", "yellow"), f" {note}"), soft_wrap=True)
    if not any(result.added.values()):
        console.print("nothing new: this source was imported before")
