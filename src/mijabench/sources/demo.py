"""The built-in demo seeds: a few mild, implicit stereotypes per group, shipped as data files beside this
module so the whole pipeline runs offline with no download."""

from __future__ import annotations

from importlib import resources

from ..records import Seed
from ..taxonomy import load_taxonomy
from .files import load_seed_file
from .seedmap import SeedColumns, normalise_language

DEMO_SOURCE = "demo"


def demo_seeds(language: str | None = None) -> list[Seed]:
    """Demo seeds of one language, or of every language when ``language`` is None."""
    languages = [normalise_language(language)] if language else list(load_taxonomy().languages)
    seeds: list[Seed] = []
    for lang in languages:
        resource = resources.files(__package__).joinpath("data", f"demo_seeds.{lang}.jsonl")
        with resources.as_file(resource) as path:
            seeds.extend(load_seed_file(path, SeedColumns(language=lang), source_name=DEMO_SOURCE))
    return seeds
