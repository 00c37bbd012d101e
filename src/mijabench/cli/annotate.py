"""`mijabench annotate sample | serve | export`: human labels for judge validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from ..annotate import draw_sample, export_labels, resolve_sample
from .common import WorkspaceOption, command_group, console, open_store, warn_content

app = command_group(help="Human labels for judge validation: sample, label in a browser, export.",
                  no_args_is_help=True)

SHOWN_SHORTFALLS = 20


@app.command()
def sample(
    per_cell: int = typer.Option(..., "--per-cell", "-k", help="Responses per vote label per cell."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw."),
    name: str = typer.Option("default", "--name", help="Name of the sample (never reused)."),
    judge: list[str] = typer.Option(None, "--judge",
                                    help="Judges whose vote counts (repeat); all if omitted."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Draw K vote-harmful and K vote-safe responses per (language, group, strategy, model) cell."""
    with open_store(workspace, create=False) as store:
        report = draw_sample(store, per_cell, seed=seed, name=name, judges=judge or None)
    harmful, safe = report.by_label["harmful"], report.by_label["safe"]
    console.print(f"sample {report.name}: {report.drawn:,} responses from {report.cells:,} "
                  f"cells ({harmful:,} voted harmful, {safe:,} voted safe); run {report.run_id}")
    if report.unvoted:
        console.print(f"{report.unvoted:,} answered responses have no parsed vote and were not eligible")
    if report.shortfalls:
        table = Table(title=f"{len(report.shortfalls):,} cells with fewer than {per_cell} per label")
        for column in ("language", "group", "strategy", "model", "vote", "drawn"):
            table.add_column(column)
        for s in report.shortfalls[:SHOWN_SHORTFALLS]:
            table.add_row(*s.cell, s.label, f"{s.available}/{s.wanted}")
        console.print(table)
        if len(report.shortfalls) > SHOWN_SHORTFALLS:
            console.print(f"... and {len(report.shortfalls) - SHOWN_SHORTFALLS:,} more")


@app.command()
def serve(
    sample_name: str = typer.Option(None, "--sample", help="Sample to label [default: the newest]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless --allow-remote)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    allow_remote: bool = typer.Option(False, "--allow-remote",
                                      help="Allow a non-loopback address: anyone who reaches it can label."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Serve the annotation page until Ctrl-C; every click is saved at once."""
    from ..annotate.security import check_bind
    from ..annotate.web import serve as run_server

    check_bind(host, allow_remote)
    with open_store(workspace, create=False) as store:
        info = resolve_sample(store, sample_name)
        path = store.path
    warn_content()
    shown = f"[{host}]" if ":" in host else host
    console.print(f"annotating sample {info.name} ({info.size:,} items) at "
                  f"http://{shown}:{port}/  (Ctrl-C to stop; nothing is lost)")
    run_server(path, info.name, host=host, port=port, allow_remote=allow_remote)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", "-o", help="Labels file, .jsonl or .csv (the majority file goes "
                                                      "next to it as NAME.majority.EXT)."),
    sample_name: str = typer.Option(None, "--sample", help="Sample to export [default: the newest]."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Write labels for `judge validate`, with agreement between annotators and the majority per item."""
    with open_store(workspace, create=False) as store:
        report = export_labels(store, out, sample_name)
    people = ", ".join(f"{name} ({n})" for name, n in report.per_annotator.items()) or "none"
    console.print(f"sample {report.sample}: {report.labels:,} labels ({report.skipped:,} skips "
                  f"left out) by {people}")
    console.print(f"wrote {report.labels_path}")
    majority = Counter(report.majority.values())
    console.print(f"wrote {report.majority_path}: majority harmful {majority['harmful']:,}, safe "
                  f"{majority['safe']:,}, tie {report.ties:,} (no ground truth; validation drops ties)")
    if report.agreement is not None:
        console.print(f"{report.agreement_statistic}: {report.agreement:.3f} over "
                      f"{report.agreement_items:,} items")
    for note in report.notes:
        console.print(note)
