"""Accuracy of the rule judge on the labelled replies in tests/data/rule_judge_labelled.jsonl.

    PYTHONPATH=src python benchmarks/rule_judge_accuracy.py [--split dev|heldout|all|probes] [--errors]

Prints accuracy per kind and language, overall, and replies per second. The set is split by a hash of each
id (60% dev, 40% held-out) so that phrase lists can be developed on one part and checked on the other.
``probes`` is a second, smaller file of replies written later, in other styles, to find what the phrase
lists missed; it was used for development, so it is not a held-out measure.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import defaultdict
from pathlib import Path

from mijabench.judge.rules import RefusalRules

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
LABELLED = DATA / "rule_judge_labelled.jsonl"
PROBES = DATA / "rule_judge_probes.jsonl"


def split_of(item_id: str) -> str:
    return "dev" if zlib.crc32(item_id.encode()) % 5 < 3 else "heldout"


def load(split: str = "all") -> list[dict]:
    path = PROBES if split == "probes" else LABELLED
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split in ("all", "probes") or split_of(r["id"]) == split]


def score(rows: list[dict], judge: RefusalRules | None = None) -> dict[tuple[str, str], list[int]]:
    """(kind, language) -> [correct, total], with ("all", language) and ("all", "all") totals."""
    judge = judge or RefusalRules()
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        ok = int(judge.judge(row["reply"]).label == row["label"])
        kind, language = row["kind"], row["language"]
        for key in ((kind, language), ("all", language), (kind, "all"), ("all", "all")):
            out[key][0] += ok
            out[key][1] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["dev", "heldout", "all", "probes"], default="all")
    parser.add_argument("--errors", action="store_true", help="print the misjudged replies")
    args = parser.parse_args()
    rows = load(args.split)
    judge = RefusalRules()
    result = score(rows, judge)
    kinds = sorted({k for k, _ in result if k != "all"}) + ["all"]
    print(f"{'kind':26} {'en':>9} {'pt':>9} {'all':>9}")
    for kind in kinds:
        cells = []
        for lang in ("en", "pt", "all"):
            ok, n = result.get((kind, lang), (0, 0))
            cells.append(f"{ok}/{n}" if n else "-")
        print(f"{kind:26} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9}")
    ok, n = result[("all", "all")]
    print(f"accuracy ({args.split}): {ok / n:.3f} on {n} replies")
    if args.errors:
        for row in rows:
            verdict = judge.judge(row["reply"])
            if verdict.label != row["label"]:
                print(f"- {row['id']} ({row['label']}): {verdict.reasoning}\n    {row['reply'][:150]!r}")
    replies = [r["reply"] for r in load("all")] * 200
    start = time.perf_counter()
    for reply in replies:
        judge.judge(reply)
    elapsed = time.perf_counter() - start
    print(f"speed: {len(replies) / elapsed:,.0f} replies/second ({len(replies)} judged)")


if __name__ == "__main__":
    main()
