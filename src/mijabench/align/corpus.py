"""The alignment corpus: every judged response with its prompt, its item's attributes, every judge's vote and
the final verdict, exported as Parquet and as a Hugging Face ``datasets`` dataset.

Column names follow the published corpus (``AKCIT/mijabench_align``) where they overlap: ``text`` (the seed),
``group``, ``language``, ``dataset_source``, ``scenario_category``, ``scenario``, ``jb_strategy``,
``jb_prompt``. One difference: the published corpus holds one wide row per prompt with a response column
per model; this one holds one row per (prompt, model) response, which is what preference pairs need.
Languages are our codes (``en``, ``pt``).

Export reads the store directly rather than through ``analysis.load_judged`` because the corpus carries
every judge's vote and the texts, which the analysis table leaves out.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MijaError
from ..judge.vote import final_label
from ..store import Store

VOTE_TYPE = pa.struct([("judge", pa.string()), ("label", pa.string())])
CORPUS_SCHEMA = pa.schema([
    ("text", pa.string()),  # the seed statement
    ("group", pa.string()),
    ("language", pa.string()),
    ("dataset_source", pa.string()),
    ("scenario_category", pa.string()),
    ("scenario", pa.string()),
    ("jb_strategy", pa.string()),
    ("jb_prompt", pa.string()),
    ("model", pa.string()),
    ("jb_response", pa.string()),
    ("votes", pa.list_(VOTE_TYPE)),
    ("label", pa.string()),  # final vote: safe | harmful | unparsed
    ("item_id", pa.string()),
    ("response_id", pa.string()),
    ("seed_id", pa.string()),
    ("pair_id", pa.string()),
])
CORPUS_FILE = "corpus.parquet"
DATASET_DIR = "dataset"


def judged_rows(store: Store, judges: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per answered response that has at least one verdict (of ``judges`` when given), in store
    order, with the columns of ``CORPUS_SCHEMA``."""
    votes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for response_id, judge, label in store.query(
            "SELECT response_id, judge, label FROM verdicts ORDER BY response_id, judge"):
        if not judges or judge in judges:
            votes[response_id].append({"judge": judge, "label": label})
    rows = store.query("""
        SELECT r.id, r.model, r.text, i.id, i.language, i.group_id, i.seed_id, i.seed_text,
               i.scenario_category, i.scenario_text, i.strategy, i.prompt, i.pair_id, i.provenance,
               s.source
        FROM responses r JOIN items i ON i.id = r.item_id LEFT JOIN seeds s ON s.id = i.seed_id
        WHERE r.error IS NULL AND r.text IS NOT NULL
        ORDER BY r.rowid""")
    out = []
    for (response_id, model, text, item_id, language, group, seed_id, seed_text, category, scenario,
         strategy, prompt, pair_id, provenance, seed_source) in rows:
        these = votes.get(response_id)
        if not these:
            continue
        source = seed_source or _provenance_source(provenance)
        out.append({
            "text": seed_text, "group": group, "language": language, "dataset_source": source,
            "scenario_category": category, "scenario": scenario, "jb_strategy": strategy,
            "jb_prompt": prompt, "model": model, "jb_response": text, "votes": these,
            "label": final_label([v["label"] for v in these]), "item_id": item_id,
            "response_id": response_id, "seed_id": seed_id, "pair_id": pair_id,
        })
    return out


def _provenance_source(provenance: str) -> str:
    try:
        data = json.loads(provenance or "{}")
    except json.JSONDecodeError:
        return ""
    return str(data.get("seed_source") or data.get("source") or "")


@dataclass
class ExportResult:
    rows: int
    parquet: Path
    dataset: Path
    pushed_to: str | None = None


def corpus_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA)


def export_corpus(store: Store, out: str | Path, *, push_to_hub: str | None = None,
                  private: bool = True, judges: list[str] | None = None) -> ExportResult:
    """Write ``out/corpus.parquet`` and ``out/dataset/`` (``datasets.load_from_disk``); optionally push the
    dataset to the hub. Files are written under temporary names and renamed, so an interrupted export leaves
    the previous one intact."""
    rows = judged_rows(store, judges)
    if not rows:
        raise MijaError("nothing to export: the store holds no judged responses (run and judge first)")
    table = corpus_table(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parquet = out / CORPUS_FILE
    tmp = parquet.with_name(parquet.name + ".part")
    pq.write_table(table, tmp)
    os.replace(tmp, parquet)

    from datasets import Dataset  # heavy; only this command needs it
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    dataset = Dataset(table)
    target = out / DATASET_DIR
    staging = out / f".{DATASET_DIR}.part"
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    replace_dir(staging, target)
    result = ExportResult(len(rows), parquet, target)
    if push_to_hub:
        push_dataset(dataset, push_to_hub, private=private)
        result.pushed_to = push_to_hub
    return result


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished folder into place, replacing an older one only once the new one is complete."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def push_dataset(dataset, repo: str, *, private: bool = True) -> None:
    """Push to the Hugging Face hub. Needs a token (``HF_TOKEN`` or ``hf auth login``) and network; every
    failure becomes one line, and the token is never printed."""
    from huggingface_hub import get_token

    from ..store.secrets import scrub_text

    if "/" not in repo:
        raise MijaError(f"--push-to-hub: '{repo}' must look like OWNER/NAME")
    if not get_token():
        raise MijaError("pushing to the hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login` "
                        "(the local export was written)")
    try:
        dataset.push_to_hub(repo, private=private)
    except Exception as exc:  # noqa: BLE001 - network, auth, permission: all end as one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MijaError(f"push to {repo} failed ({scrub_text(first)}); the local export was written") from exc
