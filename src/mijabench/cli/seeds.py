"""`mijabench seeds build | show`: balanced seed sets from the demo set, the hub or a local file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..sources import SeedColumns, build_seeds, load_seed_file, write_seeds_jsonl
from ..sources.build import SeedBuild
from ..sources.sampling import DEFAULT_PER_GROUP
from .common import WorkspaceOption, command_group, console, err_console, open_store, warn_content

app = command_group(help="Build and inspect seed sets (hateful statements per group).", no_args_is_help=True)


@app.command()
def build(
    source: str = typer.Option(..., "--source", "-s",
                               help="demo, toxigen, toxsyn, or a JSONL/CSV/Parquet file."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write (replaced atomically)."),
    per_group: int = typer.Option(DEFAULT_PER_GROUP, "--per-group", "-n",
                                  help="Seeds per language and group."),
    language: str = typer.Option(None, "--language", "-l",
                                 help="en or pt: the language of a file without a language column, "
                                      "else keep only that language."),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the statement (files)."),
    group_col: str = typer.Option("group", "--group-col", help="Column holding the group label (files)."),
    language_col: str = typer.Option(
        None, "--language-col", help="Column holding the language (files); default: 'language' if present."),
    where: list[str] = typer.Option(
        None, "--where", help="Row filter COLUMN OP VALUE, e.g. 'toxicity_human >= 4'; repeatable."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampling."),
    strict: bool = typer.Option(False, "--strict",
                                help="Fail when a group has fewer seeds than --per-group."),
    from_disk: Path = typer.Option(None, "--from-disk",
                                   help="With --source toxigen|toxsyn: a local copy saved by save_to_disk."),
    store: bool = typer.Option(False, "--store", help="Also put the seeds into the workspace store."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Draw a balanced sample (N per language and group, duplicates removed) and write it as JSONL."""
    from ..paths import check_output

    check_output(out, folder=False)  # before the source is read or the store opened
    columns = SeedColumns(text=text_col, group=group_col, language_column=language_col)
    result = build_seeds(source, per_group=per_group, language=language, columns=columns, where=where or [],
                         seed=seed, strict=strict, from_disk=from_disk)
    db = open_store(workspace) if store else None  # a bad workspace fails before the file is written
    try:
        write_seeds_jsonl(result.seeds, out)
        if db is not None:
            _store(db, result, out, per_group, seed, where or [])
    finally:
        if db is not None:
            db.close()
    _print_report(result)
    where_to = f"{out}" + (f" and to the store in {db.path}" if db is not None else "")
    console.print(f"wrote {len(result.seeds):,} seeds to {where_to}", soft_wrap=True)


def _store(db, result: SeedBuild, out: Path, per_group: int, seed: int, where: list[str]) -> None:
    run_id = db.new_run("seeds", {"source": result.source, "per_group": per_group, "seed": seed,
                                  "where": where, "out": str(out), "count": len(result.seeds)})
    db.put_seeds(result.seeds)
    short = [(f"{g.language}/{g.group}", "shortfall", {"available": g.available, "wanted": g.wanted})
             for g in result.sample.short_groups]
    if short:
        db.log_events(run_id, "seeds", short)


def _print_report(result: SeedBuild) -> None:
    stats = result.stats
    dropped = f", {stats.filtered_out:,} filtered out" if stats.filtered_out else ""
    other = f", {stats.other_language:,} in another language" if stats.other_language else ""
    console.print(f"{result.source}: {stats.read:,} rows read{dropped}{other}")
    for note in stats.notes:
        console.print(f"{result.source}: {note}")
    table = Table(title="seeds per language and group")
    for col in ("language", "group", "rows", "duplicates", "taken", "short"):
        table.add_column(col, justify="left" if col in ("language", "group") else "right")
    for g in result.sample.report:
        short = Text(str(g.short), style="yellow") if g.short else ""
        table.add_row(g.language, g.group, str(g.rows), str(g.duplicates), str(g.taken), short)
    console.print(table)
    for message in result.sample.warnings:
        err_console.print(Text.assemble(("warning:", "yellow"), f" {message}"), soft_wrap=True)


@app.command()
def show(
    file: Path = typer.Argument(..., help="A seed JSONL written by `seeds build` (or any seed file)."),
    limit: int = typer.Option(3, "--limit", help="Statements to print per group."),
) -> None:
    """Counts per group and a few statements of each (prints a content warning first)."""
    seeds = load_seed_file(file)
    counts = Counter((s.language, s.group) for s in seeds)
    warn_content()
    table = Table(title=Text(f"{file}: {len(seeds):,} seeds"), show_lines=True)
    for col in ("language", "group", "seeds", "examples"):
        table.add_column(col)
    for (lang, group), n in sorted(counts.items()):
        examples = [s.text for s in seeds if (s.language, s.group) == (lang, group)][:limit]
        table.add_row(lang, group, str(n), Text("\n".join(examples)))  # Text: no markup in seed text
    console.print(table)
