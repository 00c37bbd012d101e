"""Balanced sampling: the same number of seeds for every (language, group), duplicates removed first.

A group's draw uses its own random generator seeded from (seed, language, group), so adding or removing
another group never changes which seeds this group gets.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import MijaError
from ..records import Seed
from ..taxonomy import load_taxonomy

DEFAULT_PER_GROUP = 2000


@dataclass(frozen=True)
class GroupBalance:
    language: str
    group: str
    rows: int  # seeds that reached sampling (after filters)
    duplicates: int  # exact duplicates (whitespace and case ignored) removed
    taken: int
    wanted: int

    @property
    def available(self) -> int:
        return self.rows - self.duplicates

    @property
    def short(self) -> int:
        return max(0, self.wanted - self.taken)


@dataclass
class BalancedSample:
    seeds: list[Seed]
    report: list[GroupBalance]
    warnings: list[str] = field(default_factory=list)

    @property
    def short_groups(self) -> list[GroupBalance]:
        return [g for g in self.report if g.short]


def dedup_key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def balance(seeds: Iterable[Seed], per_group: int = DEFAULT_PER_GROUP, *, seed: int = 0,
            strict: bool = False, expect_languages: Iterable[str] = ()) -> BalancedSample:
    """Take exactly ``per_group`` seeds per (language, group) when a group has that many, else all of them
    with a warning (or a MijaError when ``strict``). Groups the taxonomy lists for the languages in
    ``expect_languages`` but that have no seeds at all are reported too."""
    if per_group < 1:
        raise MijaError(f"--per-group must be at least 1, got {per_group}")
    tax = load_taxonomy()
    pools: dict[tuple[str, str], list[Seed]] = {}
    rows: dict[tuple[str, str], int] = {}
    seen: set[tuple[str, str, str]] = set()
    for s in seeds:
        key = (s.language, s.group)
        rows[key] = rows.get(key, 0) + 1
        pools.setdefault(key, [])
        text_key = (s.language, s.group, dedup_key(s.text))
        if text_key not in seen:
            seen.add(text_key)
            pools[key].append(s)
    for lang in expect_languages:
        for g in tax.groups_for(lang):
            pools.setdefault((lang, g.id), [])
            rows.setdefault((lang, g.id), 0)

    order = {gid: i for i, gid in enumerate(tax.groups)}
    chosen: list[Seed] = []
    report: list[GroupBalance] = []
    for lang, group in sorted(pools, key=lambda k: (k[0], order.get(k[1], len(order)), k[1])):
        unique = pools[(lang, group)]
        taken = unique
        if len(unique) > per_group:
            rng = random.Random(f"{seed}:{lang}:{group}")
            taken = [unique[i] for i in sorted(rng.sample(range(len(unique)), per_group))]
        chosen.extend(taken)
        n_rows = rows[(lang, group)]
        report.append(GroupBalance(lang, group, n_rows, n_rows - len(unique), len(taken), per_group))
    result = BalancedSample(chosen, report)
    result.warnings = [shortfall_message(g) for g in result.short_groups]
    if strict and result.short_groups:
        names = ", ".join(f"{g.language}/{g.group} ({g.available})" for g in result.short_groups)
        raise MijaError(f"--strict: {len(result.short_groups)} group(s) have fewer than {per_group} unique "
                        f"seeds: {names}")
    return result


def shortfall_message(g: GroupBalance) -> str:
    if g.available == 0:
        return f"{g.language}/{g.group}: no seeds at all (asked for {g.wanted})"
    dup = f" after removing {g.duplicates} duplicate(s)" if g.duplicates else ""
    return (f"{g.language}/{g.group}: only {g.available} unique seed(s){dup}, fewer than the {g.wanted} "
            f"asked for; took all {g.taken}")
