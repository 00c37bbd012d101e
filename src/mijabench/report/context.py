"""What the report needs from the store besides the statistics: example prompt/response pairs, the judges'
votes on them, run provenance, and the banners (template-built benchmark, demo)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.table import ST_HARMFUL, ST_SAFE, JudgedTable

MAX_EXAMPLE_CHARS = 1500


@dataclass
class Example:
    model: str
    language: str
    group: str
    label: str
    prompt: str
    response: str
    strategy: str
    votes: list[tuple[str, str, str]] = field(default_factory=list)  # (judge, label, reasoning)


def _clip(text: str | None, limit: int = MAX_EXAMPLE_CHARS) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit:,} more characters]"


def pick_examples(store, table: JudgedTable, per_cell: int, seed: int = 0,
                  judges: list[str] | None = None) -> list[Example]:
    """Up to ``per_cell`` judged responses per model x language x group cell, alternating harmful and safe
    ones (harmful first: they are what a reader checks), chosen at random with ``seed``."""
    if per_cell <= 0 or not len(table):
        return []
    status = table.status
    judged = np.flatnonzero((status == ST_SAFE) | (status == ST_HARMFUL))
    if not len(judged):
        return []
    model, lang, group = (table.cat(c).codes[judged].astype(np.int64) for c in ("model", "language", "group"))
    cell = (model * (len(table.cat("language").categories) + 1) + lang) * (len(table.cat("group").categories)
                                                                             + 1) + group
    # harmful before safe: status code 1 -> 0, 0 -> 1
    kind = np.where(status[judged] == ST_HARMFUL, 0, 1)
    noise = np.random.default_rng(seed).random(len(judged))
    judged, cell, kind, noise = _lowest_noise(judged, cell, kind, noise, per_cell)
    order = np.lexsort((noise, kind, cell))
    cell_o, kind_o = cell[order], kind[order]
    group_start = np.flatnonzero(np.r_[True, (cell_o[1:] != cell_o[:-1]) | (kind_o[1:] != kind_o[:-1])])
    rank = np.arange(len(order)) - np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    interleaved = order[np.lexsort((kind_o, rank, cell_o))]  # per cell: harmful#0, safe#0, harmful#1...
    cell_i = cell[interleaved]
    cell_start = np.flatnonzero(np.r_[True, cell_i[1:] != cell_i[:-1]])
    position = np.arange(len(interleaved)) - np.repeat(cell_start, np.diff(np.r_[cell_start, len(cell_i)]))
    chosen = judged[interleaved[position < per_cell]]

    ids = table.cat("response_id").take(chosen).values().tolist()
    texts = _fetch(store, ids, judges)
    labels = table.cat("label").take(chosen).values()
    cols = {c: table.cat(c).take(chosen).values() for c in ("model", "language", "group", "strategy")}
    out = []
    for i, rid in enumerate(ids):
        prompt, response, votes = texts.get(rid, ("", "", []))
        out.append(Example(cols["model"][i], cols["language"][i], cols["group"][i], labels[i], _clip(prompt),
                           _clip(response), cols["strategy"][i],
                           [(j, lb, _clip(r, 600)) for j, lb, r in votes]))
    return out


def _lowest_noise(judged: np.ndarray, cell: np.ndarray, kind: np.ndarray, noise: np.ndarray,
                  per_cell: int) -> tuple[np.ndarray, ...]:
    """The rows that can be chosen: in each (cell, kind) group, those with the ``per_cell`` lowest noise
    values. A group keeps its rows under a threshold that leaves a few times ``per_cell`` rows of the
    average group, or all its rows when fewer than ``per_cell`` lie under it; sorting those few is the same
    choice as sorting all rows (at 6M rows, seconds less)."""
    group = cell * 2 + kind  # cell codes are small (models x languages x groups): counted directly
    sizes = np.bincount(group)
    threshold = min(1.0, 8.0 * per_cell * np.count_nonzero(sizes) / len(noise))
    below = noise < threshold
    short = np.bincount(group[below], minlength=len(sizes)) < np.minimum(per_cell, sizes)
    keep = below | short[group]
    return judged[keep], cell[keep], kind[keep], noise[keep]


def _fetch(store, ids: list[str], judges: list[str] | None) -> dict[str, tuple[str, str, list]]:
    out: dict[str, tuple[str, str, list]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for rid, prompt, text in store.query(
                f"SELECT r.id, i.prompt, r.text FROM responses r JOIN items i ON i.id = r.item_id "
                f"WHERE r.id IN ({marks})", chunk):
            out[rid] = (prompt, text or "", [])
        # "+judge": look verdicts up by response id; on the judge index SQLite would read every verdict of
        # the voters (1.8M at paper scale) to find a few hundred
        judge_filter = f" AND +judge IN ({','.join('?' * len(judges))})" if judges else ""
        for rid, judge, label, reasoning in store.query(
                f"SELECT response_id, judge, label, reasoning FROM verdicts WHERE response_id IN ({marks})"
                f"{judge_filter} ORDER BY judge", [*chunk, *(judges or [])]):
            if rid in out:
                out[rid][2].append((judge, label, reasoning or ""))
    return out


def banners(store, table: JudgedTable, demo: bool | None = None) -> list[str]:
    """Plain-text warnings shown at the top of the page."""
    items = set(table.cat("item_id").categories) - {""}
    out = []
    template = {r[0] for r in store.query(
        "SELECT id FROM items WHERE json_extract(provenance, '$.rewriter') = 'template'")}
    n_template = len(items & template)
    if n_template:
        out.append(f"{n_template:,} of the {len(items):,} benchmark items were built by the offline "
                   "rewriter (no language model): they are fixed patterns meant to exercise the machinery, "
                   "not the adversarial prompts of a real audit.")
    if demo is None:
        demo_items = {r[0] for r in store.query(
            "SELECT i.id FROM items i LEFT JOIN seeds s ON s.id = i.seed_id WHERE s.source = 'demo' "
            "OR json_extract(i.provenance, '$.demo') = 1 "
            "OR json_extract(i.provenance, '$.seed_source') = 'demo'")}
        demo = bool(items & demo_items) or any(
            r["kind"] == "demo" or (isinstance(r["config"], dict) and r["config"].get("demo") is True)
            for r in store.runs())
    if demo:
        out.append("This is a demo of the machinery on the built-in demo seeds, not a measurement of any "
                   "production model's safety.")
    return out


def judges_used(store, judges: list[str] | None, table: JudgedTable | None = None) -> list[tuple[str, int]]:
    """The voters and their verdict counts in the store (as ``load_judged`` read them, when it did)."""
    rows = (table.meta.get("judge_counts") if table is not None else None) or store.query(
        "SELECT judge, COUNT(*) FROM verdicts GROUP BY judge ORDER BY judge")
    return [(j, n) for j, n in rows if not judges or j in judges]


def provenance(store) -> list[dict[str, Any]]:
    """The runs recorded in the store (their configurations were redacted when stored)."""
    return store.runs()


def targets(store, table: JudgedTable) -> list[dict[str, Any]]:
    """One entry per target in the table (a model under one set of settings): its label, stored model name,
    sampling settings, endpoints, the model ids its server reported, and the runs that produced it."""
    labels: dict[str, tuple[str, str]] = table.meta.get("targets") or {}
    known = table.meta.get("target_rows") or {}  # what load_judged read of them (analysis.table)
    meta = {m["name"]: m for m in store.models()}
    out = []
    for label, (model, key) in labels.items():
        settings, runs, n = known.get(label) or store.query(
            "SELECT MIN(settings), GROUP_CONCAT(DISTINCT run_id), COUNT(*) FROM responses "
            "WHERE model=? AND settings_key=?", (model, key))[0]
        stored = meta.get(model) or {}
        info = stored.get("meta") or {}
        out.append({"target": label, "model": model, "settings_key": key,
                    "settings": json.loads(settings) if settings else {}, "spec": stored.get("spec", ""),
                    "endpoints": info.get("base_urls") or [],
                    "listed_models": info.get("listed_models") or {},
                    "answered_by": info.get("answered_by") or {}, "served_model": info.get("served_model"),
                    "runs": sorted((runs or "").split(",")), "responses": n})
    return out
