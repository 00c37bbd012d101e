"""One row per model *and settings*: a model asked with and without a system prompt, or at two
temperatures, answers two different questions, so its responses are never pooled into one rate.

A model stored under one set of sampling settings keeps its plain name. A model stored under several gets
one label per settings, naming only what differs between them, e.g. ``llama3 [temperature=0.7]`` and
``llama3 [temperature=0]``, or ``llama3 [system prompt 3f9a1c]`` and ``llama3 [no system prompt]``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

_NAMES = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed"}


def _describe(field: str, value: Any) -> str:
    if field == "system_prompt":
        if not value:
            return "no system prompt"
        return "system prompt " + hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:6]
    if field == "thinking":
        return "thinking on" if value else "thinking off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{_NAMES.get(field, field)}={value}"


def variant_labels(rows: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    """(model, settings_key, settings JSON) for every distinct pair -> a readable, unique label."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for model, key, settings in rows:
        by_model.setdefault(model, {})[key] = json.loads(settings) if settings else {}
    labels: dict[tuple[str, str], str] = {}
    for model, variants in by_model.items():
        if len(variants) == 1:
            labels[(model, next(iter(variants)))] = model
            continue
        fields = sorted({f for s in variants.values() for f in s})
        differing = [f for f in fields if len({json.dumps(s.get(f), sort_keys=True)
                                               for s in variants.values()}) > 1]
        used: set[str] = set()
        for key in sorted(variants):
            settings = variants[key]
            label = f"{model} [{', '.join(_describe(f, settings.get(f)) for f in differing)}]"
            if label in used:  # settings that differ only in fields this describes alike
                label = f"{label[:-1]}, settings {key}]"
            used.add(label)
            labels[(model, key)] = label
    return labels
