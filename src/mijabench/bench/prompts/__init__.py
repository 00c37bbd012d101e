"""The prompts the benchmark builder sends to a model (the rewriter's, the scenario writer's), one data file
per kind and language: ``<kind>/<language>.yaml``. (The judge's prompts live in ``judge/data``; HTML
templates live with the report and the annotation page.)

Each file holds ``version``, ``system`` and ``user``, with ``$name`` placeholders (``string.Template``, so a
JSON example in a prompt needs no escaping). A prompt's ``version_tag`` joins the declared version with a
hash of its text: editing a prompt without bumping its version still changes what provenance records.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from ...errors import MijaError
from ...records import stable_id


@dataclass(frozen=True)
class BenchPrompt:
    kind: str
    language: str
    version: int
    system: str
    user: str

    @property
    def version_tag(self) -> str:
        digest = stable_id(self.system, self.user, length=8)
        return f"{self.kind}/{self.language}@v{self.version}+{digest}"

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with every placeholder filled; a missing value is a bug, so it raises KeyError."""
        messages = []
        if self.system.strip():
            messages.append({"role": "system", "content": string.Template(self.system).substitute(values)})
        messages.append({"role": "user", "content": string.Template(self.user).substitute(values)})
        return messages


@cache
def load_prompt(kind: str, language: str) -> BenchPrompt:
    """The ``kind`` prompt (``rewriter``, ``scenarios``) in ``language``."""
    path = resources.files(__package__).joinpath(kind, f"{language}.yaml")
    if not path.is_file():
        raise MijaError(f"no {kind} prompt for language '{language}'")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return BenchPrompt(kind, language, int(data["version"]), data.get("system") or "", data["user"])
