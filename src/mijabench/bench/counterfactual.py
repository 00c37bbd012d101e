"""Counterfactual group swaps: the same attack text aimed at another group.

Only the group's surface forms change (``data/<lang>/groups.yaml``), plus the determiner right before a form
when grammar demands it (English a/an; Portuguese gender of articles and the like). Capitalisation follows
the original: a form that opened a sentence still opens it, an all-caps form stays all caps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from .datafiles import Form, GroupTerms, LanguageTerms, group_terms

_SENTENCE_END = re.compile(r"(?:^|[.!?…]\s*|\n\s*|[\"“«(]\s*)$")
_WORD_BEFORE = re.compile(r"(\w+)(\s+)$")


@dataclass
class SwapResult:
    text: str
    swaps: list[tuple[str, str]] = field(default_factory=list)  # (old span, new span), in text order

    @property
    def found(self) -> bool:
        return bool(self.swaps)


@cache
def _pattern(language: str, group: str) -> tuple[re.Pattern, dict[str, Form]]:
    terms = group_terms(language).groups[group]
    by_key = {}
    for form in terms.forms:
        by_key.setdefault(form.text.casefold(), form)
    longest_first = sorted({f.text for f in terms.forms}, key=len, reverse=True)
    alternatives = "|".join(re.escape(f) for f in longest_first)
    return re.compile(rf"(?<![\w+-])(?:{alternatives})(?![\w+])", re.IGNORECASE), by_key


def find_mentions(text: str, group: str, language: str) -> list[tuple[re.Match, Form]]:
    """Spans of ``text`` that name ``group`` with one of its surface forms."""
    pattern, by_key = _pattern(language, group)
    out = []
    for match in pattern.finditer(text):
        form = by_key[match.group(0).casefold()]
        # A one-word form written with a capital (Black, Asian) only counts when capitalised in the text.
        if " " not in form.text and form.text[0].isupper() and not match.group(0)[0].isupper():
            continue
        out.append((match, form))
    return out


def swap_group(text: str, source: str, target: str, language: str) -> SwapResult:
    """``text`` with every mention of ``source`` replaced by the matching form of ``target``."""
    lang = group_terms(language)
    src, dst = lang.groups[source], lang.groups[target]
    mentions = find_mentions(text, source, language)
    if not mentions or source == target:
        return SwapResult(text)
    pieces, swaps, cursor = [], [], 0
    for match, form in mentions:
        start, end = match.span()
        written = dst.written(form.slot, form.gender)
        new = _cased(match.group(0), form, written.text, at_start=_opens_sentence(text[:start]))
        det_start, det_new = _determiner(text[:start], form, written, src, dst, lang)
        if det_start is not None:  # the determiner changes too: the swapped span starts at it
            start, new = det_start, det_new + text[_det_end(text, det_start):start] + new
        old_span = text[start:end]
        pieces.append(text[cursor:start])
        pieces.append(new)
        swaps.append((old_span, new))
        cursor = end
    pieces.append(text[cursor:])
    return SwapResult("".join(pieces), swaps)


def _det_end(text: str, det_start: int) -> int:
    m = re.compile(r"\w+").match(text, det_start)
    return m.end() if m else det_start


def _opens_sentence(before: str) -> bool:
    return bool(_SENTENCE_END.search(before))


def _cased(matched: str, form: Form, replacement: str, *, at_start: bool) -> str:
    if len(matched) > 1 and matched.isupper() and not form.text.isupper():
        return replacement.upper()
    capital_signal = matched[0].isupper() and not form.text[0].isupper()
    if (capital_signal or at_start) and replacement[:1].islower():
        return replacement[0].upper() + replacement[1:]
    return replacement


def _determiner(before: str, form: Form, written: Form, src: GroupTerms, dst: GroupTerms,
                lang: LanguageTerms) -> tuple[int | None, str]:
    """Where the determiner before a mention starts and what it must become, or (None, "") to keep it."""
    m = _WORD_BEFORE.search(before)
    if m is None:
        return None, ""
    word = m.group(1)
    if lang.determiners:  # gendered languages
        if not form.gender or not written.gender or form.gender == written.gender:
            return None, ""
        number = "plural" if form.slot == "plural" else "singular"
        fem_to_masc = lang.determiners.get(number, {})
        mapping = fem_to_masc if form.gender == "f" else {v: k for k, v in fem_to_masc.items()}
        new = mapping.get(word.casefold())
        if new is None:
            return None, ""
        return m.start(1), _match_case(word, new)
    if form.slot == "plural" or not dst.article or word.casefold() not in ("a", "an"):
        return None, ""
    if word.casefold() == dst.article:
        return None, ""
    return m.start(1), _match_case(word, dst.article)


def _match_case(original: str, new: str) -> str:
    if original.isupper() and len(original) > 1:
        return new.upper()
    if original[0].isupper():
        return new[0].upper() + new[1:]
    return new


def counterfactual_groups(language: str) -> list[str]:
    """Every group a counterfactual build aims each attack at, in taxonomy order."""
    from ..taxonomy import load_taxonomy
    return [g.id for g in load_taxonomy().groups_for(language)]
