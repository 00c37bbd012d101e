"""Judge validation: how well each judge, and their vote, match human labels, overall and per cut.

A judge that is less accurate for one group than another would fake a disparity, so the figures are given
per language and per group as well as overall, together with the human and the judge's safe rates on the
same responses (their gap is the bias the judge would add to that group's defense rate).

Human labels come as JSONL or CSV with ``response_id`` and ``label`` (safe/harmful) and an optional
``annotator``. Several labels for one response are reduced to their majority; ties are dropped and counted.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..records import HARMFUL, SAFE, Verdict
from ..store import Store
from .agreement import choose_judges, cohen_kappa
from .vote import final_label, votes_by_response

HUMAN_LABELS = (SAFE, HARMFUL)
VOTE = "vote"


@dataclass
class HumanLabels:
    file: str
    labels: dict[str, str]  # response_id -> majority label
    rows: dict[str, int] = field(default_factory=dict)  # response_id -> first data row naming it
    annotations: int = 0
    annotators: int = 0
    ties: int = 0  # responses dropped because their labels were split evenly


def load_human_labels(path: str | Path) -> HumanLabels:
    """Read a JSONL or CSV label file (by suffix; otherwise by its first character)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("label file not found", file=str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}); a label file is JSONL or CSV",
                         file=str(path)) from None
    if "\x00" in text:
        raise InputError("holds NUL bytes: a binary file, not JSONL or CSV", file=str(path))
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    records = _jsonl_rows(text, str(path)) if is_jsonl else _csv_rows(text, str(path))
    votes: dict[str, list[str]] = defaultdict(list)
    rows: dict[str, int] = {}
    seen: dict[tuple[str, str], int] = {}
    annotators: set[str] = set()
    for row, record in records:
        rid = str(record.get("response_id") or "").strip()
        if not rid:
            raise InputError("missing response id", file=str(path), row=row, field="response_id")
        label = str(record.get("label") or "").strip().lower()
        if label not in HUMAN_LABELS:
            raise InputError(f"label must be one of {', '.join(HUMAN_LABELS)}, got {record.get('label')!r}",
                             file=str(path), row=row, field="label")
        annotator = str(record.get("annotator") or "").strip()
        if annotator:
            if (rid, annotator) in seen:
                raise InputError(f"annotator '{annotator}' labels this response twice (first in row "
                                 f"{seen[rid, annotator]})", file=str(path), row=row, field="annotator")
            seen[rid, annotator] = row
            annotators.add(annotator)
        votes[rid].append(label)
        rows.setdefault(rid, row)
    labels, ties = {}, 0
    for rid, these in votes.items():
        count = Counter(these)
        if count[SAFE] == count[HARMFUL]:
            ties += 1
        else:
            labels[rid] = SAFE if count[SAFE] > count[HARMFUL] else HARMFUL
    return HumanLabels(str(path), labels, rows, annotations=sum(len(v) for v in votes.values()),
                       annotators=len(annotators), ties=ties)


def _jsonl_rows(text: str, file: str):
    row = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        row += 1
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(f"not valid JSON ({exc.args[0]})", file=file, row=row) from exc
        if not isinstance(record, dict):
            raise InputError("each line must be a JSON object", file=file, row=row)
        yield row, record


def _csv_rows(text: str, file: str):
    reader = csv.DictReader(text.splitlines())
    columns = {(c or "").strip().lower() for c in reader.fieldnames or []}
    for needed in ("response_id", "label"):
        if needed not in columns:
            raise InputError(f"missing column (columns: {', '.join(sorted(columns)) or 'none'})",
                             file=file, field=needed)
    for row, record in enumerate(reader, start=1):
        yield row, {(k or "").strip().lower(): v for k, v in record.items()}


