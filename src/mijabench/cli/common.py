"""Shared CLI plumbing: the workspace option, one-line errors, the content warning."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from ..store import DEFAULT_WORKSPACE, Store

console = Console()
err_console = Console(stderr=True)

CONTENT_WARNING = ("Content warning: the prompts and responses below are offensive by design; they were "
                   "written to test model safety towards demographic groups.")

WorkspaceOption = typer.Option(
    None, "--workspace", "-w", envvar="MIJABENCH_WORKSPACE",
    help=f"Workspace folder holding the store (default: ./{DEFAULT_WORKSPACE}).")


def workspace_path(workspace: Path | None) -> Path:
    return Path(workspace or os.environ.get("MIJABENCH_WORKSPACE") or DEFAULT_WORKSPACE)


def open_store(workspace: Path | None, *, create: bool = True) -> Store:
    return Store(workspace_path(workspace), create=create)


def warn_content() -> None:
    err_console.print(f"[yellow]{CONTENT_WARNING}[/yellow]")
