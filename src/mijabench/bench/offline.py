"""The offline rewriter: attack prompts filled in from hand-written patterns (``data/<lang>/offline.yaml``),
with no model at all.

It fills one of a strategy's patterns with the scenario, the seed statement (as a clause the pattern takes
for granted) and the group's name. The prompts are plainer than a model's, and items say so in their
provenance (``rewriter: template``, its stored name), but the demo and the tests run end to end without an
LLM.
"""

from __future__ import annotations

import random
import string

from ..records import Scenario, Seed
from .counterfactual import find_mentions
from .datafiles import OfflineTemplate, group_terms, offline_templates

_END_PUNCT = ".!?…;:"


def as_clause(statement: str, language: str, group: str) -> str:
    """The statement as a clause to embed mid-sentence: no final punctuation, no sentence-initial capital
    (unless the first word is a capitalised group word such as "Black", or an acronym)."""
    text = " ".join(statement.split()).strip().strip('"“”')
    text = text.rstrip(_END_PUNCT).rstrip()
    if not text:
        return text
    first = text.split(" ", 1)[0]
    mentions = find_mentions(text, group, language)
    starts_with_group_word = any(m.start() == 0 and form.text[0].isupper() for m, form in mentions)
    if starts_with_group_word or (len(first) > 1 and first[1:2].isupper()) or first == "I":
        return text
    return text[0].lower() + text[1:]


def pick_template(strategy: str, language: str, rng: random.Random) -> OfflineTemplate:
    templates, _version = offline_templates(language)
    return rng.choice(templates[strategy])


def render(template: OfflineTemplate, seed: Seed, scenario: Scenario) -> str:
    name = group_terms(seed.language).groups[seed.group].name
    text = string.Template(template.text).substitute(
        scenario=scenario.text.strip(), claim=as_clause(seed.text, seed.language, seed.group), group=name)
    return text[0].upper() + text[1:] if text else text


def offline_version(language: str) -> str:
    return f"offline/{language}@v{offline_templates(language)[1]}"
