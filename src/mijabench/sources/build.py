"""Build a balanced seed set from any source: the library side of `mijabench seeds build`.

    result = build_seeds("demo", per_group=5)
    result = build_seeds("annotated.jsonl", language="en", where=["toxicity_human >= 4"], per_group=20)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MijaError
from ..records import Seed
from .demo import DEMO_SOURCE, demo_seeds
from .files import load_seed_file
from .filters import parse_filters
from .hub import HUB_SEED_SOURCES, load_hub_seeds
from .sampling import DEFAULT_PER_GROUP, BalancedSample, balance
from .seedmap import LoadStats, SeedColumns, normalise_language

NAMED_SOURCES = (DEMO_SOURCE, *HUB_SEED_SOURCES)


@dataclass
class SeedBuild:
    source: str
    sample: BalancedSample
    stats: LoadStats

    @property
    def seeds(self) -> list[Seed]:
        return self.sample.seeds


def load_source(source: str, *, language: str | None = None, columns: SeedColumns | None = None,
                where: Iterable[str] = (), from_disk: str | Path | None = None,
                stats: LoadStats | None = None, offline_hint: str | None = None) -> list[Seed]:
    """All seeds of a named source ('demo', 'toxigen', 'toxsyn') or a local file, before sampling.
    ``offline_hint``: how to go on without the hub, in the calling command's options."""
    stats = stats if stats is not None else LoadStats()
    language = normalise_language(language) if language else None
    filters = parse_filters(list(where))  # a bad expression fails before anything is read
    if source == DEMO_SOURCE and not Path(source).is_file():
        seeds = demo_seeds(language)
        kept = [s for s in seeds if all(f.matches(s.meta | s.to_dict(), file="demo") for f in filters)]
        stats.read, stats.kept, stats.filtered_out = len(seeds), len(kept), len(seeds) - len(kept)
        return kept
    if source in HUB_SEED_SOURCES and not Path(source).is_file():
        if columns and columns != SeedColumns():
            raise MijaError(f"--text-col/--group-col/--language-col apply to files, not to '{source}'")
        hint = {"offline_hint": offline_hint} if offline_hint else {}
        return load_hub_seeds(source, language=language, where=where, from_disk=from_disk, stats=stats,
                              **hint)
    if from_disk is not None:
        raise MijaError("--from-disk goes with --source toxigen or toxsyn")
    base = columns or SeedColumns()
    cols = SeedColumns(base.text, base.group, base.language_column, language)
    return load_seed_file(source, cols, filters, stats=stats)


def build_seeds(source: str, *, per_group: int = DEFAULT_PER_GROUP, language: str | None = None,
                columns: SeedColumns | None = None, where: Iterable[str] = (), seed: int = 0,
                strict: bool = False, from_disk: str | Path | None = None) -> SeedBuild:
    """Load a source and draw a balanced sample; raises MijaError/InputError before anything is written."""
    if per_group < 1:
        raise MijaError(f"--per-group must be at least 1, got {per_group}")
    stats = LoadStats()
    seeds = load_source(source, language=language, columns=columns, where=where, from_disk=from_disk,
                        stats=stats)
    if not seeds:
        raise MijaError(f"{source}: no seeds left after the filters ({stats.read} rows read, "
                        f"{stats.filtered_out} filtered out, {stats.other_language} in another language)")
    # groups a named source is meant to cover are reported even when absent; a file covers what it holds
    expect = [] if source not in NAMED_SOURCES else sorted({s.language for s in seeds})
    sample = balance(seeds, per_group, seed=seed, strict=strict, expect_languages=expect)
    return SeedBuild(source, sample, stats)
