"""Reading a list of short texts out of a model's answer, without ever evaluating it.

Models wrap JSON in code fences, leave trailing commas, break one item and keep going, or run out of tokens
mid-list. ``parse_text_list`` keeps every item it can decode and reports what it had to skip, so one broken
item costs one item, not the whole call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,3}[.)])\s+(.+?)\s*$")
_TEXT_KEYS = ("scenario", "text", "setting", "description", "content")
_DECODER = json.JSONDecoder()
_RESUME = re.compile(r"[,\n]")


@dataclass
class ParsedList:
    items: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per skipped item or repaired defect


def parse_text_list(raw: str, *, min_words: int = 3, max_chars: int = 400) -> ParsedList:
    """Strings from a JSON list in ``raw`` (objects with a text-like key count too)."""
    out = ParsedList()
    text = _FENCE.sub("", raw or "").strip()
    start = text.find("[")
    if start < 0:
        return _bullets(text, out, min_words, max_chars)
    body = text[start:]
    end = body.rfind("]")
    candidate = _TRAILING_COMMA.sub(r"\1", body[:end + 1]) if end > 0 else ""
    try:
        values = json.loads(candidate) if candidate else None
    except json.JSONDecodeError:
        values = None
    if isinstance(values, list):
        for n, value in enumerate(values, 1):
            _keep(value, n, out, min_words, max_chars)
        return out
    out.problems.append("list is not valid JSON; kept the items that decode on their own")
    _scan(body, out, min_words, max_chars)
    return out


def _scan(body: str, out: ParsedList, min_words: int, max_chars: int) -> None:
    """Decode the list item by item; after a broken item, resume after the next comma or line break."""
    pos, n = 1, 0
    while pos < len(body):
        while pos < len(body) and body[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(body) or body[pos] == "]":
            return
        n += 1
        try:
            value, pos = _DECODER.raw_decode(body, pos)
        except json.JSONDecodeError as exc:
            out.problems.append(f"item {n}: broken JSON ({exc.msg}) near {body[pos:pos + 40]!r}")
            nxt = _RESUME.search(body, pos + 1)
            if nxt is None:
                return
            pos = nxt.end()
            continue
        _keep(value, n, out, min_words, max_chars)


def _bullets(text: str, out: ParsedList, min_words: int, max_chars: int) -> ParsedList:
    lines = [m.group(1).strip().strip('"“”') for line in text.splitlines() if (m := _BULLET.match(line))]
    if not lines:
        out.problems.append("no JSON list and no bulleted list in the answer")
        return out
    out.problems.append("no JSON list; read a bulleted or numbered list instead")
    for n, line in enumerate(lines, 1):
        _keep(line, n, out, min_words, max_chars)
    return out


def _keep(value, n: int, out: ParsedList, min_words: int, max_chars: int) -> None:
    if isinstance(value, dict):
        value = next((value[k] for k in _TEXT_KEYS if isinstance(value.get(k), str)), None) or next(
            (v for v in value.values() if isinstance(v, str)), None)
    if not isinstance(value, str):
        out.problems.append(f"item {n}: not a string ({type(value).__name__})")
        return
    text = " ".join(value.split())
    if len(text.split()) < min_words:
        out.problems.append(f"item {n}: too short ({text!r})")
    elif len(text) > max_chars:
        out.problems.append(f"item {n}: too long ({len(text)} characters)")
    else:
        out.items.append(text)
