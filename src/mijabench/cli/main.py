"""The `mijabench` command: a thin layer that parses arguments, calls the library and prints.

Every sub-command lives in its own module; this file only assembles them and turns a MijaError into one
line on stderr and exit code 2.
"""

from __future__ import annotations

import sqlite3
import sys

import typer
from rich.text import Text

from ..errors import MijaError
from . import align as align_cli
from . import annotate as annotate_cli
from . import audit as audit_cli
from . import bench as bench_cli
from . import importer as importer_cli
from . import judge as judge_cli
from . import report as report_cli
from . import run as run_cli
from . import seeds as seeds_cli
from . import store as store_cli
from . import taxonomy as taxonomy_cli
from .common import command_group, err_console

cli = command_group(
    name="mijabench",
    help="Demographic safety audits for language models: for whom is a model safe?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

cli.command("audit")(audit_cli.audit)
cli.command("groups")(taxonomy_cli.groups)
cli.command("strategies")(taxonomy_cli.strategies)
cli.add_typer(store_cli.app, name="store")
cli.add_typer(judge_cli.app, name="judge")
cli.command("report")(report_cli.report)
cli.command("compare")(report_cli.compare)
cli.command("run")(run_cli.run)
cli.command("import")(importer_cli.import_)
cli.add_typer(annotate_cli.app, name="annotate")
cli.add_typer(seeds_cli.app, name="seeds")
cli.add_typer(align_cli.app, name="align")

scenarios_app = command_group(help="Scenario categories (no sub-command: list them) and scenario building.")
cli.add_typer(scenarios_app, name="scenarios")
cli.add_typer(bench_cli.app, name="bench")
scenarios_app.command("build")(bench_cli.scenarios_build)


@scenarios_app.callback(invoke_without_command=True)
def scenarios(ctx: typer.Context) -> None:
    """List the 21 scenario categories when called without a sub-command."""
    if ctx.invoked_subcommand is None:
        taxonomy_cli.list_scenario_categories()


def app() -> None:
    """Console entry point."""
    try:
        cli(standalone_mode=True)
    except MijaError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    except sqlite3.DatabaseError as exc:  # damage the open-time check could not see
        print_error(f"the workspace database cannot be read ({exc}); restore it from a copy")
        sys.exit(2)
    except OSError as exc:  # a folder that cannot be written, a full disk: one line, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print_error(f"{where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; everything stored so far is kept (re-run the command to resume)")
        sys.exit(130)


def print_error(message: str) -> None:
    """One line on stderr: credentials masked, the text printed as it is (a bracket in a model name or a
    server's error body is not Rich markup), never wrapped."""
    from ..store.secrets import scrub_text

    line = " ".join(scrub_text(message).split())  # one line even when a server's message holds newlines
    err_console.print(Text.assemble(("error:", "red"), " ", line), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
