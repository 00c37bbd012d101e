"""Reads and writes of the annotation tables (schema migration 2), as small functions taking a Store.

A sample is a named, immutable set of responses. Annotations are keyed by (sample, response, annotator):
one row per person per response, replaced when the person changes their mind. Each write is its own
transaction, so a label is on disk as soon as the request that carried it has been answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MijaError
from ..store import Store
from ..store.core import now

HUMAN_LABELS = ("harmful", "safe", "skip")  # "skip" marks an item seen and passed over; never exported


@dataclass(frozen=True, slots=True)
class SampleEntry:
    """One response in a sample, with the cell it was drawn from and the judges' vote at drawing time."""

    response_id: str
    language: str
    group: str
    strategy: str
    model: str
    vote_label: str


@dataclass(frozen=True, slots=True)
class SampleInfo:
    name: str
    run_id: str
    seed: int
    per_cell: int
    created_at: str
    size: int


@dataclass(frozen=True, slots=True)
class Annotation:
    response_id: str
    annotator: str
    label: str
    note: str
    created_at: str


def put_sample(store: Store, name: str, run_id: str, seed: int, per_cell: int,
               entries: list[SampleEntry]) -> None:
    """Record a new sample in one transaction; a sample name is never reused."""
    with store.transaction() as cur:
        if cur.execute("SELECT 1 FROM annotation_sets WHERE name=?", (name,)).fetchone():
            raise MijaError(f"a sample named {name!r} already exists; choose another --name")
        cur.execute("INSERT INTO annotation_sets VALUES (?,?,?,?,?)", (name, run_id, seed, per_cell, now()))
        cur.executemany("INSERT INTO annotation_samples VALUES (?,?,?,?,?,?,?)",
                        [(name, e.response_id, e.language, e.group, e.strategy, e.model, e.vote_label)
                         for e in entries])


def samples(store: Store) -> list[SampleInfo]:
    rows = store.query(
        "SELECT s.name, s.run_id, s.seed, s.per_cell, s.created_at, COUNT(a.response_id) "
        "FROM annotation_sets s LEFT JOIN annotation_samples a ON a.sample_id=s.name "
        "GROUP BY s.name ORDER BY s.created_at, s.rowid")
    return [SampleInfo(*r) for r in rows]


def resolve_sample(store: Store, name: str | None) -> SampleInfo:
    """The named sample, or the newest one when no name is given."""
    known = samples(store)
    if not known:
        raise MijaError(f"{store.path}: no annotation sample yet (run `mijabench annotate sample` first)")
    if name is None:
        return known[-1]
    for info in known:
        if info.name == name:
            return info
    raise MijaError(f"no annotation sample named {name!r} (known: {', '.join(i.name for i in known)})")


def sample_entries(store: Store, name: str) -> list[SampleEntry]:
    rows = store.query("SELECT response_id, language, group_id, strategy, model, vote_label "
                       "FROM annotation_samples WHERE sample_id=? ORDER BY response_id", (name,))
    return [SampleEntry(*r) for r in rows]


def put_annotation(store: Store, sample: str, response_id: str, annotator: str, label: str,
                   note: str = "") -> None:
    if label not in HUMAN_LABELS:
        raise MijaError(f"annotation label must be one of {HUMAN_LABELS}, got {label!r}")
    with store.transaction() as cur:
        cur.execute("INSERT OR REPLACE INTO annotations VALUES (?,?,?,?,?,?)",
                    (sample, response_id, annotator, label, note, now()))


def annotations(store: Store, sample: str, annotator: str | None = None) -> list[Annotation]:
    sql = "SELECT response_id, annotator, label, note, created_at FROM annotations WHERE sample_id=?"
    args: tuple = (sample,)
    if annotator is not None:
        sql, args = sql + " AND annotator=?", (sample, annotator)
    return [Annotation(*r) for r in store.query(sql + " ORDER BY annotator, response_id", args)]