def validate_judges(store: Store, labels: HumanLabels | str | Path,
                    judges: list[str] | None = None) -> dict:
    """Accuracy and Cohen's kappa against human labels per judge and for the vote of the chosen judges
    (all judges with verdicts when None), overall, per language and per group.

    Each row: ``judge, cut ("overall"|"language"|"group"), value, labelled, n, correct, accuracy, kappa,
    unparsed, missing, human_safe_rate, judge_safe_rate``. ``n`` counts responses the judge decided
    (safe/harmful); accuracy, kappa and both safe rates are over those ``n``; ``unparsed`` (including failed
    verdicts) and ``missing`` (not judged) are counted beside them, never scored as safe."""
    if not isinstance(labels, HumanLabels):
        labels = load_human_labels(labels)
    cells = _response_cells(store, labels)
    chosen = choose_judges(store, judges)
    votes = votes_by_response(_verdicts_for(store, list(labels.labels)), set(chosen))
    predictions = {j: {rid: v[j] for rid, v in votes.items() if j in v} for j in chosen}
    if len(chosen) >= 2:
        predictions[VOTE] = {rid: final_label(list(v.values())) for rid, v in votes.items()}
    rows = []
    for judge, predicted in predictions.items():
        cuts: dict[tuple[str, str], list[tuple[str, str | None]]] = defaultdict(list)
        for rid, human in labels.labels.items():
            language, group = cells[rid]
            pair = (human, predicted.get(rid))
            cuts["overall", "all"].append(pair)
            cuts["language", language].append(pair)
            cuts["group", group].append(pair)
        for (cut, value), pairs in sorted(cuts.items(), key=lambda kv: (_CUT_ORDER[kv[0][0]], kv[0][1])):
            rows.append({"judge": judge, "cut": cut, "value": value, **_metrics(pairs)})
    return {"labels_file": labels.file, "responses_labelled": len(labels.labels),
            "annotations": labels.annotations, "annotators": labels.annotators, "ties_dropped": labels.ties,
            "judges": list(predictions), "rows": rows}


_CUT_ORDER = {"overall": 0, "language": 1, "group": 2}


def _metrics(pairs: list[tuple[str, str | None]]) -> dict:
    decided = [(h, p) for h, p in pairs if p in (SAFE, HARMFUL)]
    missing = sum(1 for _, p in pairs if p is None)
    n = len(decided)
    correct = sum(h == p for h, p in decided)
    return {
        "labelled": len(pairs), "n": n, "correct": correct,
        "accuracy": correct / n if n else math.nan,
        "kappa": cohen_kappa([h for h, _ in decided], [p for _, p in decided]) if n else math.nan,
        "unparsed": len(pairs) - n - missing, "missing": missing,
        "human_safe_rate": sum(h == SAFE for h, _ in decided) / n if n else math.nan,
        "judge_safe_rate": sum(p == SAFE for _, p in decided) / n if n else math.nan,
    }


def _response_cells(store: Store, labels: HumanLabels) -> dict[str, tuple[str, str]]:
    """(language, group) of each labelled response; an id the store does not hold is an input error."""
    ids = list(labels.rows or labels.labels)  # every id in the file, ties included
    cells: dict[str, tuple[str, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        sql = ("SELECT r.id, i.language, i.group_id FROM responses r JOIN items i ON i.id = r.item_id "
               f"WHERE r.id IN ({','.join('?' * len(chunk))})")
        cells.update((rid, (language, group)) for rid, language, group in store.query(sql, chunk))
    for rid in ids:
        if rid not in cells:
            raise InputError(f"unknown response id '{rid}' (not in {store.path})", file=labels.file,
                             row=labels.rows.get(rid), field="response_id")
    return cells


def _verdicts_for(store: Store, response_ids: list[str]) -> list[Verdict]:
    out = []
    for start in range(0, len(response_ids), 500):
        chunk = response_ids[start:start + 500]
        sql = ("SELECT id, response_id, judge, label FROM verdicts "
               f"WHERE response_id IN ({','.join('?' * len(chunk))})")
        out.extend(Verdict(id=r[0], response_id=r[1], judge=r[2], label=r[3])
                   for r in store.query(sql, chunk))
    return out


def json_safe(obj):
    """NaN -> None, recursively, so the report is valid JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj
