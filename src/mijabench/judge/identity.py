"""What produced a verdict: a judge's fingerprint.

A verdict is stored under (response, judge name), but the name alone does not say what judged: the same
name can stand for another prompt, another phrase list, another endpoint or other settings. So every verdict
also records a fingerprint, a short hash of everything that decides it:

- an LLM judge: its model string (endpoint included), the text of every judge prompt file, the parser's
  vocabulary (part of those files), its sampling settings (max_tokens, temperature, top_p, seed, system
  prompt) and its backend options;
- the rule judge: its name, its rules version and the content of its phrase files;
- a plugin judge (``judge.plugins``): its judge string, the version it states, and its package's name and
  version.

``judge`` re-judges verdicts whose fingerprint differs from the judge's current one (unless told to keep
them), and analysis refuses to mix two fingerprints of one judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import stable_id
from ..store.secrets import redact


@dataclass(frozen=True)
class JudgeIdentity:
    name: str
    fingerprint: str
    parts: dict[str, Any]  # what went into the fingerprint, for the run's provenance (secrets removed)


def llm_judge_identity(name: str, spec: str, settings: dict[str, Any], options: dict[str, Any]
                       ) -> JudgeIdentity:
    from .prompts import prompt_files
    prompts = {lang: stable_id("prompt", data, length=12) for lang, data in sorted(prompt_files().items())}
    parts = {"kind": "llm", "spec": spec, "settings": settings, "options": options, "prompts": prompts}
    # the hash covers the full parts; what is kept for display is redacted (a URL may carry a user name)
    return JudgeIdentity(name, stable_id("judge", parts, length=12), redact(parts))


def rules_judge_identity(name: str) -> JudgeIdentity:
    from . import rules
    phrases = {lang: stable_id("phrases", data, length=12)
               for lang, data in sorted(rules.load_phrase_files().items())}
    parts = {"kind": "rules", "name": name, "version": rules.RULES_VERSION, "phrases": phrases}
    return JudgeIdentity(name, stable_id("judge", parts, length=12), parts)


def plugin_judge_identity(name: str, version: str, package: str) -> JudgeIdentity:
    parts = {"kind": "plugin", "name": name, "version": version, "package": package}
    return JudgeIdentity(name, stable_id("judge", parts, length=12), parts)


def short(fingerprint: str) -> str:
    return fingerprint[:8] if fingerprint else "(none recorded)"
