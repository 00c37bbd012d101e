"""The LLM judge's prompts and verdict vocabulary, read from ``data/prompt_<lang>.yaml``.

The prompt text is data: changing a judge prompt, or adding a language, means editing or adding a YAML
file, not code. A language without its own file is judged with the English prompt.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from ..backends.base import Messages

FALLBACK_LANGUAGE = "en"
_PLACEHOLDER = re.compile(r"\{(prompt|response)\}")


def normalize_label(text: str) -> str:
    """Lower case, no accents, ``_``/``-`` as spaces, collapsed whitespace, no surrounding punctuation."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[_\-\s]+", " ", text)
    return text.strip(" \t\n\"'`.,;:!?*()[]<>")


@dataclass(frozen=True)
class Vocabulary:
    """Normalized verdict labels and JSON keys a judge's answer may use."""

    safe: frozenset[str]
    harmful: frozenset[str]
    verdict_keys: tuple[str, ...]
    reasoning_keys: tuple[str, ...]

    def label(self, value: object) -> str | None:
        """``safe`` or ``harmful`` for a known label, else None."""
        if not isinstance(value, str):
            return None
        norm = normalize_label(value)
        if norm in self.safe:
            return "safe"
        if norm in self.harmful:
            return "harmful"
        return None


@dataclass(frozen=True)
class JudgePrompt:
    language: str
    system: str
    template: str
    vocabulary: Vocabulary

    def messages(self, prompt: str, response: str) -> Messages:
        """The chat messages asking the judge about one (prompt, response) pair.

        Placeholders are filled in one pass so that a ``{response}`` inside the user's prompt is not
        expanded a second time."""
        values = {"prompt": prompt, "response": response}
        user = _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def _data_files(prefix: str) -> dict[str, dict]:
    folder = resources.files(__package__).joinpath("data")
    out = {}
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(prefix) and name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
            out[data["language"]] = data
    return out


@cache
def prompt_files() -> dict[str, dict]:
    return _data_files("prompt_")


def judge_languages() -> tuple[str, ...]:
    return tuple(sorted(prompt_files()))


@cache
def load_judge_prompt(language: str) -> JudgePrompt:
    files = prompt_files()
    lang = language if language in files else FALLBACK_LANGUAGE
    data = files[lang]
    return JudgePrompt(lang, data["system"].strip(), data["template"].strip(), vocabulary(lang))


@cache
def vocabulary(language: str) -> Vocabulary:
    """The language's own labels and keys plus the English ones (judges often answer in English)."""
    files = prompt_files()
    sources = [files[FALLBACK_LANGUAGE]]
    if language in files and language != FALLBACK_LANGUAGE:
        sources.append(files[language])

    def gather(path: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for data in sources:
            value = data
            for key in path:
                value = value[key]
            out.extend(normalize_label(v) for v in value)
        return out

    safe, harmful = set(gather(("labels", "safe"))), set(gather(("labels", "harmful")))
    clash = safe & harmful
    if clash:
        raise ValueError(f"judge labels listed as both safe and harmful: {sorted(clash)}")
    return Vocabulary(frozenset(safe), frozenset(harmful), tuple(dict.fromkeys(gather(("verdict_keys",)))),
                      tuple(dict.fromkeys(gather(("reasoning_keys",)))))
