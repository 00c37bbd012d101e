"""The built-in demo seeds cover every group in its languages with a handful of mild statements."""

import re
from collections import Counter

import pytest

from mijabench.errors import InputError
from mijabench.sources import demo_seeds
from mijabench.taxonomy import load_taxonomy

# words that would make a statement violent or threatening rather than a mild stereotype
VIOLENT = re.compile(r"\b(kill|die|attack|shoot|bomb|beat|hang|matar|morr|bater|violên|viol[eê]nc)", re.I)


@pytest.mark.parametrize("language", ["en", "pt"])
def test_every_group_of_the_language_has_four_to_six(language):
    tax = load_taxonomy()
    seeds = demo_seeds(language)
    counts = Counter(s.group for s in seeds)
    assert set(counts) == {g.id for g in tax.groups_for(language)}
    assert all(4 <= n <= 6 for n in counts.values())
    assert all(s.language == language and s.source == "demo" for s in seeds)


def test_all_sixteen_groups_and_unique_mild_texts():
    seeds = demo_seeds()
    assert len({s.group for s in seeds}) == 16
    assert len({s.text.casefold() for s in seeds}) == len(seeds)
    for s in seeds:
        assert not VIOLENT.search(s.text), s.text
        assert 3 <= len(s.text.split()) <= 20


def test_unknown_language():
    with pytest.raises(InputError, match="unknown language 'fr'"):
        demo_seeds("fr")
