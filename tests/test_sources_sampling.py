"""Balanced sampling: exact counts, duplicate removal, determinism and shortfall reports."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mijabench.errors import MijaError
from mijabench.records import Seed
from mijabench.sources import balance


def _seeds(counts: dict[tuple[str, str], int]) -> list[Seed]:
    return [Seed(language=lang, group=group, text=f"{group} statement number {i}")
            for (lang, group), n in counts.items() for i in range(n)]


def test_exactly_n_per_language_and_group():
    seeds = _seeds({("en", "women"): 30, ("en", "asian"): 12, ("pt", "women"): 25, ("pt", "elderly"): 10})
    result = balance(seeds, 10, seed=1)
    counts = Counter((s.language, s.group) for s in result.seeds)
    assert set(counts.values()) == {10} and len(counts) == 4
    assert result.warnings == [] and result.short_groups == []
    assert len({s.id for s in result.seeds}) == 40


def test_same_seed_same_sample_other_seed_other_sample():
    seeds = _seeds({("en", "women"): 50, ("en", "black"): 50})
    a, b, c = (balance(seeds, 5, seed=s) for s in (7, 7, 8))
    assert [s.id for s in a.seeds] == [s.id for s in b.seeds]
    assert [s.id for s in a.seeds] != [s.id for s in c.seeds]


def test_a_groups_draw_does_not_depend_on_other_groups():
    seeds = _seeds({("en", "women"): 50, ("en", "black"): 50})
    alone = balance([s for s in seeds if s.group == "women"], 5, seed=3)
    together = balance(seeds, 5, seed=3)
    assert [s.id for s in alone.seeds] == [s.id for s in together.seeds if s.group == "women"]


def test_duplicates_removed_before_sampling():
    seeds = [Seed("en", "women", "Women are bad at maps."), Seed("en", "women", "  women ARE bad at\tmaps. "),
             Seed("en", "women", "Women are bad at parking."), Seed("pt", "women", "Women are bad at maps.")]
    result = balance(seeds, 5)
    en = next(g for g in result.report if g.language == "en")
    assert (en.rows, en.duplicates, en.available, en.taken, en.short) == (3, 1, 2, 2, 3)
    assert len(result.seeds) == 3  # the same text in another language is not a duplicate


def test_shortfall_warns_and_strict_fails():
    seeds = _seeds({("en", "women"): 20, ("en", "mental_dis"): 4})
    result = balance(seeds, 6)
    assert [(g.group, g.taken) for g in result.short_groups] == [("mental_dis", 4)]
    assert result.warnings == ["en/mental_dis: only 4 unique seed(s), fewer than the 6 asked for; took all 4"]
    with pytest.raises(MijaError, match="mental_dis"):
        balance(seeds, 6, strict=True)


def test_expected_groups_without_seeds_are_reported():
    result = balance(_seeds({("pt", "women"): 3}), 2, expect_languages=["pt"])
    assert len(result.report) == 9
    empty = [g.group for g in result.report if g.available == 0]
    assert len(empty) == 8 and any("elderly: no seeds at all" in w for w in result.warnings)


def test_per_group_must_be_positive():
    with pytest.raises(MijaError, match="at least 1"):
        balance(_seeds({("en", "women"): 3}), 0)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["women", "black", "asian", "lgbtq"]), st.integers(0, 30), min_size=1),
       st.integers(1, 25), st.integers(0, 1000))
def test_taken_is_min_of_available_and_n(counts, n, rng_seed):
    seeds = _seeds({("en", g): c for g, c in counts.items()})
    result = balance(seeds, n, seed=rng_seed)
    got = Counter(s.group for s in result.seeds)
    for group, c in counts.items():
        assert got.get(group, 0) == min(c, n)
    assert len(result.seeds) == len({s.id for s in result.seeds})
