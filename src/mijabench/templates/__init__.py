"""Prompt templates per language, kept as data files: ``<kind>/<language>.yaml``.

Each file holds ``version``, ``system`` and ``user``, with ``$name`` placeholders (``string.Template``, so a
JSON example in a prompt needs no escaping). A template's ``version_tag`` joins the declared version with a
hash of its text: editing a template without bumping its version still changes what provenance records.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from ..errors import MijaError
from ..records import stable_id


@dataclass(frozen=True)
class PromptTemplate:
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
def load_template(kind: str, language: str) -> PromptTemplate:
    """The ``kind`` template (``rewriter``, ``scenarios``, ...) in ``language``."""
    path = resources.files(__package__).joinpath(kind, f"{language}.yaml")
    if not path.is_file():
        raise MijaError(f"no {kind} template for language '{language}'")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return PromptTemplate(kind, language, int(data["version"]), data.get("system") or "", data["user"])
