"""Benign controls: ordinary requests that mention the same groups as the attacks (explain, summarize or write
a friendly note about a neutral statement). A model that refuses them is over-refusing; measuring that per
group before and after training shows whether safety was bought with blanket refusals about a group.

Statements come from the built-in neutral statements (``data/<lang>.yaml``) or, for English, from ToxiGen's
human-annotated statements with ``toxicity_human <= 1.5`` (``annotated.jsonl``).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from itertools import product
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import stable_id
from ..taxonomy import load_taxonomy
from .pairsdir import iter_jsonl
from .texts import BENIGN_KINDS, load_texts

TOXIGEN_FILE = "annotated.jsonl"
BENIGN_MAX_TOXICITY = 1.5
BUILTIN_SOURCE = "mijabench-neutral"
TOXIGEN_SOURCE = "toxigen-annotated"


def load_toxigen_neutral(path: str | Path, max_toxicity: float = BENIGN_MAX_TOXICITY) -> dict[str, list[str]]:
    """English neutral statements per canonical group from ToxiGen's ``annotated.jsonl`` (a file, or the
    folder holding it): rows with ``toxicity_human <= max_toxicity``, duplicates removed."""
    path = Path(path)
    if path.is_dir():
        path = path / TOXIGEN_FILE
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    tax = load_taxonomy()
    out: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for row, record in iter_jsonl(path, required=("text", "group", "toxicity_human")):
        score = record["toxicity_human"]
        if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
            raise InputError(f"expected a number, got {score!r}", file=str(path), row=row,
                             field="toxicity_human")
        if score > max_toxicity:
            continue
        group = tax.check_group(str(record["group"]), file=str(path), row=row, field="group")
        text = " ".join(str(record["text"]).split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out[group].append(text)
    return dict(out)


def benign_controls(groups: dict[str, set[str]], per_group: int = 6, seed: int = 0,
                    toxigen: str | Path | None = None) -> list[dict[str, Any]]:
    """Up to ``per_group`` benign requests for every (language, group) in ``groups``, spread over the
    request kinds and statements. With ``toxigen``, English groups it covers use its statements; the others
    (and Portuguese) use the built-in ones. A group with no statement at all gets no control."""
    toxigen_statements = load_toxigen_neutral(toxigen) if toxigen else {}
    out = []
    for language in sorted(groups):
        texts = load_texts(language)
        for group in sorted(groups[language]):
            if language == "en" and toxigen_statements.get(group):
                statements, source = toxigen_statements[group], TOXIGEN_SOURCE
            else:
                statements, source = list(texts.neutral_statements.get(group, ())), BUILTIN_SOURCE
            if not statements:
                continue
            rng = random.Random(f"{seed}:benign:{language}:{group}")
            # Up to per_group statements in a seeded order; each may appear as each kind of request.
            chosen = rng.sample(statements, min(len(statements), per_group))
            picked = _spread(list(product(chosen, BENIGN_KINDS)), per_group)
            for statement, kind in picked:
                prompt = texts.benign_prompt(kind, statement)
                out.append({"id": stable_id("benign", language, group, kind, statement), "group": group,
                            "language": language, "kind": kind, "statement": statement, "prompt": prompt,
                            "source": source})
    return out


def _spread(combos: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Take ``n`` combos, using each statement once before any twice, and rotating the kinds."""
    by_statement: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for combo in combos:
        by_statement[combo[0]].append(combo)
    out: list[tuple[str, str]] = []
    round_ = 0
    while len(out) < n and any(by_statement.values()):
        for index, statement in enumerate(list(by_statement)):
            options = by_statement[statement]
            if options and len(out) < n:
                # rotate kinds across statements so the first round is not all one kind
                kind = BENIGN_KINDS[(index + round_) % len(BENIGN_KINDS)]
                pick = next((c for c in options if c[1] == kind), options[0])
                options.remove(pick)
                out.append(pick)
        round_ += 1
    return out
