"""Export human labels in the format `mijabench judge validate` reads, with agreement and majorities.

The labels file (JSONL or CSV, by the file's suffix) holds one row per person per labelled response:
``response_id, label, annotator, note``. Skipped items are not labels and are left out. A second file next
to it, ``<name>.majority.<suffix>``, holds one row per response: the people's majority label and the counts
behind it. An even split is marked ``tie``: human ground truth is missing there, and `judge validate` drops
such responses too (unlike the judges' vote, whose ties count as harmful).

Agreement uses the judges' implementation (mijabench.judge.agreement), so people and judges are measured
with the same statistics.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MijaError
from ..judge.agreement import cohen_kappa, krippendorff_alpha
from ..records import HARMFUL, SAFE
from ..store import Store
from . import db

TIE = "tie"

LABEL_FIELDS = ("response_id", "label", "annotator", "note")
MAJORITY_FIELDS = ("response_id", "majority", "harmful", "safe", "annotators", "tie")


@dataclass
class ExportReport:
    sample: str
    labels_path: Path
    majority_path: Path
    labels: int
    skipped: int
    per_annotator: dict[str, int]
    majority: dict[str, str]  # response_id -> harmful / safe / tie
    ties: int
    agreement_statistic: str | None = None  # "cohen_kappa" or "krippendorff_alpha"
    agreement: float | None = None
    agreement_items: int = 0  # items the statistic was computed on
    notes: list[str] = field(default_factory=list)


def majority_path_for(out: Path) -> Path:
    return out.with_name(f"{out.stem}.majority{out.suffix}")


def export_labels(store: Store, out: str | Path, sample: str | None = None) -> ExportReport:
    out = Path(out)
    fmt = _format_of(out)
    info = db.resolve_sample(store, sample)
    rows = db.annotations(store, info.name)
    labelled = [a for a in rows if a.label in (HARMFUL, SAFE)]
    per_item: dict[str, dict[str, str]] = defaultdict(dict)
    for a in labelled:
        per_item[a.response_id][a.annotator] = a.label

    majority_rows, majority, ties = [], {}, 0
    for response_id in sorted(per_item):
        counts = Counter(per_item[response_id].values())
        tie = counts[HARMFUL] == counts[SAFE]
        ties += tie
        majority[response_id] = TIE if tie else (HARMFUL if counts[HARMFUL] > counts[SAFE] else SAFE)
        majority_rows.append({"response_id": response_id, "majority": majority[response_id],
                              "harmful": counts[HARMFUL], "safe": counts[SAFE],
                              "annotators": sum(counts.values()), "tie": tie})

    label_rows = [{"response_id": a.response_id, "label": a.label, "annotator": a.annotator, "note": a.note}
                  for a in sorted(labelled, key=lambda a: (a.response_id, a.annotator))]
    majority_path = majority_path_for(out)
    _write(out, fmt, LABEL_FIELDS, label_rows)
    _write(majority_path, fmt, MAJORITY_FIELDS, majority_rows)

    report = ExportReport(sample=info.name, labels_path=out, majority_path=majority_path,
                          labels=len(labelled), skipped=sum(a.label == "skip" for a in rows),
                          per_annotator=dict(sorted(Counter(a.annotator for a in labelled).items())),
                          majority=majority, ties=ties)
    _add_agreement(report, per_item)
    return report


def _add_agreement(report: ExportReport, per_item: dict[str, dict[str, str]]) -> None:
    people = sorted(report.per_annotator)
    if len(people) < 2:
        report.notes.append("agreement needs at least two annotators")
        return
    if len(people) == 2:
        a, b = people
        both = [labels for labels in per_item.values() if a in labels and b in labels]
        report.agreement_statistic = "cohen_kappa"
        report.agreement_items = len(both)
        value = cohen_kappa([x[a] for x in both], [x[b] for x in both])
    else:
        units = [list(labels.values()) for labels in per_item.values() if len(labels) >= 2]
        report.agreement_statistic = "krippendorff_alpha"
        report.agreement_items = len(units)
        value = krippendorff_alpha(units)
    report.agreement = None if math.isnan(value) else value
    if report.agreement is None:
        report.notes.append("agreement undefined (too few shared items, or one label value only)")


def _format_of(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise MijaError(f"{out}: choose a .jsonl or .csv file name for the labels")


def _write(path: Path, fmt: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write to a temporary file next to ``path`` and rename it into place: no half-written export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            if fmt == "jsonl":
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
