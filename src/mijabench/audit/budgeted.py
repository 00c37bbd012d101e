"""A budgeted audit against the store: the planner of ``run.budget`` with the real models and judges as its
oracle.

Each (model, language, group) cell, or finer with ``budget_by`` (strategy, scenario_category), gets its
prompts in a seeded random order: a prompt's place is the hash of (seed, prompt id), so the order does not
depend on how the benchmark was loaded, and the same seed draws the same prompts for every model, which
keeps models comparable prompt for prompt. With counterfactual twins, a family (``pair_id``) is drawn as
one unit within its (model, language), so every twin of a drawn attack is sent too.

Resuming: the planner is replayed from the first look. Each look sends only what the store lacks
(``run_items`` skips answered responses, ``judge_responses`` judged ones), so looks already done cost
nothing and the replay takes the same decisions, because they depend only on the stored answers.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import Backend
from ..backends.registry import ModelConfig
from ..errors import MijaError
from ..judge.vote import vote_table
from ..records import HARMFUL, SAFE, BenchmarkItem, stable_id
from ..run.budget import BudgetResult, Design, check_budget_args, run_plan
from ..store import Store

CELL_FIELDS = ("language", "group")


@dataclass
class BudgetedAudit:
    result: BudgetResult
    cells: list[tuple[str, ...]]  # (model, language, group, *budget_by) per cell
    by: tuple[str, ...]
    seed: int

    def rows(self) -> list[dict[str, Any]]:
        r = self.result
        names = ("model", *CELL_FIELDS, *self.by)
        return [{**dict(zip(names, key, strict=True)), "n": int(r.n[i]), "rate": float(r.rate[i]),
                 "low": float(r.low[i]), "high": float(r.high[i]), "deviation": float(r.dev[i]),
                 "dev_low": float(r.dev_low[i]), "dev_high": float(r.dev_high[i]),
                 "stopped_by": str(r.status[i]), "look": int(r.looks[i])}
                for i, key in enumerate(self.cells)]


def cell_count(items: Sequence[BenchmarkItem], models: int, by: Sequence[str] = ()) -> int:
    return models * len({(i.language, i.group, *(getattr(i, f) for f in by)) for i in items})


def order_key(seed: int, unit: str) -> str:
    return stable_id("budget-order", str(seed), unit)


class StoreOracle:
    """Materialises prefixes by running the models and judges on the prompts they cover, and counts each
    cell's voted labels (failed responses and unparsed votes are undecided)."""

    def __init__(self, store: Store, bench: str, configs: Sequence[ModelConfig], judges: list[Any],
                 voters: list[str], strata: list[tuple[int, list[list[BenchmarkItem]]]],
                 cell_of: dict[tuple[int, str], int], cells: int, *, concurrency: int | None,
                 backends: dict[str, Backend], progress: Any, generate: Callable[..., dict] | None = None):
        self.store, self.bench, self.configs = store, bench, list(configs)
        self.judges, self.voters, self.strata = judges, voters, strata
        self.concurrency, self.backends, self.progress = concurrency, backends, progress
        self.generate = generate  # None: run_items in this process; else e.g. run_items_ray (same contract)
        self.labels: dict[str, int] = {}  # response id -> 1 safe, 0 harmful, -1 undecided
        # per cell: the unit position of each of its prompts, and their response ids
        pos: list[list[int]] = [[] for _ in range(cells)]
        rids: list[list[str]] = [[] for _ in range(cells)]
        self.rid: dict[tuple[int, str], str] = {}
        for s, (model, units) in enumerate(strata):
            settings = self.configs[model].settings
            for j, unit in enumerate(units):
                for item in unit:
                    c = cell_of[(s, item.id)]
                    rid = stable_id("response", item.id, self.configs[model].name, settings.key)
                    pos[c].append(j)
                    rids[c].append(rid)
        self.pos = [np.asarray(p, np.int64) for p in pos]
        self.rids = rids
        self.cell_stratum = np.empty(cells, np.int64)
        for (s, _), c in cell_of.items():
            self.cell_stratum[c] = s
        self.sent = 0
        self._names: list[tuple[str, str]] | None = None  # (judge, fingerprint), resolved on first use

    def fetch(self, start: np.ndarray, stop: np.ndarray) -> None:
        from ..judge.runner import judge_responses
        from ..run.generate import pending_items, run_items
        todo: dict[int, list[BenchmarkItem]] = defaultdict(list)
        for s, (model, units) in enumerate(self.strata):
            for unit in units[start[s]:stop[s]]:
                todo[model].extend(unit)
        for model, items in todo.items():
            config = self.configs[model]
            if pending_items(self.store, items, config.name, config.settings):
                generate = self.generate or partial(run_items, backends=self.backends)
                stats = generate(self.store, items, [config], bench=self.bench, concurrency=self.concurrency,
                                 progress=self.progress)
                self.sent += sum(st.done + st.failed for st in stats.values())
                # a fatal error (a bad key, a missing model) stops the audit as it stops a full run: the
                # looks must not go on with every answer undecided
                aborted = {name: st.aborted for name, st in stats.items() if st.aborted}
                if aborted:
                    raise MijaError("; ".join(f"model {n} stopped: {why}" for n, why in aborted.items()))
        if self._unjudged(stop):  # a replayed look (resume) has nothing to judge: no empty judge run
            judge_responses(self.store, list(self.judges), bench=self.bench,
                            target_models=[c.name for c in self.configs], concurrency=self.concurrency)
        self._read_labels()

    def _unjudged(self, stop: np.ndarray) -> bool:
        """Whether some answered response among the drawn prompts lacks a verdict of some judge."""
        from ..judge.runner import resolve_judges
        drawn = {rid for c in range(len(self.pos))
                 for rid in self.rids[c][:int(np.searchsorted(self.pos[c], stop[self.cell_stratum[c]]))]}
        answered = set()
        for config in self.configs:
            answered |= self.store.answered_response_ids(config.name, config.settings) & drawn
        if self._names is None:
            judges = resolve_judges(list(self.judges))
            self._names = [(j.name, j.identity.fingerprint) for j in judges]
            for j in judges:
                if j.owned and j.backend is not None:
                    _close_backend(j.backend)
        return any(answered - self.store.judged_response_ids(name, fp) for name, fp in self._names)

    def _read_labels(self) -> None:
        verdicts = [v for name in self.voters for v in self.store.verdicts(name)]
        voted = vote_table(verdicts, set(self.voters))
        self.labels = {rid: 1 if label == SAFE else 0 if label == HARMFUL else -1
                       for rid, label in voted.items()}

    def counts(self, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cells = len(self.pos)
        n, safe, undecided = (np.zeros(cells, np.int64) for _ in range(3))
        for c in range(cells):
            # positions were appended in drawing order, so they are sorted already
            k = int(np.searchsorted(self.pos[c], prefix[self.cell_stratum[c]]))
            got = np.array([self.labels.get(rid, -1) for rid in self.rids[c][:k]], np.int64)
            n[c], safe[c] = int(np.sum(got >= 0)), int(np.sum(got == 1))
            undecided[c] = k - n[c]
        return n, safe, undecided


def _close_backend(backend: Backend) -> None:
    import asyncio
    asyncio.run(backend.aclose())


def run_budgeted(store: Store, bench: str, items: Sequence[BenchmarkItem], configs: Sequence[ModelConfig],
                 judges: list[Any], voters: list[str], *, target: float | None, budget: int | None,
                 seed: int = 0, by: Sequence[str] = (), twins: bool = False, concurrency: int | None = None,
                 backends: dict[str, Backend] | None = None, progress: Any = False,
                 generate: Callable[..., dict] | None = None) -> BudgetedAudit:
    """Plan and run a budgeted audit; ``target`` is a full width as a fraction (0.048 for 4.8 points).
    ``generate`` replaces ``run_items`` for each look's prompts (``run_items_ray`` for a Ray cluster)."""
    by = tuple(by)
    check_budget_args(target, budget, cell_count(items, len(configs), by))
    items = sorted({i.id: i for i in items}.values(), key=lambda i: i.id)
    twins = twins and any(i.pair_id for i in items)
    cell_keys: dict[tuple[str, ...], int] = {}
    keys = []
    for m, config in enumerate(configs):
        for item in items:
            keys.append(((config.name, item.language, item.group, *(getattr(item, f) for f in by)), m, item))
    keys.sort(key=lambda k: (k[1], k[0]))  # cells of a (model, language) block together
    for key, _, _ in keys:
        cell_keys.setdefault(key, len(cell_keys))
    # strata: a cell, or with twins its (model, language[, finer fields]) whose families are drawn together
    stratum_members: dict[tuple[str, ...], dict[str, list[BenchmarkItem]]] = defaultdict(
        lambda: defaultdict(list))
    stratum_model: dict[tuple[str, ...], int] = {}
    for key, m, item in keys:
        skey = (key[0], key[1], *key[3:]) if twins else key
        unit = item.pair_id if twins and item.pair_id else item.id
        stratum_members[skey][unit].append(item)
        stratum_model[skey] = m
    strata, cell_of, units_n, calls = [], {}, [], []
    for s, (skey, members) in enumerate(stratum_members.items()):
        ordered = [members[u] for u in sorted(members, key=lambda u: order_key(seed, u))]
        strata.append((stratum_model[skey], ordered))
        units_n.append(len(ordered))
        calls.append(sum(len(u) for u in ordered) / max(len(ordered), 1))
        for unit in ordered:
            for item in unit:
                name = configs[stratum_model[skey]].name
                cell_of[(s, item.id)] = cell_keys[(name, item.language, item.group,
                                                  *(getattr(item, f) for f in by))]
    cells = list(cell_keys)
    # a marker first: a report with labels must not take an interrupted budgeted audit for a full one
    _write_record(store, {"version": RECORD_VERSION, "complete": False, "seed": seed, "by": list(by),
                          "voters": list(voters)})
    oracle = StoreOracle(store, bench, configs, judges, voters, strata, cell_of, len(cells),
                         concurrency=concurrency, backends=backends or {}, progress=progress,
                         generate=generate)
    population = np.array([len(p) for p in oracle.pos], np.int64)
    block = np.unique([f"{c[0]}\x00{c[1]}" for c in cells], return_inverse=True)[1]
    design = Design(cell_stratum=oracle.cell_stratum, cell_block=block, population=population,
                    units=np.array(units_n, np.int64), calls_per_unit=np.array(calls))
    result = run_plan(design, oracle, target=target, budget=budget)
    audit = BudgetedAudit(result, cells, by, seed)
    save_record(store, audit, voters)
    return audit


RECORD_VERSION = 1


def record_path(store: Store) -> Path:
    """Beside the workspace database: what `report --labels` needs to recompute the staged intervals."""
    return store.path.with_suffix(".budget.json")


def save_record(store: Store, audit: BudgetedAudit, voters: Sequence[str]) -> None:
    """The plan's stages per cell (decided and safe draws), so a later report can rebuild the staged
    intervals at another level. Written whole or not at all (a temporary file, then a rename)."""
    r = audit.result
    record = {"version": RECORD_VERSION, "complete": True, "seed": audit.seed, "target": r.target,
              "budget": r.budget,
              "by": list(audit.by), "voters": list(voters), "cells": [list(c) for c in audit.cells],
              "looks": r.looks.tolist(), "weight": np.asarray(r.weight).tolist(),
              "population": np.asarray(r.population).tolist(),
              "stage_n": [x.tolist() for x in r.stage_n], "stage_s": [x.tolist() for x in r.stage_s]}
    _write_record(store, record)


def _write_record(store: Store, record: dict) -> None:
    path = record_path(store)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)


def load_record(store: Store) -> dict | None:
    """The workspace's budgeted-audit record, or None when the workspace holds a full audit."""
    from ..errors import InputError
    path = record_path(store)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable budgeted-audit record ({exc})", file=str(path)) from None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise InputError("not a budgeted-audit record of this version: rerun the budgeted audit",
                         file=str(path))
    if not record.get("complete"):
        raise InputError("the budgeted audit of this workspace stopped before its end: run it again (it "
                         "resumes where it stopped) before reporting rates corrected for judge error",
                         file=str(path))
    return record
