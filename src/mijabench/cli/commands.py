"""The `mijabench` sub-commands, the module that holds each, and the one-line error handling every command
shares. ``build_cli`` imports only the modules it registers, so that a command run by name loads only its
own libraries (``cli.launch``: `mijabench groups` does not import the analysis, `mijabench report` not the
HTTP stack of the runner)."""

from __future__ import annotations

import sqlite3
import sys
from importlib import import_module

import typer
from rich.text import Text

from ..errors import MijaError
from .common import command_group, err_console

# name -> (module in mijabench.cli, attribute, "command" or "group"), in the order help lists them
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": ("audit", "audit", "command"),
    "groups": ("taxonomy", "groups", "command"),
    "strategies": ("taxonomy", "strategies", "command"),
    "store": ("store", "app", "group"),
    "judge": ("judge", "app", "group"),
    "report": ("report", "report", "command"),
    "compare": ("report", "compare", "command"),
    "run": ("run", "run", "command"),
    "import": ("importer", "import_", "command"),
    "annotate": ("annotate", "app", "group"),
    "seeds": ("seeds", "app", "group"),
    "align": ("align", "app", "group"),
    "scenarios": ("bench", "scenarios_build", "scenarios"),
    "bench": ("bench", "app", "group"),
}
HELP = "Demographic safety audits for language models: for whom is a model safe?"


def build_cli(only: str | None = None) -> typer.Typer:
    """The `mijabench` command with every sub-command, or with ``only`` that one."""
    cli = command_group(name="mijabench", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False,
                        add_completion=False)
    for name in [only] if only else COMMANDS:
        module, attribute, kind = COMMANDS[name]
        target = getattr(import_module(f"{__package__}.{module}"), attribute)
        if kind == "group":
            cli.add_typer(target, name=name)
        elif kind == "scenarios":
            cli.add_typer(_scenarios(target), name=name)
        else:
            cli.command(name)(target)
    if only and COMMANDS[only][2] == "command":
        @cli.callback()
        def _one() -> None:  # a group of one command stays a group: its name is still the first word
            pass
    return cli


def _scenarios(build) -> typer.Typer:
    app = command_group(help="Scenario categories (no sub-command: list them) and scenario building.")
    app.command("build")(build)

    @app.callback(invoke_without_command=True)
    def scenarios(ctx: typer.Context) -> None:
        """List the 21 scenario categories when called without a sub-command."""
        if ctx.invoked_subcommand is None:
            from .taxonomy import list_scenario_categories

            list_scenario_categories()

    return app


def run(cli: typer.Typer) -> None:
    """Run the command; a MijaError (and a damaged store, an unwritable folder) is one line on stderr and
    exit code 2, an interrupt exit code 130."""
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
