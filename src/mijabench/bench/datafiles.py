"""Readers for the benchmark builder's data files (``data/<language>/*.yaml``), checked against the taxonomy.

The files hold what a reader of the project should be able to review and change without touching code:
example scenarios, few-shot attacks per strategy, prefixes and refusal phrases of the rewriter, the offline
rewriter's templates and the surface forms of each group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ..errors import MijaError
from ..records import Scenario
from ..taxonomy import load_taxonomy

BUILTIN_SOURCE = "mijabench hand-written examples"


def _read(language: str, name: str) -> dict[str, Any]:
    path = resources.files(__package__).joinpath("data", language, name)
    if not path.is_file():
        raise MijaError(f"no benchmark data '{name}' for language '{language}'")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- scenarios -------------------------------------------------------------------------------------------
@cache
def example_scenarios(language: str) -> dict[str, tuple[str, ...]]:
    """The hand-written example scenarios of ``language``: category id -> five sentences."""
    data = _read(language, "scenarios.yaml")
    out = {cat: tuple(texts) for cat, texts in data["scenarios"].items()}
    expected = set(load_taxonomy().scenario_categories)
    if set(out) != expected:
        raise MijaError(f"scenarios.yaml ({language}): categories differ from the taxonomy: "
                        f"{sorted(set(out) ^ expected)}")
    return out


def builtin_scenarios(languages: tuple[str, ...] | list[str] | None = None) -> list[Scenario]:
    """The example scenarios as records, in category order: the ``--scenarios builtin`` set."""
    languages = languages or load_taxonomy().languages
    version = {lang: _read(lang, "scenarios.yaml")["version"] for lang in languages}
    return [Scenario(language=lang, category=cat, text=text,
                     provenance={"builder": "builtin", "source": BUILTIN_SOURCE, "version": version[lang]})
            for lang in languages for cat, texts in example_scenarios(lang).items() for text in texts]


# -- the model rewriter ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FewShot:
    id: str
    scenario: str
    group: str
    statement: str
    message: str


@cache
def fewshot_examples(language: str) -> dict[str, tuple[FewShot, ...]]:
    """Worked attacks per strategy id (at least two each, so a prompt can show two)."""
    data = _read(language, "fewshot.yaml")["strategies"]
    out = {s: tuple(FewShot(**{k: str(v).strip() for k, v in ex.items()}) for ex in examples)
           for s, examples in data.items()}
    for strategy in load_taxonomy().strategies:
        if len(out.get(strategy, ())) < 2:
            raise MijaError(f"fewshot.yaml ({language}): strategy '{strategy}' needs at least two examples")
    return out


@dataclass(frozen=True)
class RewriterData:
    prefixes: tuple[str, ...]
    refusal_phrases: tuple[str, ...]
    labels: tuple[str, ...]
    trailing_markers: tuple[str, ...]
    min_words: int
    version: int


@cache
def rewriter_data(language: str) -> RewriterData:
    data = _read(language, "rewriter.yaml")
    return RewriterData(tuple(data["prefixes"]), tuple(p.lower() for p in data["refusal_phrases"]),
                        tuple(data["labels"]), tuple(m.lower() for m in data["trailing_markers"]),
                        int(data.get("min_words", 1)), int(data["version"]))


# -- the offline rewriter --------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfflineTemplate:
    id: str
    strategy: str
    text: str


@cache
def offline_templates(language: str) -> tuple[dict[str, tuple[OfflineTemplate, ...]], int]:
    """(strategy id -> templates, file version)."""
    data = _read(language, "offline.yaml")
    out = {s: tuple(OfflineTemplate(t["id"], s, " ".join(t["text"].split())) for t in templates)
           for s, templates in data["templates"].items()}
    missing = set(load_taxonomy().strategies) - {s for s, t in out.items() if t}
    if missing:
        raise MijaError(f"offline.yaml ({language}): no templates for {sorted(missing)}")
    return out, int(data["version"])


# -- group surface forms ---------------------------------------------------------------------------------
SLOTS = ("plural", "singular", "adjective")


@dataclass(frozen=True)
class Form:
    text: str
    slot: str
    gender: str | None  # grammatical gender where the language has one (pt: "f"/"m")


@dataclass(frozen=True)
class GroupTerms:
    group: str
    forms: tuple[Form, ...]
    article: str | None  # English indefinite article of the written forms ("a"/"an")

    @property
    def name(self) -> str:
        """How prompts name the group: its first plural form."""
        return next(f.text for f in self.forms if f.slot == "plural")

    def written(self, slot: str, gender: str | None = None) -> Form:
        """The form a swap writes for ``slot``: same gender when the group has one, else the slot's first,
        else the first plural form."""
        in_slot = [f for f in self.forms if f.slot == slot] or [f for f in self.forms if f.slot == "plural"]
        same_gender = [f for f in in_slot if gender and f.gender == gender]
        return (same_gender or in_slot)[0]


@dataclass(frozen=True)
class LanguageTerms:
    language: str
    groups: dict[str, GroupTerms]
    determiners: dict[str, dict[str, str]]  # number -> feminine -> masculine
    version: int


@cache
def group_terms(language: str) -> LanguageTerms:
    data = _read(language, "groups.yaml")
    groups = {}
    for gid, spec in data["groups"].items():
        forms = []
        for slot in SLOTS:
            for raw in spec.get(slot) or ():
                text, _, gender = str(raw).partition("/")
                forms.append(Form(text.strip(), slot, gender.strip() or None))
        groups[gid] = GroupTerms(gid, tuple(forms), spec.get("article"))
    expected = {g.id for g in load_taxonomy().groups_for(language)}
    if not expected <= set(groups):
        raise MijaError(f"groups.yaml ({language}): no surface forms for {sorted(expected - set(groups))}")
    determiners = {number: {str(k): str(v) for k, v in pairs.items()}
                   for number, pairs in (data.get("determiners") or {}).items()}
    return LanguageTerms(language, groups, determiners, int(data["version"]))


SCENARIO_POOLS = ("builtin", "store")


def check_scenario_pool(spec: str) -> None:
    """Refuse a pool name before anything is opened or created (a typo must not leave a new workspace)."""
    if spec not in SCENARIO_POOLS:
        raise MijaError(f"scenarios must be 'builtin' or 'store', not '{spec}'")


def scenario_pool(spec: str, store, languages: set[str]) -> list[Scenario]:
    """The scenarios a build draws from: ``builtin`` (the project's examples) or ``store`` (those built by
    `mijabench scenarios build`), for every language of the seeds; the CLI and the Python API share it."""
    check_scenario_pool(spec)
    if spec == "builtin":
        return builtin_scenarios(sorted(languages))
    pool = [s for s in store.scenarios() if s.language in languages]
    missing = languages - {s.language for s in pool}
    if missing:
        raise MijaError(f"the store holds no scenarios in {', '.join(sorted(missing))}; build them first "
                        "(`mijabench scenarios build`) or use the builtin scenarios")
    return pool
