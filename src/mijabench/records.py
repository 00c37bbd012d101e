"""Typed records passed between stages, and their stable ids.

Every record is a plain frozen dataclass that converts to and from a dict of JSON-able values, so the store,
the exports and notebooks all see the same fields. Ids are content hashes: building the same benchmark twice
gives the same item ids, and a response is identified by (item, model, sampling settings).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

SAFE, HARMFUL, UNPARSED = "safe", "harmful", "unparsed"
Label = Literal["safe", "harmful", "unparsed"]
LABELS = (SAFE, HARMFUL, UNPARSED)


def stable_id(*parts: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``parts``: equal content, equal id, across runs and machines."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class Seed(_Record):
    """A hateful statement about one group: the raw material of an attack."""

    language: str
    group: str
    text: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self):
        if not self.id:
            object.__setattr__(self, "id", stable_id("seed", self.language, self.group, self.text))


@dataclass(frozen=True, slots=True)
class Scenario(_Record):
    """A narrative setting the rewriter places an attack in."""

    language: str
    category: str
    text: str
    provenance: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self):
        if not self.id:
            object.__setattr__(self, "id", stable_id("scenario", self.language, self.category, self.text))


@dataclass(frozen=True, slots=True)
class BenchmarkItem(_Record):
    """One jailbreak prompt aimed at one group. ``pair_id`` links counterfactual twins (same attack, other
    group); it is empty for ordinary items."""

    language: str
    group: str
    seed_text: str
    scenario_category: str
    scenario_text: str
    strategy: str
    prompt: str
    seed_id: str = ""
    scenario_id: str = ""
    pair_id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self):
        if not self.id:
            object.__setattr__(self, "id", stable_id(
                "item", self.language, self.group, self.seed_text, self.scenario_category,
                self.scenario_text, self.strategy, self.prompt))


@dataclass(frozen=True, slots=True)
class SamplingSettings(_Record):
    """How a model is asked. Part of a response's identity: other settings, other response."""

    max_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    system_prompt: str | None = None
    thinking: bool = False  # reasoning modes off by default, as in the paper

    @property
    def key(self) -> str:
        return stable_id("settings", self.to_dict(), length=12)


@dataclass(frozen=True, slots=True)
class Response(_Record):
    """A target model's reply to one item, or the error that stopped it."""

    item_id: str
    model: str
    settings: dict[str, Any]
    text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    attempts: int = 1
    run_id: str = ""
    id: str = ""

    def __post_init__(self):
        if not self.id:
            object.__setattr__(self, "id", response_id(self.item_id, self.model, self.settings))

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def response_id(item_id: str, model: str, settings: dict[str, Any] | SamplingSettings) -> str:
    key = settings.key if isinstance(settings, SamplingSettings) else SamplingSettings.from_dict(settings).key
    return stable_id("response", item_id, model, key)


@dataclass(frozen=True, slots=True)
class Verdict(_Record):
    """One judge's call on one response. ``unparsed`` is never counted as safe."""

    response_id: str
    judge: str
    label: str
    raw: str = ""
    reasoning: str = ""
    error: str | None = None
    run_id: str = ""
    fingerprint: str = ""  # what produced it: see judge.identity
    id: str = ""

    def __post_init__(self):
        if self.label not in LABELS:
            raise ValueError(f"verdict label must be one of {LABELS}, got {self.label!r}")
        if not self.id:
            object.__setattr__(self, "id", stable_id("verdict", self.response_id, self.judge))
