"""Turning a rewriter's raw continuation into a clean prompt, and telling when the rewriter refused.

The order matters: the injected prefix goes first (some backends echo it), then code fences and separator
lines (only the first block is the message), then a leading label ("Message:"), then trailing commentary
("Note: ..."), then wrapping quotes.
"""

from __future__ import annotations

import re

from .datafiles import rewriter_data

_SEPARATOR = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,}|={3,}|#{3,}|~{3,})\s*$")
_FENCE = re.compile(r"^\s*```[\w-]*\s*$")
_QUOTES = {'"': '"', "'": "'", "“": "”", "«": "»", "„": "“", "‘": "’", "`": "`"}
REFUSAL_WINDOW = 160  # characters at the start of a cleaned output searched for refusal phrases


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def strip_prefix(text: str, prefix: str | None) -> str:
    """Remove ``prefix`` (compared with whitespace and case ignored) when the output repeats it."""
    if not prefix or not _squash(prefix):
        return text
    target = _squash(prefix)
    stripped = text.lstrip()
    # Walk the output until its squashed form covers the squashed prefix, then cut there.
    for end in range(len(target), len(stripped) + 1):
        head = _squash(stripped[:end])
        if len(head) >= len(target):
            return stripped[end:] if head == target else text
    return text


def clean_rewrite(text: str, prefix: str | None, language: str) -> str:
    data = rewriter_data(language)
    text = strip_prefix(text or "", prefix)
    lines = [line for line in text.splitlines() if not _FENCE.match(line)]
    blocks, current = [], []
    for line in lines:
        if _SEPARATOR.match(line):
            blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    blocks.append("\n".join(current))
    text = next((b for b in blocks if b.strip()), "").strip()
    text = _strip_label(text, data.labels)
    text = _cut_commentary(text, data.trailing_markers)
    text = _unquote(text.strip())
    return text.strip()


def _strip_label(text: str, labels: tuple[str, ...]) -> str:
    names = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    pattern = re.compile(rf"^\s*(?:[#>*_]+\s*)?(?:{names})\s*(?:[*_]+\s*)?[:：]\s*(?:[*_]+\s*)?",
                         re.IGNORECASE)
    return pattern.sub("", text, count=1)


def _cut_commentary(text: str, markers: tuple[str, ...]) -> str:
    paragraphs = re.split(r"\n\s*\n", text)
    kept = [paragraphs[0]]
    for para in paragraphs[1:]:
        head = para.strip().lstrip("*_(").casefold()
        if any(head.startswith(m.lstrip("(")) for m in markers):
            break
        kept.append(para)
    return "\n\n".join(kept)


def _unquote(text: str) -> str:
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] in inner and text[0] not in "“«„‘":  # "a" and "b" is not one quoted string
            break
        text = inner.strip()
    return text


def is_refusal(text: str, language: str) -> bool:
    """True when the cleaned output opens like a refusal (in its language or in English)."""
    head = _squash(text[:REFUSAL_WINDOW]).replace("’", "'")
    phrases = set(rewriter_data(language).refusal_phrases) | set(rewriter_data("en").refusal_phrases)
    return any(p in head for p in phrases)


def word_count(text: str) -> int:
    return len(text.split())
