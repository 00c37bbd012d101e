"""Groups, strategies, scenario categories and size classes, read from the data files beside this module.

The taxonomy is data: ``data/groups.yaml`` holds ids, categories, language coverage and source aliases;
``data/<lang>.yaml`` holds everything a reader sees in that language.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ..errors import InputError


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    category: str
    languages: tuple[str, ...]
    names: dict[str, str]
    aliases: tuple[str, ...]

    def name(self, language: str = "en") -> str:
        return self.names.get(language) or self.names["en"]


@dataclass(frozen=True, slots=True)
class Strategy:
    id: str
    names: dict[str, str]
    descriptions: dict[str, str]

    def name(self, language: str = "en") -> str:
        return self.names.get(language) or self.names["en"]


@dataclass(frozen=True, slots=True)
class ScenarioCategory:
    id: str
    names: dict[str, str]

    def name(self, language: str = "en") -> str:
        return self.names.get(language) or self.names["en"]


@dataclass(frozen=True, slots=True)
class SizeClass:
    id: str
    min_b: float
    max_b: float
    names: dict[str, str]


@dataclass(frozen=True)
class Taxonomy:
    languages: tuple[str, ...]
    language_names: dict[str, str]
    groups: dict[str, Group]
    categories: dict[str, dict[str, str]]
    strategies: dict[str, Strategy]
    scenario_categories: dict[str, ScenarioCategory]
    size_classes: tuple[SizeClass, ...]
    _alias_index: dict[str, str]
    _strategy_index: dict[str, str]
    _scenario_index: dict[str, str]

    def groups_for(self, language: str) -> list[Group]:
        return [g for g in self.groups.values() if language in g.languages]

    def resolve_group(self, label: str) -> str | None:
        """Canonical group id for any known label or alias, else None."""
        return self._alias_index.get(_norm(label))

    def size_class(self, params_b: float | None) -> str | None:
        if params_b is None:
            return None
        for sc in self.size_classes:
            if sc.min_b <= params_b <= sc.max_b:
                return sc.id
        return None

    def check_language(self, language: str, **where) -> str:
        lang = (language or "").strip().lower()
        if lang not in self.languages:
            raise InputError(f"unknown language '{language}' (known: {', '.join(self.languages)})", **where)
        return lang

    def check_group(self, label: str, **where) -> str:
        gid = self.resolve_group(label or "")
        if gid is None:
            raise InputError(f"unknown group '{label}' (see `mijabench groups`)", **where)
        return gid

    def check_strategy(self, strategy: str, **where) -> str:
        """A strategy id from its id, a published alias (``persona_assign``) or its name in any language."""
        sid = self._strategy_index.get(_norm(strategy or ""))
        if sid is None:
            raise InputError(f"unknown strategy '{strategy}' (known: {', '.join(self.strategies)})", **where)
        return sid

    def check_scenario_category(self, category: str, **where) -> str:
        cid = self._scenario_index.get(_norm(category or ""))
        if cid is None:
            raise InputError(f"unknown scenario category '{category}'", **where)
        return cid


def _norm(label: str) -> str:
    """Match key of a label: case, accents, and the choice of space, ``_`` or ``-`` between words do not
    count, so 'Povos_Indigenas', 'povos indígenas' and 'Chain-of-Thought' find their entries."""
    text = unicodedata.normalize("NFKD", str(label))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.split(r"[\s_\-]+", text)).strip()


def _index(entries: dict, aliases: dict[str, str], what: str) -> dict[str, str]:
    """Match key -> id for every id, alias and display name; a key claimed by two ids is a data error."""
    index: dict[str, str] = {}
    labels = [(label, e.id) for e in entries.values() for label in (e.id, *e.names.values())]
    for label, target in [*labels, *aliases.items()]:
        if target not in entries:
            raise ValueError(f"{what} alias '{label}' points to unknown id '{target}'")
        key = _norm(label)
        if index.get(key, target) != target:
            raise ValueError(f"{what} name '{label}' maps to both {index[key]} and {target}")
        index[key] = target
    return index


# libyaml's parser where PyYAML was built with it: the same safe constructor, a tenth of the time (the three
# taxonomy files took 0.1 s to parse in Python, in every report)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser when there is one (the package's own data files)."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 (a safe loader)


def _read(name: str) -> dict:
    return safe_yaml(resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8"))


@cache
def load_taxonomy() -> Taxonomy:
    base = _read("groups.yaml")
    languages = tuple(base["languages"])
    per_lang = {lang: _read(f"{lang}.yaml") for lang in languages}

    def names(section: str, key: str) -> dict[str, str]:
        out = {}
        for lang, data in per_lang.items():
            value = data[section][key]
            out[lang] = value["name"] if isinstance(value, dict) else value
        return out

    groups: dict[str, Group] = {}
    alias_index: dict[str, str] = {}
    for g in base["groups"]:
        gid = g["id"]
        group = Group(gid, g["category"], tuple(g["languages"]), names("groups", gid),
                      tuple(g.get("aliases", [])))
        groups[gid] = group
        for label in (gid, *group.aliases, *group.names.values()):
            key = _norm(label)
            if alias_index.get(key, gid) != gid:
                raise ValueError(f"alias '{label}' maps to both {alias_index[key]} and {gid}")
            alias_index[key] = gid
    strategies = {
        s: Strategy(s, names("strategies", s),
                    {lang: d["strategies"][s]["description"] for lang, d in per_lang.items()})
        for s in base["strategies"]
    }
    scen = {c: ScenarioCategory(c, names("scenario_categories", c)) for c in base["scenario_categories"]}
    sizes = tuple(SizeClass(s["id"], float(s["min_b"]), float(s["max_b"]), names("size_classes", s["id"]))
                  for s in base["size_classes"])
    categories = {c: {lang: d["categories"][c] for lang, d in per_lang.items()} for c in base["categories"]}
    return Taxonomy(languages, {lang: d["name"] for lang, d in per_lang.items()}, groups, categories,
                    strategies, scen, sizes, alias_index,
                    _index(strategies, base.get("strategy_aliases") or {}, "strategy"),
                    _index(scen, base.get("scenario_aliases") or {}, "scenario category"))
