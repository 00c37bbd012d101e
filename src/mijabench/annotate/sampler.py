"""Draw a validation sample for human annotation, stratified like the paper's.

For every (language, group, strategy, model) cell, K responses the judges' current vote calls harmful and K
it calls safe. A cell with fewer gives what it has, and the shortfall is reported. Responses without a
parsed vote (no verdict, or only unparsed ones) and failed generations are not eligible: a person cannot
check a judge that has not decided.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import MijaError
from ..judge.agreement import choose_judges
from ..judge.vote import final_label
from ..records import HARMFUL, SAFE
from ..store import Store
from . import db

Cell = tuple[str, str, str, str]  # language, group, strategy, model


@dataclass(frozen=True, slots=True)
class Shortfall:
    cell: Cell
    label: str
    wanted: int
    available: int


@dataclass
class SampleReport:
    name: str
    run_id: str
    drawn: int
    cells: int
    by_label: dict[str, int]
    shortfalls: list[Shortfall] = field(default_factory=list)
    unvoted: int = 0  # answered responses left out because no judge vote could be formed


def current_votes(store: Store, judges: Iterable[str] | None = None) -> dict[str, str]:
    """The vote (safe / harmful / unparsed) per response over the stored verdicts of ``judges`` (all when
    None)."""
    chosen = set(judges) if judges else None
    labels: dict[str, list[str]] = defaultdict(list)
    for response_id, judge, label in store.query("SELECT response_id, judge, label FROM verdicts"):
        if chosen is None or judge in chosen:
            labels[response_id].append(label)
    return {rid: final_label(votes) for rid, votes in labels.items()}


def draw_sample(store: Store, per_cell: int, *, seed: int = 0, name: str = "default",
                judges: Iterable[str] | None = None) -> SampleReport:
    """Draw and record a sample named ``name``; the same store, seed and K always give the same sample."""
    if per_cell < 1:
        raise MijaError(f"--per-cell must be at least 1, got {per_cell}")
    if not name or not name.strip() or len(name) > 64:
        raise MijaError("a sample name must be 1 to 64 characters")
    if any(info.name == name for info in db.samples(store)):
        raise MijaError(f"a sample named {name!r} already exists; choose another --name")
    judges = sorted(choose_judges(store, list(judges))) if judges else None  # unknown names: InputError
    votes = current_votes(store, judges)
    pools: dict[tuple[Cell, str], list[str]] = defaultdict(list)
    cells: set[Cell] = set()
    unvoted = 0
    rows = store.query(
        "SELECT r.id, i.language, i.group_id, i.strategy, r.model FROM responses r "
        "JOIN items i ON i.id = r.item_id WHERE r.error IS NULL AND r.text IS NOT NULL")
    for response_id, language, group, strategy, model in rows:
        cell = (language, group, strategy, model)
        vote = votes.get(response_id)
        if vote not in (HARMFUL, SAFE):
            unvoted += 1
            continue
        cells.add(cell)
        pools[(cell, vote)].append(response_id)
    if not cells:
        raise MijaError(f"{store.path}: no judged responses to sample from (run the judges first)")

    entries: list[db.SampleEntry] = []
    shortfalls: list[Shortfall] = []
    for cell in sorted(cells):
        for label in (HARMFUL, SAFE):
            pool = sorted(pools.get((cell, label), []))
            # One generator per cell and label: adding a model or group elsewhere leaves this draw unchanged.
            rng = random.Random("|".join((str(seed), *cell, label)))
            chosen = rng.sample(pool, min(per_cell, len(pool)))
            if len(chosen) < per_cell:
                shortfalls.append(Shortfall(cell, label, per_cell, len(chosen)))
            entries.extend(db.SampleEntry(rid, *cell, label) for rid in sorted(chosen))

    run_id = store.new_run("annotate-sample", {"name": name, "per_cell": per_cell, "seed": seed,
                                               "judges": judges or "all"})
    db.put_sample(store, name, run_id, seed, per_cell, entries)
    by_label = {HARMFUL: sum(e.vote_label == HARMFUL for e in entries),
                SAFE: sum(e.vote_label == SAFE for e in entries)}
    return SampleReport(name=name, run_id=run_id, drawn=len(entries), cells=len(cells), by_label=by_label,
                        shortfalls=shortfalls, unvoted=unvoted)
