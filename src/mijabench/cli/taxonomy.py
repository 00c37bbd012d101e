"""`mijabench groups | strategies | scenarios`: list the taxonomy."""

from __future__ import annotations

import typer
from rich.table import Table

from ..taxonomy import load_taxonomy
from .common import console

LanguageOption = typer.Option("en", "--language", "-l", help="Language of names and descriptions (en, pt).")


def groups(language: str = LanguageOption) -> None:
    """List the demographic groups, their category and the seed languages that cover them."""
    tax = load_taxonomy()
    lang = tax.check_language(language)
    table = Table(title=f"{len(tax.groups)} demographic groups")
    for col in ("id", "English", "Português", "category", "languages"):
        table.add_column(col)
    for g in tax.groups.values():
        category = tax.categories[g.category][lang]
        table.add_row(g.id, g.name("en"), g.name("pt"), category, ", ".join(g.languages))
    console.print(table)


def strategies(language: str = LanguageOption) -> None:
    """List the jailbreak strategies with a description in the chosen language."""
    tax = load_taxonomy()
    lang = tax.check_language(language)
    table = Table(title=f"{len(tax.strategies)} jailbreak strategies", show_lines=True)
    for col in ("id", "English", "Português", "description"):
        table.add_column(col)
    for s in tax.strategies.values():
        table.add_row(s.id, s.name("en"), s.name("pt"), s.descriptions[lang])
    console.print(table)


def list_scenario_categories() -> None:
    tax = load_taxonomy()
    table = Table(title=f"{len(tax.scenario_categories)} scenario categories")
    for col in ("id", "English", "Português"):
        table.add_column(col)
    for c in tax.scenario_categories.values():
        table.add_row(c.id, c.name("en"), c.name("pt"))
    console.print(table)
