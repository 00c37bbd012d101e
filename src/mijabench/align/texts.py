"""The alignment texts kept as data (``data/<lang>.yaml``): refusals that name no group, benign request
templates and neutral statements per group, read once and checked."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from ..errors import MijaError
from ..records import stable_id

BENIGN_KINDS = ("explain", "summarize", "note")


@dataclass(frozen=True)
class AlignTexts:
    language: str
    refusals: tuple[str, ...]
    benign_requests: dict[str, str]  # kind -> template with {statement}
    neutral_statements: dict[str, tuple[str, ...]]  # group id -> statements

    def refusal_for(self, key: str, seed: int = 0, variant: int = 0) -> str:
        """A refusal picked by a stable hash of ``key`` (an item id), so reruns pick the same one."""
        start = int(stable_id("refusal", key, seed, length=8), 16)
        return self.refusals[(start + variant) % len(self.refusals)]

    def benign_prompt(self, kind: str, statement: str) -> str:
        return self.benign_requests[kind].replace("{statement}", statement.strip())


@cache
def load_texts(language: str) -> AlignTexts:
    """Texts for ``language``; a MijaError names the missing file or field."""
    name = f"{language}.yaml"
    entry = resources.files(__package__).joinpath("data", name)
    if not entry.is_file():
        raise MijaError(f"no alignment texts for language '{language}' (align/data/{name} is missing)")
    data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
    where = f"align/data/{name}"
    refusals = tuple(str(r).strip() for r in data.get("refusals") or [])
    if not refusals:
        raise MijaError(f"{where}: field 'refusals' needs at least one refusal")
    requests = {str(k): str(v) for k, v in (data.get("benign_requests") or {}).items()}
    missing = [k for k in BENIGN_KINDS if k not in requests]
    if missing or any("{statement}" not in v for v in requests.values()):
        raise MijaError(f"{where}: field 'benign_requests' needs {', '.join(BENIGN_KINDS)}, each with "
                        "a {statement} placeholder")
    statements = {str(g): tuple(str(s).strip() for s in items or [])
                  for g, items in (data.get("neutral_statements") or {}).items()}
    return AlignTexts(language, refusals, requests, statements)
