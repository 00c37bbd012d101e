"""Shared CLI plumbing: the workspace option, one-line errors, the content warning."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..store import DEFAULT_WORKSPACE, Store, workspace_path

# markup off: everything printed holds user or server text (model names, paths, error bodies) in which a
# bracket is a character, not a style; styles are given as arguments or Text spans instead
console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

CONTENT_WARNING = ("Content warning: the prompts and responses below are offensive by design; they were "
                   "written to test model safety towards demographic groups.")



def command_group(**options) -> typer.Typer:
    """A Typer app whose help is plain text. Typer's default (``rich_markup_mode="rich"`` once Rich is
    installed) parses every help string as Rich markup, so ``mijabench[ray]`` or ``[default: ...]`` lost
    their bracketed words; like every other printout here, help is shown as written."""
    return typer.Typer(rich_markup_mode=None, **options)


WorkspaceOption = typer.Option(
    None, "--workspace", "-w", envvar="MIJABENCH_WORKSPACE",
    help=f"Workspace folder holding the store (default: ./{DEFAULT_WORKSPACE}).")


PROGRESS_MODES = ("auto", "rich", "plain", "none")  # == run.progress.MODES, kept here so --help stays fast


def check_progress(value: str) -> str:
    if value not in PROGRESS_MODES:
        raise typer.BadParameter(f"must be one of {', '.join(PROGRESS_MODES)}, not '{value}'")
    return value


ProgressOption = typer.Option(
    "auto", "--progress", callback=check_progress,
    help="auto (live bars on a terminal, plain lines otherwise), rich, plain (a line per model every 10 "
         "seconds: done/total, rate, failures, retries, ETA) or none.")


def open_store(workspace: Path | None, *, create: bool = True, check_aside: bool = False) -> Store:
    return Store(workspace_path(workspace), create=create, check_aside=check_aside)


def warn_content() -> None:
    err_console.print(CONTENT_WARNING, style="yellow")
